//! A simulated disk for tests: files in memory, seeded faults, and crashes that lose or
//! tear whatever was not synced.
//!
//! Model: each file has a `durable` image (what survives any crash) and a list of
//! operations since its last `sync_data` (writes and size changes). Reads see every
//! operation. [`SimDisk::crash_and_restart`] rebuilds each file from its durable image plus
//! a seeded choice, for each unsynced operation in order, of: lost, applied whole, or (for a
//! write) torn at a random byte. Directory operations (create, rename, unlink) are durable
//! at once; the real backends follow them with a directory fsync.
//!
//! Faults: a crash at the N-th data operation (that write itself may be torn), EIO at
//! chosen operation numbers, and ENOSPC past a capacity. After a crash every operation
//! fails until the restart, as a dead machine would.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::OpenOptions;

/// Faults to inject, by data-operation number (writes, syncs, allocations; counted from 1).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// The machine dies during this operation.
    pub crash_at_op: Option<u64>,
    /// These operations fail with EIO and change nothing.
    pub eio_at_ops: BTreeSet<u64>,
    /// Writes that would grow the total stored bytes past this fail with ENOSPC.
    pub capacity_bytes: Option<u64>,
}

/// A deterministic generator (SplitMix64): same seed, same faults.
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    pub fn new(seed: u64) -> SimRng {
        SimRng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`bound > 0`).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}

#[derive(Debug, Clone)]
enum Op {
    Write { pos: u64, bytes: Vec<u8> },
    SetLen { len: u64 },
}

#[derive(Debug, Default)]
struct Inode {
    content: Vec<u8>,
    durable: Vec<u8>,
    unsynced: Vec<Op>,
    modified_ms: i64,
}

fn apply(image: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Write { pos, bytes } => {
            let end = *pos as usize + bytes.len();
            if image.len() < end {
                image.resize(end, 0);
            }
            image[*pos as usize..end].copy_from_slice(bytes);
        }
        Op::SetLen { len } => image.resize(*len as usize, 0),
    }
}

#[derive(Debug, Default)]
struct SimState {
    paths: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    faults: Faults,
    ops: u64,
    crashed: bool,
    now_ms: i64,
}

impl SimState {
    fn check_alive(&self) -> io::Result<()> {
        if self.crashed {
            Err(io::Error::other("simulated machine crashed"))
        } else {
            Ok(())
        }
    }

    /// Counts a data operation and says what happens to it.
    fn next_op(&mut self) -> io::Result<OpFate> {
        self.check_alive()?;
        self.ops += 1;
        if self.faults.crash_at_op == Some(self.ops) {
            self.crashed = true;
            return Ok(OpFate::Crash);
        }
        if self.faults.eio_at_ops.contains(&self.ops) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(OpFate::Proceed)
    }

    fn stored_bytes(&self) -> u64 {
        self.inodes
            .values()
            .map(|inode| inode.content.len() as u64)
            .sum()
    }

    fn inode(&mut self, id: u64) -> &mut Inode {
        self.inodes.get_mut(&id).expect("open file has an inode")
    }
}

enum OpFate {
    Proceed,
    Crash,
}

/// The simulated disk. Clones share the same disk.
#[derive(Debug, Clone, Default)]
pub struct SimDisk {
    state: Rc<RefCell<SimState>>,
}

