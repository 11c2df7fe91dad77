//! File I/O behind one small interface, with three backends.
//!
//! - `Uring`: io_uring through `tokio-uring` (reads, writes, fdatasync, fallocate, statx,
//!   rename, unlink). The default, and the one the broker is built for.
//! - `Portable`: positional `std::fs` calls made on the shard thread. For machines where
//!   io_uring is unavailable (an old kernel, `kernel.io_uring_disabled`, a seccomp profile);
//!   correct, but every call blocks the shard while it runs.
//! - `Sim`: an in-memory disk with seeded faults and crashes ([`sim::SimDisk`]), so tests
//!   can check recovery against a model of what must survive.
//!
//! Storage code sees only [`Disk`] and [`File`]; nothing above this module knows which
//! backend runs. `tokio-uring` is unmaintained since 2024, which is one more reason to keep
//! it behind this module.
//!
//! A few metadata calls have no io_uring operation in `tokio-uring` (ftruncate, directory
//! fsync, mkdir, recursive removal): they run on a helper thread ([`blocking`]), never on
//! the shard thread, which keeps serving meanwhile. `list_dir` is a plain call: it runs only
//! while a log opens.

pub mod aligned;
pub mod net;
mod portable;
pub mod sim;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;

pub use aligned::{AlignedBuf, BLOCK_BYTES};
use tokio_uring::buf::IoBuf;

/// Largest file `read_small_file` reads.
const SMALL_FILE_BYTES_MAX: u64 = 64 * 1024;

/// Which I/O implementation a shard uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Uring,
    Portable,
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(name: &str) -> Result<Backend, String> {
        match name {
            "io-uring" | "uring" => Ok(Backend::Uring),
            "portable" => Ok(Backend::Portable),
            other => Err(format!(
                "unknown I/O backend '{other}': expected 'io-uring' or 'portable'"
            )),
        }
    }
}

/// Errors starting an I/O runtime.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error(
        "io_uring is unavailable here (io_uring_setup failed: {source}); check \
         kernel.io_uring_disabled and the container's seccomp profile, or run with \
         --io-backend portable"
    )]
    UringUnavailable {
        #[source]
        source: io::Error,
    },
    #[error("cannot start the async runtime: {source}")]
    Runtime {
        #[source]
        source: io::Error,
    },
}

/// Checks that `backend` can run here; for io_uring, that the kernel lets us set up a ring.
pub fn probe(backend: Backend) -> Result<(), IoError> {
    match backend {
        Backend::Uring => tokio_uring::Runtime::new(&tokio_uring::builder())
            .map(drop)
            .map_err(|source| IoError::UringUnavailable { source }),
        Backend::Portable => Ok(()),
    }
}

/// Runs `future` to completion on the current thread, on a runtime fit for `backend`.
/// Tasks spawned with `tokio::task::spawn_local` run on the same thread.
pub fn block_on<F: Future>(backend: Backend, future: F) -> Result<F::Output, IoError> {
    match backend {
        Backend::Uring => {
            let runtime = tokio_uring::Runtime::new(&tokio_uring::builder())
                .map_err(|source| IoError::UringUnavailable { source })?;
            Ok(runtime.block_on(future))
        }
        Backend::Portable => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|source| IoError::Runtime { source })?;
            let local = tokio::task::LocalSet::new();
            Ok(local.block_on(&runtime, future))
        }
    }
}

/// Runs a blocking system call on a helper thread (the runtime's blocking pool), so the
/// shard thread that awaits it keeps serving.
pub async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|error| io::Error::other(format!("helper thread failed: {error}")))?
}

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    pub write: bool,
    pub create: bool,
    /// O_DIRECT: writes bypass the page cache; buffers, positions and lengths must be
    /// multiples of [`BLOCK_BYTES`].
    pub direct: bool,
    /// O_DSYNC: a write completes once its data (and the metadata needed to read it back)
    /// is durable, as if an fdatasync followed it.
    pub dsync: bool,
}

