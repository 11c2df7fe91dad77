//! `AlignedBuf`: a heap buffer whose start is aligned for O_DIRECT.
//!
//! O_DIRECT needs the buffer address, the file position and the length to be multiples of
//! the logical block size; an ordinary `Vec<u8>` gets EINVAL. The buffer owns its
//! allocation, so it can be handed to io_uring (which holds it until the operation ends).

use std::alloc::{self, Layout};
use std::ptr::NonNull;

/// Alignment of every `AlignedBuf` and the block size of O_DIRECT writes.
pub const BLOCK_BYTES: usize = 4096;

/// A fixed-capacity byte buffer aligned to [`BLOCK_BYTES`].
///
/// Invariants: `len <= capacity`; `capacity` is a non-zero multiple of `BLOCK_BYTES`;
/// bytes `0..capacity` are initialized (zeroed at allocation).
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    capacity: usize,
}

impl AlignedBuf {
    /// A zeroed buffer of at least `capacity_min` bytes (rounded up to whole blocks).
    pub fn with_capacity(capacity_min: usize) -> AlignedBuf {
        let capacity = round_up(capacity_min.max(1), BLOCK_BYTES);
        let layout = Layout::from_size_align(capacity, BLOCK_BYTES).expect("valid layout");
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| alloc::handle_alloc_error(layout));
        AlignedBuf {
            ptr,
            len: 0,
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn remaining(&self) -> usize {
        self.capacity - self.len
    }

    /// Appends `bytes`; the caller checked `remaining()`.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        assert!(bytes.len() <= self.remaining(), "AlignedBuf overflow");
        self.spare_mut()[..bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// Sets the length, zero-filling any bytes it grows over.
    pub fn resize_zeroed(&mut self, len: usize) {
        assert!(len <= self.capacity);
        if len > self.len {
            let grow = len - self.len;
            self.spare_mut()[..grow].fill(0);
        }
        self.len = len;
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    fn spare_mut(&mut self) -> &mut [u8] {
        // SAFETY: all `capacity` bytes are initialized and owned by this buffer.
        let all = unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.capacity) };
        &mut all[self.len..]
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: bytes 0..len are initialized and owned by this buffer.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: bytes 0..len are initialized and owned by this buffer.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.capacity, BLOCK_BYTES).expect("valid layout");
        // SAFETY: allocated in `with_capacity` with this same layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), layout) };
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .finish()
    }
}

// SAFETY: the heap allocation never moves while the value lives, so the pointer stays
// valid while io_uring owns the buffer; `bytes_init` never exceeds `bytes_total`.
unsafe impl tokio_uring::buf::IoBuf for AlignedBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    fn bytes_init(&self) -> usize {
        self.len
    }

    fn bytes_total(&self) -> usize {
        self.capacity
    }
}

pub fn round_up(value: usize, multiple: usize) -> usize {
    value.div_ceil(multiple) * multiple
}

pub fn round_down(value: usize, multiple: usize) -> usize {
    value / multiple * multiple
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_aligned_and_zeroed() {
        let mut buf = AlignedBuf::with_capacity(5000);
        assert_eq!(buf.capacity(), 8192);
        assert_eq!(buf.as_ptr() as usize % BLOCK_BYTES, 0);
        buf.extend_from_slice(b"abc");
        buf.resize_zeroed(10);
        assert_eq!(&buf[..], b"abc\0\0\0\0\0\0\0");
        buf.clear();
        buf.resize_zeroed(4);
        assert_eq!(&buf[..], b"\0\0\0\0", "growing over old bytes zeroes them");
    }
}