impl SimDisk {
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.state.borrow_mut().faults = faults;
    }

    /// Data operations so far (the numbering `Faults` uses).
    pub fn ops(&self) -> u64 {
        self.state.borrow().ops
    }

    pub fn crashed(&self) -> bool {
        self.state.borrow().crashed
    }

    /// The time stamped on modified files.
    pub fn set_now_ms(&self, now_ms: i64) {
        self.state.borrow_mut().now_ms = now_ms;
    }

    /// Simulates power loss and a reboot: every file keeps its synced image plus a seeded
    /// selection of its unsynced operations (lost, whole, or torn). Faults are cleared.
    pub fn crash_and_restart(&self, seed: u64) {
        let mut rng = SimRng::new(seed);
        let mut state = self.state.borrow_mut();
        let mut ids: Vec<u64> = state.inodes.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let inode = state.inode(id);
            let mut image = std::mem::take(&mut inode.durable);
            for op in inode.unsynced.drain(..) {
                match (rng.below(3), &op) {
                    (0, _) => {}
                    (1, _) | (_, Op::SetLen { .. }) => apply(&mut image, &op),
                    (_, Op::Write { pos, bytes }) => {
                        let kept = rng.below(bytes.len() as u64 + 1) as usize;
                        apply(
                            &mut image,
                            &Op::Write {
                                pos: *pos,
                                bytes: bytes[..kept].to_vec(),
                            },
                        );
                    }
                }
            }
            inode.content = image.clone();
            inode.durable = image;
        }
        state.crashed = false;
        state.faults = Faults::default();
    }

    /// The current bytes of a file, as reads see them (for tests that damage files).
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state.borrow();
        let id = state.paths.get(path)?;
        Some(state.inodes[id].content.clone())
    }

    /// Replaces a file's bytes, durably (for tests that damage files).
    pub fn replace_file_bytes(&self, path: &Path, bytes: Vec<u8>) {
        let mut state = self.state.borrow_mut();
        let id = *state.paths.get(path).expect("file exists");
        let inode = state.inode(id);
        inode.content = bytes.clone();
        inode.durable = bytes;
        inode.unsynced.clear();
    }

    pub(super) fn open(&self, path: &Path, options: OpenOptions) -> io::Result<SimFile> {
        let mut state = self.state.borrow_mut();
        state.check_alive()?;
        let id = match state.paths.get(path) {
            Some(id) => *id,
            None if options.create => {
                let parent = path.parent().unwrap_or(Path::new(""));
                if !state.dirs.contains(parent) {
                    return Err(io::Error::from(io::ErrorKind::NotFound));
                }
                state.next_inode += 1;
                let id = state.next_inode;
                let now_ms = state.now_ms;
                state.inodes.insert(
                    id,
                    Inode {
                        modified_ms: now_ms,
                        ..Inode::default()
                    },
                );
                state.paths.insert(path.to_path_buf(), id);
                id
            }
            None => return Err(io::Error::from(io::ErrorKind::NotFound)),
        };
        Ok(SimFile {
            state: self.state.clone(),
            id,
            writable: options.write,
            dsync: options.dsync,
        })
    }

    pub(super) fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        state.check_alive()?;
        for ancestor in path.ancestors() {
            state.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    pub(super) fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        state.check_alive()?;
        match state.paths.remove(path) {
            Some(_) => Ok(()),
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    pub(super) fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        state.check_alive()?;
        state.paths.retain(|child, _| !child.starts_with(path));
        state.dirs.retain(|dir| !dir.starts_with(path));
        Ok(())
    }

    pub(super) fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        state.check_alive()?;
        let id = state
            .paths
            .remove(from)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        state.paths.insert(to.to_path_buf(), id);
        Ok(())
    }

    pub(super) fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let state = self.state.borrow();
        state.check_alive()?;
        if !state.dirs.contains(path) {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        let children = state.paths.keys().chain(state.dirs.iter());
        Ok(children
            .filter(|child| child.parent() == Some(path))
            .filter_map(|child| child.file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .collect())
    }

    pub(super) fn exists(&self, path: &Path) -> bool {
        let state = self.state.borrow();
        state.paths.contains_key(path) || state.dirs.contains(path)
    }
}

/// An open file on a [`SimDisk`].
#[derive(Debug)]
pub struct SimFile {
    state: Rc<RefCell<SimState>>,
    id: u64,
    writable: bool,
    /// O_DSYNC: a write that completes is durable, modelled as the write and then an
    /// fdatasync of the file. Linux promises only the write's own range; the storage engine
    /// writes through O_DSYNC only when nothing written before is unsynced, where the two
    /// are the same.
    dsync: bool,
}

impl SimFile {
    pub(super) fn read_at(&self, len: usize, pos: u64) -> io::Result<Vec<u8>> {
        let mut state = self.state.borrow_mut();
        state.check_alive()?;
        let content = &state.inode(self.id).content;
        let start = (pos as usize).min(content.len());
        let end = start.saturating_add(len).min(content.len());
        Ok(content[start..end].to_vec())
    }