impl OpenOptions {
    pub const READ: OpenOptions = OpenOptions {
        write: false,
        create: false,
        direct: false,
        dsync: false,
    };
    pub const READ_WRITE: OpenOptions = OpenOptions {
        write: true,
        create: false,
        direct: false,
        dsync: false,
    };
    pub const CREATE: OpenOptions = OpenOptions {
        write: true,
        create: true,
        direct: false,
        dsync: false,
    };
}

/// A filesystem, as the storage engine sees it. Cheap to clone.
#[derive(Clone)]
pub enum Disk {
    Uring,
    Portable,
    Sim(sim::SimDisk),
}

impl Disk {
    pub fn new(backend: Backend) -> Disk {
        match backend {
            Backend::Uring => Disk::Uring,
            Backend::Portable => Disk::Portable,
        }
    }

    pub async fn open(&self, path: &Path, options: OpenOptions) -> io::Result<File> {
        let backing = self.open_backing(path, options).await?;
        Ok(File {
            slot: Rc::new(Slot {
                disk: self.clone(),
                path: RefCell::new(path.to_path_buf()),
                // Opened again (after an eviction) only as it is, never created.
                options: OpenOptions {
                    create: false,
                    ..options
                },
                backing: RefCell::new(Some(Rc::new(backing))),
                tick: Cell::new(None),
            }),
        })
    }

    async fn open_backing(&self, path: &Path, options: OpenOptions) -> io::Result<Backing> {
        Ok(match self {
            Disk::Uring => {
                use std::os::unix::fs::OpenOptionsExt;
                let mut open = tokio_uring::fs::OpenOptions::new();
                open.read(true).write(options.write).create(options.create);
                open.custom_flags(portable::custom_flags(options));
                Backing::Uring(open.open(path).await?)
            }
            Disk::Portable => Backing::Portable(portable::open(path, options)?),
            Disk::Sim(sim) => Backing::Sim(sim.open(path, options)?),
        })
    }

    pub async fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        match self {
            Disk::Uring | Disk::Portable => {
                let path = path.to_path_buf();
                blocking(move || std::fs::create_dir_all(path)).await
            }
            Disk::Sim(sim) => sim.create_dir_all(path),
        }
    }

    /// Removes a directory and everything in it; a missing directory is no error.
    pub async fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let path = path.to_path_buf();
        let removed = match self {
            Disk::Uring | Disk::Portable => {
                blocking(move || match std::fs::remove_dir_all(path) {
                    Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
                    other => other,
                })
                .await
            }
            Disk::Sim(sim) => sim.remove_dir_all(&path),
        };
        removed
    }

    pub async fn remove_file(&self, path: &Path) -> io::Result<()> {
        match self {
            Disk::Uring => tokio_uring::fs::remove_file(path).await,
            Disk::Portable => std::fs::remove_file(path),
            Disk::Sim(sim) => sim.remove_file(path),
        }
    }

    pub async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        match self {
            Disk::Uring => tokio_uring::fs::rename(from, to).await,
            Disk::Portable => std::fs::rename(from, to),
            Disk::Sim(sim) => sim.rename(from, to),
        }
    }

    /// Makes the directory's entries (created, renamed, removed files) durable.
    pub async fn sync_dir(&self, path: &Path) -> io::Result<()> {
        match self {
            Disk::Uring | Disk::Portable => {
                let path = path.to_path_buf();
                blocking(move || std::fs::File::open(path)?.sync_all()).await
            }
            Disk::Sim(_) => Ok(()),
        }
    }

    /// Names of the entries in a directory (files and directories).
    pub fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        match self {
            Disk::Uring | Disk::Portable => {
                let mut names = Vec::new();
                for entry in std::fs::read_dir(path)? {
                    names.push(entry?.file_name().to_string_lossy().into_owned());
                }
                Ok(names)
            }
            Disk::Sim(sim) => sim.list_dir(path),
        }
    }

    /// The whole of a small file (a few KiB of metadata), `None` when it does not exist.
    pub async fn read_small_file(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        if !self.exists(path) {
            return Ok(None);
        }
        let file = self.open(path, OpenOptions::READ).await?;
        let len = file.len().await?;
        if len > SMALL_FILE_BYTES_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{len} bytes where a small metadata file was expected"),
            ));
        }
        file.read_at(len as usize, 0).await.map(Some)
    }

    /// Replaces `dir/name` with `bytes` atomically and durably: written to `name.tmp`,
    /// fdatasync'ed, renamed over `name`, then the directory is synced. A crash leaves the
    /// old contents or the new, never a mix.
    pub async fn write_small_file(&self, dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
        let tmp = dir.join(format!("{name}.tmp"));
        if self.exists(&tmp) {
            self.remove_file(&tmp).await?;
        }
        let file = self.open(&tmp, OpenOptions::CREATE).await?;
        let (written, _) = file.write_all_at(bytes.to_vec(), bytes.len(), 0).await;
        written?;
        file.sync_data().await?;
        drop(file);
        self.rename(&tmp, &dir.join(name)).await?;
        self.sync_dir(dir).await
    }

    pub fn exists(&self, path: &Path) -> bool {
        match self {
            Disk::Uring | Disk::Portable => path.exists(),
            Disk::Sim(sim) => sim.exists(path),
        }
    }
}

