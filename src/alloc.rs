//! The process allocator: the system allocator, except that very large blocks are reserved
//! lazily instead of committed up front.
//!
//! Why: protocol decoders (the `kafka-protocol` crate's array decoder among them) size a `Vec`
//! from a length read off the wire before reading the elements. A 22-byte request claiming two
//! billion topics asks for a ~170 GB block; the system allocator refuses it and the process
//! aborts — a client could kill the broker. Blocks of [`LAZY_THRESHOLD_BYTES`] or more are
//! instead mapped with `MAP_NORESERVE`: address space only, no memory until touched. The decoder
//! then fails on the missing bytes after a handful of elements and the block is unmapped.
//! Nothing in the broker legitimately allocates a single block this large.
//!
//! To ensure correctness: every block is returned to the allocator that made it, which
//! `dealloc` and `realloc` decide by the block's size — the same test `alloc` used.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks at least this large are reserved lazily.
pub(crate) const LAZY_THRESHOLD_BYTES: usize = 1 << 32;
const PAGE_BYTES: usize = 4096;

pub(crate) struct StrataAllocator;

fn is_lazy(layout: &Layout) -> bool {
    layout.size() >= LAZY_THRESHOLD_BYTES && layout.align() <= PAGE_BYTES
}

// SAFETY: small blocks go to `System` unchanged. Large blocks come from anonymous private
// mappings, which are page-aligned (covering any alignment up to a page, checked by `is_lazy`)
// and zero-filled, and are unmapped exactly once, in `dealloc` or `realloc`.
unsafe impl GlobalAlloc for StrataAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !is_lazy(&layout) {
            return unsafe { System.alloc(layout) };
        }
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                layout.size(),
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

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_lazy(&layout) {
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_lazy(&layout) {
            // Fresh anonymous mappings are already zeroed.
            unsafe { self.alloc(layout) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        if !is_lazy(&layout) && !is_lazy(&new_layout) {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[global_allocator]
static GLOBAL: StrataAllocator = StrataAllocator;

/// Keeps freed large blocks in the allocator's arenas for reuse.
///
/// glibc serves blocks above an adaptive threshold (128 KiB at first) with fresh mappings, and
/// hands the free top of an arena back to the kernel once it passes a trim threshold. A broker
/// receiving megabyte produce requests then pays a page fault and a page clear for every 4 KiB
/// of every request: a quarter of its CPU under a 1 KiB-record produce load (profile in
/// docs/BENCHMARKS.md). Fixed thresholds keep such blocks in the arenas, at the cost of holding
/// up to the trim threshold of freed memory per arena after a burst.
pub fn keep_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_huge_reservation_neither_aborts_nor_commits_memory() {
        let mut v: Vec<u64> = Vec::with_capacity(20_000_000_000);
        v.push(7);
        v.push(8);
        assert_eq!(v.iter().sum::<u64>(), 15);
        let small: Vec<u8> = vec![1; 1024];
        assert_eq!(small.len(), 1024);
    }
}
