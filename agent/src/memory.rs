//! Keeping the agent's resident memory small on the hosts it shares.
//!
//! Two things keep glibc's heap large long after the memory is free: the rule compiler's
//! scratch data (tens of MB, freed once the rules are built) and per-file read buffers, which
//! glibc serves from its arenas once its adaptive mmap threshold has grown. So buffers of
//! [`LARGE_ALLOCATION`] or more always get their own mapping, returned to the system when freed, and the
//! heap is trimmed once the rules are built. Elsewhere (musl, Windows) both are no-ops, and
//! the workers' byte budget for large buffers (see [`crate::scan`]) is what bounds them.

/// Allocations at least this large are mapped on their own and unmapped when freed. The scan
/// workers keep a read buffer of up to this size from file to file and allocate anew above it.
pub const LARGE_ALLOCATION: usize = 4 << 20;

/// Makes large allocations return to the system when freed. Call once, early.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, LARGE_ALLOCATION as libc::c_int);
    }
}

/// glibc's trim threshold once the mmap threshold is set (which freezes both).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const DEFAULT_TRIM_THRESHOLD: libc::c_int = 128 * 1024;

/// Lets the heap keep what is freed until the guard is dropped, which trims it once. For a
/// burst of allocations like the rule compile: with the default threshold each free at the top
/// of a heap hands pages back that the next allocation faults in again, about a third of a
/// CPU-second of system time over a signature-base compile.
pub fn keep_freed_memory() -> KeepFreedMemory {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
    }
    KeepFreedMemory(())
}

/// See [`keep_freed_memory`].
pub struct KeepFreedMemory(());

impl Drop for KeepFreedMemory {
    fn drop(&mut self) {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: as in keep_freed_memory.
        unsafe {
            libc::mallopt(libc::M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD);
        }
        release_free_memory();
    }
}

/// Returns free heap memory to the system, after a burst of short-lived allocations.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory the allocator holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}