enum Backing {
    Uring(tokio_uring::fs::File),
    Portable(std::fs::File),
    Sim(sim::SimFile),
}

/// An open file. Cheap to clone (shared handle): a reader may hold it while the owner
/// deletes the segment, and the descriptor closes when the last clone goes.
///
/// A file can be made evictable (the files of sealed segments are): its descriptor is then
/// one of this thread's `EVICTABLE_FILES_MAX` most recently used, closed when it falls out
/// of that set and opened again, as it was opened but never created, on its next use. An
/// operation in flight keeps the descriptor it started with. So a partition's closed
/// segments cost no descriptors while nobody reads them.
#[derive(Clone)]
pub struct File {
    slot: Rc<Slot>,
}

/// What every clone of a `File` shares.
struct Slot {
    disk: Disk,
    path: RefCell<PathBuf>,
    options: OpenOptions,
    /// `None` once evicted.
    backing: RefCell<Option<Rc<Backing>>>,
    /// Its place in this thread's evictable set, when it is evictable and open.
    tick: Cell<Option<u64>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(tick) = self.tick.get() {
            let _ = EVICTABLE.try_with(|cache| cache.forget(tick));
        }
    }
}

/// Descriptors of evictable files each thread keeps open at most.
pub const EVICTABLE_FILES_MAX: usize = 128;

/// This thread's open evictable files, least recently used first.
struct Evictable {
    next_tick: Cell<u64>,
    open: RefCell<std::collections::BTreeMap<u64, std::rc::Weak<Slot>>>,
}

thread_local! {
    static EVICTABLE: Evictable = const {
        Evictable {
            next_tick: Cell::new(0),
            open: RefCell::new(std::collections::BTreeMap::new()),
        }
    };
}

impl Evictable {
    /// Marks `slot` most recently used, closing the least recently used past the limit.
    fn touch(&self, slot: &Rc<Slot>) {
        let tick = self.next_tick.get();
        self.next_tick.set(tick + 1);
        let evicted: Vec<Rc<Slot>> = {
            let mut open = self.open.borrow_mut();
            if let Some(old) = slot.tick.replace(Some(tick)) {
                open.remove(&old);
            }
            open.insert(tick, Rc::downgrade(slot));
            let mut evicted = Vec::new();
            while open.len() > EVICTABLE_FILES_MAX {
                let (_, oldest) = open.pop_first().expect("more than the limit");
                if let Some(oldest) = oldest.upgrade() {
                    evicted.push(oldest);
                }
            }
            evicted
        };
        // Dropped outside the borrow: a slot's drop may come back here.
        for oldest in evicted {
            oldest.tick.set(None);
            oldest.backing.borrow_mut().take();
        }
    }

    fn forget(&self, tick: u64) {
        if let Ok(mut open) = self.open.try_borrow_mut() {
            open.remove(&tick);
        }
    }
}

impl File {
    pub fn path(&self) -> PathBuf {
        self.slot.path.borrow().clone()
    }

