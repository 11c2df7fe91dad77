//! Errors of the storage engine. Clonable (I/O errors are shared behind `Arc`) because one
//! failed write fails every append that was waiting on it.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use protocol::record_batch::BatchError;
use protocol::ErrorCode;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    #[error("offset {offset} is out of range: the log holds offsets {log_start_offset}..{log_end_offset}")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },
    #[error("the partition log is offline after an earlier failure: {0}")]
    Offline(Arc<StorageError>),
    #[error("{path} is corrupt at byte {position}: {reason}")]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    #[error("invalid log configuration: {0}")]
    InvalidConfig(String),
    #[error("the partition log is closed")]
    Closed,
}

impl StorageError {
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> StorageError {
        StorageError::Io {
            action,
            path: path.into(),
            source: Arc::new(source),
        }
    }

    /// The Kafka error code a client sees for this failure.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            StorageError::InvalidBatch(batch) => batch.error_code(),
            StorageError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
            StorageError::Io { .. } | StorageError::Offline(_) | StorageError::Corrupt { .. } => {
                ErrorCode::KafkaStorageError
            }
            StorageError::InvalidConfig(_) | StorageError::Closed => ErrorCode::UnknownServerError,
        }
    }

    /// The raw OS error behind this failure, if any (ENOSPC, EIO, ...).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            StorageError::Io { source, .. } => source.raw_os_error(),
            StorageError::Offline(cause) => cause.raw_os_error(),
            _ => None,
        }
    }
}
