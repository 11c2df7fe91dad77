//! A global allocator for processes that decode untrusted Kafka frames.
//!
//! `kafka-protocol` 0.18 sizes `Vec::with_capacity` from array counts read off the wire
//! before decoding a single element, so an 8-byte body can ask for hundreds of gigabytes.
//! Under the system allocator that request fails and Rust aborts the process. This
//! allocator serves allocations of 1 GiB and more with `mmap(MAP_NORESERVE)`: the address
//! space is reserved but no memory is committed until it is touched, so the bogus
//! reservation costs nothing and the decoder fails cleanly on the next missing element.
//! Everything smaller goes to the system allocator unchanged.
//!
//! Binaries opt in:
//!
//! ```
//! #[global_allocator]
//! static ALLOCATOR: protocol::alloc::ReserveHugeAllocations = protocol::alloc::ReserveHugeAllocations;
//! ```
//!
//! Requires Linux overcommit mode 0 or 1 (the default); under mode 2 a huge reservation
//! still fails.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large are reserved, not committed.
pub const HUGE_BYTES: usize = 1 << 30;
const PAGE_BYTES: usize = 4096;

pub struct ReserveHugeAllocations;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE_BYTES && layout.align() <= PAGE_BYTES
}

// SAFETY: small layouts are forwarded to `System` unchanged; huge ones get fresh
// page-aligned anonymous mappings (zeroed, at least `size` bytes) released with munmap of
// the same size, so every pointer returned satisfies its layout and is freed by the path
// that made it (chosen by the same size test on the same layout).
unsafe impl GlobalAlloc for ReserveHugeAllocations {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            // SAFETY: `ptr` came from `map(layout.size())`.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: as for alloc/dealloc above; the copy covers the smaller of the two sizes.
        unsafe {
            let new_ptr = self.alloc(new_layout);
            if !new_ptr.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new_ptr
        }
    }
}

fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping has no preconditions.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        ptr.cast()
    }
}
