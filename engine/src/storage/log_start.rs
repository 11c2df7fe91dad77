//! The log start offset a partition was moved to by DeleteRecords, kept in the partition's
//! directory (`log-start-offset`) so that deleted records stay deleted across a restart.
//!
//! The file is 12 bytes: the offset (i64, big-endian) and the CRC32C of those 8 bytes. It is
//! replaced atomically (`Disk::write_small_file`). Without the file the log starts at its
//! first segment.

use std::path::Path;

use super::error::StorageError;
use crate::io::Disk;

pub const FILE_NAME: &str = "log-start-offset";
const FILE_BYTES: usize = 12;

/// The offset stored in `dir`, if any. A file that is not exactly an offset and its CRC is
/// corruption: the log must not start serving records that were deleted.
pub async fn load(disk: &Disk, dir: &Path) -> Result<Option<i64>, StorageError> {
    super::read_metadata_file(disk, &dir.join(FILE_NAME), decode).await
}

/// Makes `offset` the stored log start offset, durably, before returning.
pub async fn store(disk: &Disk, dir: &Path, offset: i64) -> Result<(), StorageError> {
    disk.write_small_file(dir, FILE_NAME, &encode(offset))
        .await
        .map_err(|source| StorageError::io("cannot write", dir.join(FILE_NAME), source))
}

fn encode(offset: i64) -> [u8; FILE_BYTES] {
    let mut bytes = [0; FILE_BYTES];
    bytes[..8].copy_from_slice(&offset.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[..8]);
    bytes[8..].copy_from_slice(&crc.to_be_bytes());
    bytes
}

fn decode(bytes: &[u8]) -> Result<i64, String> {
    if bytes.len() != FILE_BYTES {
        return Err(format!(
            "{} bytes where {FILE_BYTES} were expected",
            bytes.len()
        ));
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
        assert_eq!(decode(&bytes), Ok(1234));
        let mut flipped = bytes;
        flipped[3] ^= 1;
        assert!(decode(&flipped).unwrap_err().contains("CRC"));
        assert!(decode(&bytes[..8]).is_err());
    }
}
