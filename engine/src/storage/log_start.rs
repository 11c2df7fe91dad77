//! The log start offset a partition was moved to by DeleteRecords, kept in the partition's
//! directory (`log-start-offset`) so that deleted records stay deleted across a restart.
//!
//! The file is 12 bytes: the offset (i64, big-endian) and the CRC32C of those 8 bytes. It is
//! replaced atomically: written to `log-start-offset.tmp`, fdatasync'ed, renamed over the old
//! one, then the directory is synced. Without the file the log starts at its first segment.

use std::path::Path;

use super::error::StorageError;
use crate::io::{Disk, OpenOptions};

pub const FILE_NAME: &str = "log-start-offset";
const TMP_NAME: &str = "log-start-offset.tmp";
const FILE_BYTES: usize = 12;

/// The offset stored in `dir`, if any. A file that is not exactly an offset and its CRC is
/// corruption: the log must not start serving records that were deleted.
pub async fn load(disk: &Disk, dir: &Path) -> Result<Option<i64>, StorageError> {
    let path = dir.join(FILE_NAME);
    if !disk.exists(&path) {
        return Ok(None);
    }
    let file = disk
        .open(&path, OpenOptions::READ)
        .await
        .map_err(|source| StorageError::io("cannot open", &path, source))?;
    let len = file
        .len()
        .await
        .map_err(|source| StorageError::io("cannot stat", &path, source))?;
    let bytes = file
        .read_at(FILE_BYTES.min(len as usize), 0)
        .await
        .map_err(|source| StorageError::io("cannot read", &path, source))?;
    decode(&bytes, len)
        .map(Some)
        .map_err(|reason| StorageError::Corrupt {
            path: path.clone(),
            position: 0,
            reason,
        })
}

/// Makes `offset` the stored log start offset, durably, before returning.
pub async fn store(disk: &Disk, dir: &Path, offset: i64) -> Result<(), StorageError> {
    let tmp = dir.join(TMP_NAME);
    let path = dir.join(FILE_NAME);
    if disk.exists(&tmp) {
        disk.remove_file(&tmp)
            .await
            .map_err(|source| StorageError::io("cannot delete", &tmp, source))?;
    }
    let file = disk
        .open(&tmp, OpenOptions::CREATE)
        .await
        .map_err(|source| StorageError::io("cannot create", &tmp, source))?;
    let bytes = encode(offset);
    let (written, _) = file.write_all_at(bytes.to_vec(), FILE_BYTES, 0).await;
    written.map_err(|source| StorageError::io("cannot write", &tmp, source))?;
    file.sync_data()
        .await
        .map_err(|source| StorageError::io("cannot fdatasync", &tmp, source))?;
    drop(file);
    disk.rename(&tmp, &path)
        .await
        .map_err(|source| StorageError::io("cannot rename", &tmp, source))?;
    disk.sync_dir(dir)
        .await
        .map_err(|source| StorageError::io("cannot sync directory", dir, source))
}

fn encode(offset: i64) -> [u8; FILE_BYTES] {
    let mut bytes = [0; FILE_BYTES];
    bytes[..8].copy_from_slice(&offset.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[..8]);
    bytes[8..].copy_from_slice(&crc.to_be_bytes());
    bytes
}

fn decode(bytes: &[u8], len: u64) -> Result<i64, String> {
    if len != FILE_BYTES as u64 || bytes.len() != FILE_BYTES {
        return Err(format!("{len} bytes where {FILE_BYTES} were expected"));
    }
    let stored_crc = u32::from_be_bytes(bytes[8..].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[..8]) != stored_crc {
        return Err("CRC mismatch".into());
    }
    let offset = i64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
    if offset < 0 {
        return Err(format!("negative offset {offset}"));
    }
    Ok(offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_and_damage_is_detected() {
        let bytes = encode(1234);
        assert_eq!(decode(&bytes, 12), Ok(1234));
        let mut flipped = bytes;
        flipped[3] ^= 1;
        assert!(decode(&flipped, 12).unwrap_err().contains("CRC"));
        assert!(decode(&bytes[..8], 8).is_err());
    }
}