    pub(super) fn write_all_at(&self, bytes: &[u8], pos: u64) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        let mut state = self.state.borrow_mut();
        let fate = state.next_op()?;
        let end = pos + bytes.len() as u64;
        let current_len = state.inode(self.id).content.len() as u64;
        let growth = end.saturating_sub(current_len);
        if let Some(capacity) = state.faults.capacity_bytes {
            if state.stored_bytes() + growth > capacity {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
        }
        let now_ms = state.now_ms;
        let inode = state.inode(self.id);
        let op = Op::Write {
            pos,
            bytes: bytes.to_vec(),
        };
        apply(&mut inode.content, &op);
        inode.unsynced.push(op);
        inode.modified_ms = now_ms;
        match fate {
            OpFate::Proceed => {
                if self.dsync {
                    for op in std::mem::take(&mut inode.unsynced) {
                        apply(&mut inode.durable, &op);
                    }
                }
                Ok(())
            }
            OpFate::Crash => Err(io::Error::other("simulated machine crashed")),
        }
    }

    pub(super) fn sync_data(&self) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        match state.next_op()? {
            OpFate::Crash => Err(io::Error::other("simulated machine crashed")),
            OpFate::Proceed => {
                let inode = state.inode(self.id);
                for op in std::mem::take(&mut inode.unsynced) {
                    apply(&mut inode.durable, &op);
                }
                Ok(())
            }
        }
    }

    pub(super) fn allocate(&self, pos: u64, len: u64) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        if let OpFate::Crash = state.next_op()? {
            return Err(io::Error::other("simulated machine crashed"));
        }
        let end = pos + len;
        let current_len = state.inode(self.id).content.len() as u64;
        if end <= current_len {
            return Ok(());
        }
        if let Some(capacity) = state.faults.capacity_bytes {
            if state.stored_bytes() + (end - current_len) > capacity {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
        }
        let inode = state.inode(self.id);
        let op = Op::SetLen { len: end };
        apply(&mut inode.content, &op);
        inode.unsynced.push(op);
        Ok(())
    }

    pub(super) fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        state.check_alive()?;
        let inode = state.inode(self.id);
        let op = Op::SetLen { len };
        apply(&mut inode.content, &op);
        inode.unsynced.push(op);
        Ok(())
    }

    pub(super) fn len(&self) -> u64 {
        self.state.borrow_mut().inode(self.id).content.len() as u64
    }

    pub(super) fn modified_ms(&self) -> i64 {
        self.state.borrow_mut().inode(self.id).modified_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk_with_file() -> (SimDisk, SimFile) {
        let disk = SimDisk::new();
        disk.create_dir_all(Path::new("/d")).unwrap();
        let file = disk.open(Path::new("/d/f"), OpenOptions::CREATE).unwrap();
        (disk, file)
    }

    #[test]
    fn synced_bytes_survive_every_crash() {
        for seed in 0..50 {
            let (disk, file) = disk_with_file();
            file.write_all_at(b"durable", 0).unwrap();
            file.sync_data().unwrap();
            file.write_all_at(b"maybe", 7).unwrap();
            disk.crash_and_restart(seed);
            let bytes = disk.file_bytes(Path::new("/d/f")).unwrap();
            assert_eq!(&bytes[..7], b"durable", "seed {seed}");
            assert!(b"maybe".starts_with(&bytes[7..]), "seed {seed}: {bytes:?}");
        }
    }

    #[test]
    fn injected_faults_fire_at_their_operation() {
        let (disk, file) = disk_with_file();
        disk.set_faults(Faults {
            eio_at_ops: BTreeSet::from([2]),
            capacity_bytes: Some(10),
            ..Faults::default()
        });
        file.write_all_at(b"abc", 0).unwrap();
        assert_eq!(
            file.sync_data().unwrap_err().raw_os_error(),
            Some(libc::EIO)
        );
        let full = file.write_all_at(&[0; 8], 3).unwrap_err();
        assert_eq!(full.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(file.len(), 3, "a refused write changes nothing");
    }
}
