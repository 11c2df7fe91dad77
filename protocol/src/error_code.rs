//! Kafka error codes, as clients see them on the wire.
//!
//! Only the codes ringlog can return are listed; the numbers and the one-line meanings
//! are Kafka's (`org.apache.kafka.common.protocol.Errors`).

macro_rules! error_codes {
    ($($name:ident = $code:literal, $text:literal;)*) => {
        /// A Kafka protocol error code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(i16)]
        pub enum ErrorCode {
            $($name = $code,)*
        }

        impl ErrorCode {
            /// The code for a number, if ringlog knows it.
            pub fn from_code(code: i16) -> Option<ErrorCode> {
                match code {
                    $($code => Some(ErrorCode::$name),)*
                    _ => None,
                }
            }

            /// What the error means, in one line.
            pub fn message(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $text,)*
                }
            }
        }
    };
}

error_codes! {
    UnknownServerError = -1, "the server experienced an unexpected error";
    None = 0, "no error";
    OffsetOutOfRange = 1, "the requested offset is outside the range of offsets the partition holds";
    CorruptMessage = 2, "the message failed its CRC check, has an invalid size, or is otherwise corrupt";
    UnknownTopicOrPartition = 3, "this server does not host this topic-partition";
    InvalidFetchSize = 4, "the requested fetch size is invalid";
    LeaderNotAvailable = 5, "there is no leader for this topic-partition as we are in the middle of a leadership election";
    NotLeaderOrFollower = 6, "this server is not the leader for that topic-partition";
    RequestTimedOut = 7, "the request timed out";
    MessageTooLarge = 10, "the request included a message larger than the max message size the server will accept";
    CoordinatorLoadInProgress = 14, "the coordinator is loading and hence can't process requests";
    CoordinatorNotAvailable = 15, "the coordinator is not available";
    NotCoordinator = 16, "this is not the correct coordinator";
    InvalidTopicException = 17, "the request attempted an operation on an invalid topic";
    RecordListTooLarge = 18, "the request included a message batch larger than the configured segment size";
    NotEnoughReplicas = 19, "messages are rejected since there are fewer in-sync replicas than required";
    NotEnoughReplicasAfterAppend = 20, "messages are written to the log, but to fewer in-sync replicas than required";
    InvalidRequiredAcks = 21, "produce request specified an invalid value for required acks";
    IllegalGeneration = 22, "specified group generation id is not valid";
    InconsistentGroupProtocol = 23, "the group member's supported protocols are incompatible with those of existing members";
    InvalidGroupId = 24, "the configured groupId is invalid";
    UnknownMemberId = 25, "the coordinator is not aware of this member";
    InvalidSessionTimeout = 26, "the session timeout is not within the range allowed by the broker";
    RebalanceInProgress = 27, "the group is rebalancing, so a rejoin is needed";
    InvalidCommitOffsetSize = 28, "the committing offset data size is not valid";
    InvalidTimestamp = 32, "the timestamp of the message is out of acceptable range";
    UnsupportedVersion = 35, "the version of API is not supported";
    TopicAlreadyExists = 36, "topic with this name already exists";
    InvalidPartitions = 37, "number of partitions is below 1 or above the limit";
    InvalidReplicationFactor = 38, "replication factor is below 1 or larger than the number of available brokers";
    InvalidReplicaAssignment = 39, "replica assignment is invalid";
    InvalidConfig = 40, "configuration is invalid";
    InvalidRequest = 42, "this most likely occurs because of a request being malformed by the client library";
    PolicyViolation = 44, "request parameters do not satisfy the configured policy";
    OutOfOrderSequenceNumber = 45, "the broker received an out of order sequence number";
    DuplicateSequenceNumber = 46, "the broker received a duplicate sequence number";
    InvalidProducerEpoch = 47, "producer attempted to produce with an old epoch";
    KafkaStorageError = 56, "disk error when trying to access log file on the disk";
    UnknownProducerId = 59, "the broker could not locate the producer metadata for the producer id";
    NonEmptyGroup = 68, "the group is not empty";
    GroupIdNotFound = 69, "the group id does not exist";
    FencedLeaderEpoch = 74, "the leader epoch in the request is older than the epoch on the broker";
    UnknownLeaderEpoch = 75, "the leader epoch in the request is newer than the epoch on the broker";
    UnsupportedCompressionType = 76, "the requesting client does not support the compression type of given partition";
    MemberIdRequired = 79, "the group member needs to have a valid member id before actually entering a consumer group";
    GroupMaxSizeReached = 81, "the consumer group has reached its max size";
    FencedInstanceId = 82, "the broker rejected this static consumer since another consumer with the same group.instance.id has registered with a different member.id";
    GroupSubscribedToTopic = 86, "the consumer group is actively subscribed to the topic";
    InvalidRecord = 87, "this record has failed the validation on broker and hence will be rejected";
    UnknownTopicId = 100, "this server does not host this topic id";
}

impl ErrorCode {
    /// The numeric code sent on the wire.
    pub fn code(self) -> i16 {
        self as i16
    }
}

/// A line for a code that may not be in the table.
pub fn describe(code: i16) -> String {
    match ErrorCode::from_code(code) {
        Some(known) => format!("{known:?} ({code}): {}", known.message()),
        None => format!("Kafka error code {code}"),
    }
}
