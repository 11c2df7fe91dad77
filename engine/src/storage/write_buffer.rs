//! `WriteBuffer`: the bytes of a segment that are appended but not yet handed to the disk.
//!
//! Appends copy into it; the flusher takes everything pending as one write (group commit)
//! and appends continue into a second buffer meanwhile. In O_DIRECT mode (`align` = 4096)
//! each write covers whole blocks: it starts at the block holding the first unwritten byte
//! and is zero-padded to a block boundary, and the partial last block is carried into the
//! next buffer so the next write rewrites it with more data after it. In buffered mode
//! (`align` = 1) there is no padding and nothing is carried.

use crate::io::aligned::{round_down, round_up};
use crate::io::AlignedBuf;

/// Start size of a buffer; it grows by doubling up to the capacity given at creation.
const INITIAL_BYTES: usize = 64 * 1024;

/// One write for the flusher: `buf[..len]` goes at file position `position`.
#[derive(Debug)]
pub struct PendingWrite {
    pub buf: AlignedBuf,
    /// Bytes to write (padded to `align`).
    pub len: usize,
    pub position: u64,
    /// Logical end of the segment after this write (`position + unpadded length`).
    pub end: u64,
}

#[derive(Debug)]
pub struct WriteBuffer {
    align: usize,
    capacity_max: usize,
    /// Holds file bytes `file_position .. file_position + buf.len()`.
    buf: AlignedBuf,
    /// A multiple of `align`.
    file_position: u64,
    /// File position up to which bytes were handed to a write.
    handed_off: u64,
    spare: Option<AlignedBuf>,
}

impl WriteBuffer {
    /// A buffer whose next byte goes at `end`. `tail_block` holds the file bytes from
    /// `round_down(end, align)` to `end` (empty when `end` is aligned).
    pub fn new(align: usize, capacity_max: usize, end: u64, tail_block: &[u8]) -> WriteBuffer {
        assert!(align.is_power_of_two());
        let file_position = round_down(end as usize, align) as u64;
        assert_eq!(file_position + tail_block.len() as u64, end);
        let mut buf = AlignedBuf::with_capacity(INITIAL_BYTES.min(capacity_max));
        buf.extend_from_slice(tail_block);
        WriteBuffer {
            align,
            capacity_max,
            buf,
            file_position,
            handed_off: end,
            spare: None,
        }
    }

    /// Logical end: where the next appended byte goes.
    pub fn end(&self) -> u64 {
        self.file_position + self.buf.len() as u64
    }

    pub fn has_pending(&self) -> bool {
        self.end() > self.handed_off
    }

    /// Copies `bytes` in, growing the buffer if needed; false when it would pass the
    /// capacity (the caller waits for the write in flight).
    pub fn try_push(&mut self, bytes: &[u8]) -> bool {
        let needed = self.buf.len() + bytes.len();
        if needed > self.buf.capacity() {
            if needed > self.capacity_max {
                return false;
            }
            let capacity = (self.buf.capacity() * 2).max(needed).min(self.capacity_max);
            let mut grown = AlignedBuf::with_capacity(capacity);
            grown.extend_from_slice(&self.buf);
            self.buf = grown;
        }
        self.buf.extend_from_slice(bytes);
        true
    }

    /// Takes everything pending as one write; appends continue into another buffer.
    pub fn take(&mut self) -> Option<PendingWrite> {
        if !self.has_pending() {
            return None;
        }
        let logical_len = self.buf.len();
        let end = self.end();
        let carried_from = round_down(logical_len, self.align);
        let mut next = match self.spare.take() {
            Some(spare) if spare.capacity() >= self.buf.capacity().min(INITIAL_BYTES) => spare,
            _ => AlignedBuf::with_capacity(self.buf.capacity()),
        };
        next.clear();
        next.extend_from_slice(&self.buf[carried_from..logical_len]);
        let mut out = std::mem::replace(&mut self.buf, next);
        let len = round_up(logical_len, self.align);
        out.resize_zeroed(len);
        let position = self.file_position;
        self.file_position += carried_from as u64;
        self.handed_off = end;
        Some(PendingWrite {
            buf: out,
            len,
            position,
            end,
        })
    }

    /// Returns a written buffer for reuse.
    pub fn give_back(&mut self, buf: AlignedBuf) {
        self.spare = Some(buf);
    }

    /// Releases memory held by an idle buffer (nothing pending): a partition that stopped
    /// receiving keeps at most one small buffer.
    pub fn shrink_if_idle(&mut self) {
        self.spare = None;
        if !self.has_pending() && self.buf.capacity() > INITIAL_BYTES {
            let mut small = AlignedBuf::with_capacity(INITIAL_BYTES);
            small.extend_from_slice(&self.buf);
            self.buf = small;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies writes to a model file, as the disk would.
    fn apply(file: &mut Vec<u8>, write: &PendingWrite) {
        let end = write.position as usize + write.len;
        if file.len() < end {
            file.resize(end, 0);
        }
        file[write.position as usize..end].copy_from_slice(&write.buf[..write.len]);
    }

    #[test]
    fn direct_writes_are_aligned_and_rebuild_the_stream() {
        for align in [4096, 1] {
            let mut buffer = WriteBuffer::new(align, 1 << 20, 0, &[]);
            let mut file = Vec::new();
            let mut expected = Vec::new();
            for round in 0..40u32 {
                let chunk: Vec<u8> = (0..(round * 997 % 6000 + 1))
                    .map(|i| (i + round) as u8)
                    .collect();
                assert!(buffer.try_push(&chunk));
                expected.extend_from_slice(&chunk);
                if round % 3 == 0 {
                    let write = buffer.take().unwrap();
                    assert_eq!(write.position as usize % align, 0);
                    assert_eq!(write.len % align, 0);
                    assert_eq!(write.end as usize, expected.len());
                    apply(&mut file, &write);
                    buffer.give_back(write.buf);
                }
            }
            while let Some(write) = buffer.take() {
                apply(&mut file, &write);
            }
            assert_eq!(&file[..expected.len()], &expected[..], "align {align}");
            assert!(
                file[expected.len()..].iter().all(|&b| b == 0),
                "padding is zeros"
            );
        }
    }

    #[test]
    fn resumes_mid_block_with_the_tail_it_was_given() {
        let mut buffer = WriteBuffer::new(4096, 1 << 20, 5000, &[7u8; 904]);
        assert!(buffer.try_push(b"next"));
        let write = buffer.take().unwrap();
        assert_eq!(write.position, 4096);
        assert_eq!(&write.buf[..904], &[7u8; 904][..]);
        assert_eq!(&write.buf[904..908], b"next");
        assert_eq!(write.end, 5004);
    }

    #[test]
    fn refuses_past_capacity() {
        let mut buffer = WriteBuffer::new(4096, 8192, 0, &[]);
        assert!(buffer.try_push(&[1; 8000]));
        assert!(!buffer.try_push(&[1; 500]));
        let write = buffer.take().unwrap();
        buffer.give_back(write.buf);
        assert!(
            buffer.try_push(&[1; 500]),
            "room again once the write is handed off"
        );
    }
}
