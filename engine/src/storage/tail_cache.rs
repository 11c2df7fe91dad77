//! `TailCache`: the most recent batches of a partition, in memory, for tailing readers.
//!
//! Under O_DIRECT the written bytes are not in the page cache, so a consumer that keeps up
//! with producers would read every batch back from disk. The cache keeps the newest
//! batches (as the `Bytes` the producer's request arrived in, offsets patched) up to a byte
//! budget, and serves reads that start inside it.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use bytes::Bytes;

#[derive(Debug)]
struct CachedBatch {
    base_offset: i64,
    last_offset: i64,
    bytes: Bytes,
}

#[derive(Debug, Default)]
pub struct TailCache {
    /// Contiguous in offset, oldest first.
    batches: VecDeque<CachedBatch>,
    cached_bytes: usize,
    capacity_bytes: usize,
}

impl TailCache {
    pub fn new(capacity_bytes: usize) -> TailCache {
        TailCache {
            batches: VecDeque::new(),
            cached_bytes: 0,
            capacity_bytes,
        }
    }

    pub fn push(&mut self, base_offset: i64, last_offset: i64, bytes: Bytes) {
        if bytes.len() > self.capacity_bytes {
            self.clear();
            return;
        }
        if let Some(last) = self.batches.back() {
            assert_eq!(
                last.last_offset + 1,
                base_offset,
                "cached batches are contiguous"
            );
        }
        self.set_cached(self.cached_bytes + bytes.len());
        self.batches.push_back(CachedBatch {
            base_offset,
            last_offset,
            bytes,
        });
        self.evict_over_capacity();
    }

    fn evict_over_capacity(&mut self) {
        while self.cached_bytes > self.capacity_bytes {
            let Some(evicted) = self.batches.pop_front() else {
                break;
            };
            self.set_cached(self.cached_bytes - evicted.bytes.len());
        }
    }

    /// Whole batches from the one holding `offset`, all below `high_watermark`, at most
    /// `max_bytes` but for the first. `None` when `offset` is older than the cache.
    pub fn read(&self, offset: i64, max_bytes: usize, high_watermark: i64) -> Option<Vec<Bytes>> {
        let front = self.batches.front()?;
        if offset < front.base_offset {
            return None;
        }
        let first = self
            .batches
            .partition_point(|batch| batch.last_offset < offset);
        let mut chunks = Vec::new();
        let mut total = 0;
        for batch in self.batches.range(first..) {
            if batch.last_offset >= high_watermark {
                break;
            }
            if !chunks.is_empty() && total + batch.bytes.len() > max_bytes {
                break;
            }
            total += batch.bytes.len();
            chunks.push(batch.bytes.clone());
        }
        if chunks.is_empty() {
            None
        } else {
            Some(chunks)
        }
    }

    /// Holds at most `capacity_bytes` from now on, forgetting the oldest batches if it holds
    /// more.
    pub fn set_capacity(&mut self, capacity_bytes: usize) {
        self.capacity_bytes = capacity_bytes;
        self.evict_over_capacity();
    }

    /// Forgets batches at or after `offset` (the log was truncated there).
    pub fn truncate_from(&mut self, offset: i64) {
        while self
            .batches
            .back()
            .is_some_and(|batch| batch.last_offset >= offset)
        {
            let dropped = self.batches.pop_back().expect("checked");
            self.set_cached(self.cached_bytes - dropped.bytes.len());
        }
    }

    /// Sets the bytes held, and counts the change in the thread's storage statistics
    /// (`ringlog_tail_cache_bytes`).
    fn set_cached(&mut self, bytes: usize) {
        let delta = bytes as i64 - self.cached_bytes as i64;
        self.cached_bytes = bytes;
        super::stats::count(|cells| {
            cells.tail_cache_bytes.fetch_add(delta, Ordering::Relaxed);
        });
    }

    pub fn clear(&mut self) {
        self.batches.clear();
        self.set_cached(0);
    }
}

impl Drop for TailCache {
    fn drop(&mut self) {
        self.set_cached(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_of(batches: &[(i64, i64, usize)], capacity: usize) -> TailCache {
        let mut cache = TailCache::new(capacity);
        for &(base, last, len) in batches {
            cache.push(base, last, Bytes::from(vec![base as u8; len]));
        }
        cache
    }

    #[test]
    fn serves_whole_batches_below_the_high_watermark() {
        let cache = cache_of(&[(0, 4, 100), (5, 9, 100), (10, 14, 100)], 1000);
        let chunks = cache.read(7, 1000, 15).unwrap();
        assert_eq!(chunks.iter().map(|c| c[0]).collect::<Vec<_>>(), vec![5, 10]);
        assert_eq!(
            cache.read(7, 1000, 10).unwrap().len(),
            1,
            "stops at the high watermark"
        );
        assert_eq!(cache.read(7, 150, 15).unwrap().len(), 1, "max_bytes");
        assert_eq!(
            cache.read(7, 10, 15).unwrap().len(),
            1,
            "first batch always whole"
        );
        assert!(cache.read(15, 1000, 15).is_none());
    }

    #[test]
    fn evicts_oldest_and_misses_below_its_start() {
        let cache = cache_of(&[(0, 4, 100), (5, 9, 100), (10, 14, 100)], 250);
        assert!(cache.read(3, 1000, 15).is_none());
        assert_eq!(cache.read(12, 1000, 15).unwrap().len(), 1);
    }

    #[test]
    fn a_smaller_capacity_forgets_the_oldest_at_once() {
        let mut cache = cache_of(&[(0, 4, 100), (5, 9, 100), (10, 14, 100)], 1000);
        cache.set_capacity(200);
        assert!(cache.read(4, 1000, 15).is_none());
        assert_eq!(cache.read(5, 1000, 15).unwrap().len(), 2);
        cache.set_capacity(1000);
        cache.push(15, 19, Bytes::from(vec![15; 100]));
        assert_eq!(cache.read(5, 1000, 20).unwrap().len(), 3, "room again");
    }

    #[test]
    fn truncation_drops_the_tail() {
        let mut cache = cache_of(&[(0, 4, 100), (5, 9, 100)], 1000);
        cache.truncate_from(7);
        assert_eq!(cache.read(0, 1000, 100).unwrap().len(), 1);
        cache.push(5, 6, Bytes::from_static(b"x"));
    }
}