    /// Where the file is now, after a rename (so that reopening finds it).
    pub fn set_path(&self, path: &Path) {
        *self.slot.path.borrow_mut() = path.to_path_buf();
    }

    /// From now on the descriptor may be closed while unused (see the type's docs).
    pub fn make_evictable(&self) {
        if self.slot.backing.borrow().is_some() {
            EVICTABLE.with(|cache| cache.touch(&self.slot));
        }
    }

    /// Closes an evictable file's descriptor now (it opens again if used).
    pub fn close_now(&self) {
        if let Some(tick) = self.slot.tick.take() {
            EVICTABLE.with(|cache| cache.forget(tick));
            self.slot.backing.borrow_mut().take();
        }
    }

    /// Whether both are clones of one file (one descriptor).
    pub fn shares_descriptor_with(&self, other: &File) -> bool {
        Rc::ptr_eq(&self.slot, &other.slot)
    }

    /// Whether the descriptor is open now.
    pub fn is_open(&self) -> bool {
        self.slot.backing.borrow().is_some()
    }

    /// The open descriptor, opened again if it was evicted.
    async fn backing(&self) -> io::Result<Rc<Backing>> {
        let open = self.slot.backing.borrow().clone();
        let backing = match open {
            Some(backing) => {
                if self.slot.tick.get().is_some() {
                    EVICTABLE.with(|cache| cache.touch(&self.slot));
                }
                return Ok(backing);
            }
            None => {
                let path = self.path();
                Rc::new(
                    self.slot
                        .disk
                        .open_backing(&path, self.slot.options)
                        .await?,
                )
            }
        };
        *self.slot.backing.borrow_mut() = Some(backing.clone());
        EVICTABLE.with(|cache| cache.touch(&self.slot));
        Ok(backing)
    }

    /// Reads up to `len` bytes at `pos`; fewer only at end of file.
    pub async fn read_at(&self, len: usize, pos: u64) -> io::Result<Vec<u8>> {
        let backing = self.backing().await?;
        match &*backing {
            Backing::Uring(file) => {
                let mut out = Vec::with_capacity(len);
                while out.len() < len {
                    let chunk = Vec::with_capacity(len - out.len());
                    let (result, chunk) = file.read_at(chunk, pos + out.len() as u64).await;
                    if result? == 0 {
                        break;
                    }
                    out.extend_from_slice(&chunk);
                }
                Ok(out)
            }
            Backing::Portable(file) => portable::read_at(file, len, pos),
            Backing::Sim(file) => file.read_at(len, pos),
        }
    }

    /// Writes `buf[..len]` at `pos`, all of it or an error. The buffer comes back either way.
    pub async fn write_all_at<B: IoBuf>(
        &self,
        buf: B,
        len: usize,
        pos: u64,
    ) -> (io::Result<()>, B) {
        assert!(len <= buf.bytes_init());
        if len == 0 {
            return (Ok(()), buf);
        }
        let backing = match self.backing().await {
            Ok(backing) => backing,
            Err(error) => return (Err(error), buf),
        };
        match &*backing {
            Backing::Uring(file) => {
                use tokio_uring::buf::BoundedBuf;
                let (result, slice) = file.write_all_at(buf.slice(..len), pos).await;
                (result, slice.into_inner())
            }
            Backing::Portable(file) => {
                let result = portable::write_all_at(file, bytes_of(&buf, len), pos);
                (result, buf)
            }
            Backing::Sim(file) => {
                let result = file.write_all_at(bytes_of(&buf, len), pos);
                (result, buf)
            }
        }
    }

    /// fdatasync.
    pub async fn sync_data(&self) -> io::Result<()> {
        let backing = self.backing().await?;
        match &*backing {
            Backing::Uring(file) => file.sync_data().await,
            Backing::Portable(file) => file.sync_data(),
            Backing::Sim(file) => file.sync_data(),
        }
    }

