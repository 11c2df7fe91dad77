//! Retention: which closed segments to delete, as a pure predicate.
//!
//! Walks from the oldest segment and stops at the first one that is neither too old
//! (`retention.ms`) nor needed to bring the log under `retention.bytes`. The active segment
//! is never deleted. A segment's age comes from its largest record timestamp, unless that
//! timestamp lies in the future (or the segment has none), in which case the file's
//! modification time is used: a producer's clock must not pin data forever.

/// What retention needs to know of one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentFacts {
    pub size_bytes: u64,
    /// Largest record timestamp, -1 when unknown.
    pub max_timestamp: i64,
    /// File modification time, ms since the epoch.
    pub modified_ms: i64,
}

impl SegmentFacts {
    /// The time the segment's data is considered to be from.
    pub fn timestamp_ms(&self, now_ms: i64) -> i64 {
        if self.max_timestamp < 0 || self.max_timestamp > now_ms {
            self.modified_ms
        } else {
            self.max_timestamp
        }
    }
}

/// How many of the oldest segments to delete. `segments` is oldest first and its last
/// element is the active segment.
pub fn segments_to_delete(
    segments: &[SegmentFacts],
    retention_ms: Option<i64>,
    retention_bytes: Option<u64>,
    now_ms: i64,
) -> usize {
    let Some((_active, closed)) = segments.split_last() else {
        return 0;
    };
    let mut remaining_bytes: u64 = segments.iter().map(|segment| segment.size_bytes).sum();
    let mut count = 0;
    for segment in closed {
        let too_old =
            retention_ms.is_some_and(|limit| now_ms - segment.timestamp_ms(now_ms) > limit);
        let over_size =
            retention_bytes.is_some_and(|limit| remaining_bytes - segment.size_bytes >= limit);
        if !too_old && !over_size {
            break;
        }
        remaining_bytes -= segment.size_bytes;
        count += 1;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: i64 = 3_600_000;

    fn segment(size_bytes: u64, max_timestamp: i64) -> SegmentFacts {
        SegmentFacts {
            size_bytes,
            max_timestamp,
            modified_ms: 0,
        }
    }

    #[test]
    fn deletes_old_segments_oldest_first_and_stops_at_the_first_keeper() {
        let now = 100 * HOUR_MS;
        let segments = [
            segment(10, now - 50 * HOUR_MS),
            segment(10, now - HOUR_MS),
            segment(10, now - 60 * HOUR_MS), // old, but behind a keeper
            segment(10, now - 70 * HOUR_MS), // active: never deleted
        ];
        assert_eq!(
            segments_to_delete(&segments, Some(24 * HOUR_MS), None, now),
            1
        );
        assert_eq!(segments_to_delete(&segments, None, None, now), 0);
    }

    #[test]
    fn never_deletes_the_active_segment() {
        let old = [segment(10, 0)];
        assert_eq!(segments_to_delete(&old, Some(1), Some(0), HOUR_MS), 0);
        assert_eq!(segments_to_delete(&[], Some(1), Some(0), HOUR_MS), 0);
    }

    #[test]
    fn size_limit_deletes_until_the_log_fits() {
        let now = HOUR_MS;
        let segments = [
            segment(100, now),
            segment(100, now),
            segment(100, now),
            segment(50, now),
        ];
        // As in Kafka, a segment goes only if the log stays at or above the limit without it:
        // 350 bytes, limit 160: deleting 100 leaves 250 (ok), another would leave 150 < 160.
        assert_eq!(segments_to_delete(&segments, None, Some(160), now), 1);
        assert_eq!(segments_to_delete(&segments, None, Some(150), now), 2);
        assert_eq!(segments_to_delete(&segments, None, Some(350), now), 0);
    }

    #[test]
    fn timestamps_from_the_future_are_distrusted() {
        let now = 100 * HOUR_MS;
        let future = SegmentFacts {
            size_bytes: 1,
            max_timestamp: now + 1_000 * HOUR_MS,
            modified_ms: now - 48 * HOUR_MS,
        };
        let segments = [future, segment(1, now)];
        assert_eq!(
            segments_to_delete(&segments, Some(24 * HOUR_MS), None, now),
            1
        );
        let fresh_file = SegmentFacts {
            modified_ms: now,
            ..future
        };
        assert_eq!(
            segments_to_delete(
                &[fresh_file, segment(1, now)],
                Some(24 * HOUR_MS),
                None,
                now
            ),
            0
        );
    }
}
