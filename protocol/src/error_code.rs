//! Kafka error codes, as clients see them on the wire.
//!
//! Only the codes ringlog can return are listed; the numbers are Kafka's
//! (`org.apache.kafka.common.protocol.Errors`).

/// A Kafka protocol error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i16)]
pub enum ErrorCode {
    None = 0,
    OffsetOutOfRange = 1,
    CorruptMessage = 2,
    UnknownTopicOrPartition = 3,
    MessageTooLarge = 10,
    InvalidRecord = 87,
    KafkaStorageError = 56,
    UnknownServerError = -1,
}

impl ErrorCode {
    /// The numeric code sent on the wire.
    pub fn code(self) -> i16 {
        self as i16
    }
}
