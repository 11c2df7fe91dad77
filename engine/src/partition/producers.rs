//! Idempotent producers: per partition, each producer id's epoch and the sequence ranges of
//! its last few batches, so a retried batch is acknowledged without being written twice and
//! a batch out of order is refused.
//!
//! Rules (Kafka's): a batch from a producer id the partition does not know is accepted at
//! any sequence (its history may have aged out); an older epoch is fenced; a newer epoch
//! must start at sequence 0; in the same epoch a batch equal to one of the last five is a
//! duplicate (answered with that batch's offset), the next sequence is appended, anything
//! else is out of order. Sequences wrap from i32::MAX to 0.
//!
//! Crash policy: the state is rebuilt from the batch headers at the tail of the log the
//! first time an idempotent batch reaches the partition after it was opened.

use std::collections::{HashMap, VecDeque};

use protocol::record_batch::BatchHeader;
use protocol::ErrorCode;

/// Batches remembered per producer (Kafka's `max.in.flight.requests.per.connection` limit
/// for idempotence).
pub const BATCHES_REMEMBERED: usize = 5;
/// Producer ids remembered per partition; the least recently seen are forgotten first.
pub const PRODUCERS_REMEMBERED: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchSequences {
    first: i32,
    last: i32,
    base_offset: i64,
}

#[derive(Debug, Clone)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchSequences>,
    last_seen: u64,
}

/// What to do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    Append,
    /// Already stored at this base offset: acknowledge, do not write.
    Duplicate {
        base_offset: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error("producer {producer_id} epoch {epoch} is fenced by epoch {current}")]
    Fenced {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error("producer {producer_id}: batch starts at sequence {got}, expected {expected}")]
    OutOfOrder {
        producer_id: i64,
        expected: i32,
        got: i32,
    },
}

impl SequenceError {
    pub fn error_code(&self) -> ErrorCode {
        match self {
            SequenceError::Fenced { .. } => ErrorCode::InvalidProducerEpoch,
            SequenceError::OutOfOrder { .. } => ErrorCode::OutOfOrderSequenceNumber,
        }
    }
}

fn last_sequence(header: &BatchHeader) -> i32 {
    let last = i64::from(header.base_sequence) + i64::from(header.last_offset_delta);
    (last % (i64::from(i32::MAX) + 1)) as i32
}

fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

#[derive(Debug, Default)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
    clock: u64,
}

impl ProducerStates {
    pub fn new() -> ProducerStates {
        ProducerStates::default()
    }

    /// Decides what to do with a batch (not yet recorded).
    pub fn check(&self, header: &BatchHeader) -> Result<SequenceCheck, SequenceError> {
        if header.producer_id < 0 {
            return Ok(SequenceCheck::Append);
        }
        let Some(entry) = self.producers.get(&header.producer_id) else {
            return Ok(SequenceCheck::Append);
        };
        let producer_id = header.producer_id;
        if header.producer_epoch < entry.epoch {
            return Err(SequenceError::Fenced {
                producer_id,
                epoch: header.producer_epoch,
                current: entry.epoch,
            });
        }
        if header.producer_epoch > entry.epoch {
            return match header.base_sequence {
                0 => Ok(SequenceCheck::Append),
                got => Err(SequenceError::OutOfOrder {
                    producer_id,
                    expected: 0,
                    got,
                }),
            };
        }
        let last = last_sequence(header);
        if let Some(seen) = entry
            .batches
            .iter()
            .find(|batch| batch.first == header.base_sequence && batch.last == last)
        {
            return Ok(SequenceCheck::Duplicate {
                base_offset: seen.base_offset,
            });
        }
        let expected = entry
            .batches
            .back()
            .map_or(header.base_sequence, |batch| next_sequence(batch.last));
        if header.base_sequence == expected {
            Ok(SequenceCheck::Append)
        } else {
            Err(SequenceError::OutOfOrder {
                producer_id,
                expected,
                got: header.base_sequence,
            })
        }
    }

    /// Records a batch stored at `base_offset`.
    pub fn record(&mut self, header: &BatchHeader, base_offset: i64) {
        if header.producer_id < 0 {
            return;
        }
        self.clock += 1;
        let clock = self.clock;
        let entry = self
            .producers
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: header.producer_epoch,
                batches: VecDeque::new(),
                last_seen: clock,
            });
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        entry.last_seen = clock;
        entry.batches.push_back(BatchSequences {
            first: header.base_sequence,
            last: last_sequence(header),
            base_offset,
        });
        while entry.batches.len() > BATCHES_REMEMBERED {
            entry.batches.pop_front();
        }
        if self.producers.len() > PRODUCERS_REMEMBERED {
            let oldest = self
                .producers
                .iter()
                .min_by_key(|(_, entry)| entry.last_seen)
                .map(|(id, _)| *id);
            if let Some(oldest) = oldest {
                self.producers.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::record_batch::{validate_batch, RecordBatchBuilder, MAX_BATCH_BYTES};

    fn header(producer_id: i64, epoch: i16, base_sequence: i32, records: usize) -> BatchHeader {
        let mut builder = RecordBatchBuilder::new(0).producer(producer_id, epoch, base_sequence);
        for _ in 0..records {
            builder.push(None, Some(b"v"), 0);
        }
        validate_batch(&builder.finish(), MAX_BATCH_BYTES).unwrap()
    }

    #[test]
    fn in_order_duplicate_and_out_of_order() {
        let mut states = ProducerStates::new();
        let first = header(7, 0, 0, 3);
        assert_eq!(states.check(&first), Ok(SequenceCheck::Append));
        states.record(&first, 100);
        let next = header(7, 0, 3, 2);
        assert_eq!(states.check(&next), Ok(SequenceCheck::Append));
        states.record(&next, 103);
        assert_eq!(
            states.check(&first),
            Ok(SequenceCheck::Duplicate { base_offset: 100 })
        );
        assert_eq!(
            states.check(&next),
            Ok(SequenceCheck::Duplicate { base_offset: 103 })
        );
        let gap = header(7, 0, 9, 1);
        assert_eq!(
            states.check(&gap).unwrap_err().error_code(),
            ErrorCode::OutOfOrderSequenceNumber
        );
        assert_eq!(states.check(&header(7, 0, 5, 1)), Ok(SequenceCheck::Append));
    }

    #[test]
    fn epochs_fence_and_restart_sequences() {
        let mut states = ProducerStates::new();
        states.record(&header(7, 1, 0, 1), 0);
        assert_eq!(
            states.check(&header(7, 0, 1, 1)).unwrap_err().error_code(),
            ErrorCode::InvalidProducerEpoch
        );
        assert_eq!(states.check(&header(7, 2, 0, 1)), Ok(SequenceCheck::Append));
        assert!(states.check(&header(7, 2, 4, 1)).is_err());
        // Unknown producers and plain (non-idempotent) batches are not checked.
        assert_eq!(
            states.check(&header(8, 0, 42, 1)),
            Ok(SequenceCheck::Append)
        );
        assert_eq!(
            states.check(&header(-1, -1, -1, 1)),
            Ok(SequenceCheck::Append)
        );
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut states = ProducerStates::new();
        let before_wrap = header(3, 0, i32::MAX - 1, 2);
        states.record(&before_wrap, 0);
        assert_eq!(states.check(&header(3, 0, 0, 1)), Ok(SequenceCheck::Append));
    }
}