    /// Allocates blocks for `pos..pos+len` (fallocate mode 0: the size grows to cover it).
    pub async fn allocate(&self, pos: u64, len: u64) -> io::Result<()> {
        let backing = self.backing().await?;
        match &*backing {
            Backing::Uring(file) => file.fallocate(pos, len, 0).await,
            Backing::Portable(file) => portable::fallocate(file, pos, len),
            Backing::Sim(file) => file.allocate(pos, len),
        }
    }

    /// The file's size in bytes.
    pub async fn len(&self) -> io::Result<u64> {
        let backing = self.backing().await?;
        match &*backing {
            Backing::Uring(file) => Ok(file.statx().await?.stx_size),
            Backing::Portable(file) => Ok(file.metadata()?.len()),
            Backing::Sim(file) => Ok(file.len()),
        }
    }

    /// Last modification time, ms since the epoch.
    pub async fn modified_ms(&self) -> io::Result<i64> {
        let backing = self.backing().await?;
        match &*backing {
            Backing::Uring(file) => {
                let stat = file.statx().await?;
                Ok(stat.stx_mtime.tv_sec * 1000 + i64::from(stat.stx_mtime.tv_nsec) / 1_000_000)
            }
            Backing::Portable(file) => portable::modified_ms(file),
            Backing::Sim(file) => Ok(file.modified_ms()),
        }
    }

    /// Truncates or extends the file to `len` bytes (ftruncate), on a helper thread that
    /// holds a duplicate of the descriptor.
    pub async fn set_len(&self, len: u64) -> io::Result<()> {
        let backing = self.backing().await?;
        let duplicate = match &*backing {
            Backing::Uring(file) => {
                // SAFETY: the descriptor belongs to `file`, which is alive for this call;
                // it is only borrowed long enough to duplicate it.
                let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(file.as_raw_fd()) };
                std::fs::File::from(borrowed.try_clone_to_owned()?)
            }
            Backing::Portable(file) => file.try_clone()?,
            Backing::Sim(file) => return file.set_len(len),
        };
        blocking(move || duplicate.set_len(len)).await
    }
}

fn bytes_of<B: IoBuf>(buf: &B, len: usize) -> &[u8] {
    assert!(len <= buf.bytes_init());
    // SAFETY: `IoBuf` guarantees `stable_ptr` points at `bytes_init` initialized bytes
    // owned by `buf`, which outlives the returned slice.
    unsafe { std::slice::from_raw_parts(buf.stable_ptr(), len) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Past `EVICTABLE_FILES_MAX` evictable files, the least recently used are closed; each
    /// opens again on its next use and reads what it held; a file never made evictable stays
    /// open.
    #[test]
    fn evictable_files_stay_within_the_limit_and_reopen_on_use() {
        let temp = tempfile::tempdir().unwrap();
        block_on(Backend::Portable, async {
            let disk = Disk::new(Backend::Portable);
            let pinned = disk
                .open(&temp.path().join("pinned"), OpenOptions::CREATE)
                .await
                .unwrap();
            let mut files = Vec::new();
            for i in 0..EVICTABLE_FILES_MAX + 40 {
                let path = temp.path().join(format!("f{i}"));
                std::fs::write(&path, format!("file {i}")).unwrap();
                let file = disk.open(&path, OpenOptions::READ).await.unwrap();
                file.make_evictable();
                files.push(file);
            }
            let open = files.iter().filter(|file| file.is_open()).count();
            assert_eq!(open, EVICTABLE_FILES_MAX);
            assert!(!files[0].is_open(), "the least recently used went first");
            assert!(pinned.is_open());
            for (i, file) in files.iter().enumerate() {
                let text = file.read_at(64, 0).await.unwrap();
                assert_eq!(text, format!("file {i}").into_bytes());
            }
            assert_eq!(
                files.iter().filter(|file| file.is_open()).count(),
                EVICTABLE_FILES_MAX
            );
            // A renamed file reopens under its new name.
            let moved = temp.path().join("moved");
            let first = &files[0];
            first.close_now();
            std::fs::rename(first.path(), &moved).unwrap();
            first.set_path(&moved);
            assert_eq!(first.read_at(64, 0).await.unwrap(), b"file 0");
        })
        .unwrap();
    }
}
