//! The portable backend: positional `std::fs` calls, made synchronously on the calling
//! thread. Also home of the few plain system calls every backend shares.

use std::fs;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use super::OpenOptions;

pub fn open(path: &Path, options: OpenOptions) -> io::Result<fs::File> {
    let mut open = fs::OpenOptions::new();
    open.read(true).write(options.write).create(options.create);
    open.custom_flags(custom_flags(options));
    open.open(path)
}

/// The open(2) flags beyond read, write and create that `options` ask for.
pub fn custom_flags(options: OpenOptions) -> i32 {
    let mut flags = 0;
    if options.direct {
        flags |= libc::O_DIRECT;
    }
    if options.dsync {
        flags |= libc::O_DSYNC;
    }
    flags
}

pub fn read_at(file: &fs::File, len: usize, pos: u64) -> io::Result<Vec<u8>> {
    let mut out = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        match file.read_at(&mut out[filled..], pos + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    out.truncate(filled);
    Ok(out)
}

pub fn write_all_at(file: &fs::File, bytes: &[u8], pos: u64) -> io::Result<()> {
    file.write_all_at(bytes, pos)
}

pub fn fallocate(file: &fs::File, pos: u64, len: u64) -> io::Result<()> {
    let pos =
        libc::off_t::try_from(pos).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let len =
        libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: plain system call on a descriptor this file owns.
    let result = unsafe { libc::fallocate(file.as_raw_fd(), 0, pos, len) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub fn modified_ms(file: &fs::File) -> io::Result<i64> {
    let modified = file.metadata()?.modified()?;
    let since_epoch = modified
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Ok(since_epoch.as_millis() as i64)
}
