//! Keeping the agent's resident memory small on the hosts it shares.
//!
//! On Linux with glibc the agent allocates with jemalloc, set up below: one arena for all
//! threads (each thread still has its own cache, so they do not contend) and freed pages handed
//! back to the system at once. With glibc's malloc every thread that allocates got its own arena,
//! and each arena kept the pages of its own high-water mark: two scan workers that had each
//! parsed a large PE file held both peaks for the rest of the sweep, and free pages in the middle
//! of a heap were never returned. On `/usr/lib` with Wine installed that put the peak RSS of a
//! first sweep at 194-202 MB; with jemalloc set up so it is 176-177 MB, no slower (see the
//! README's performance section).
//!
//! Giving pages back at once has one cost: a burst of allocations like the rule compile faults
//! the same pages in again and again. [`keep_freed_memory`] keeps freed pages for such a burst.
//! Elsewhere (musl, Windows) the system allocator is used, these calls do nothing, and the
//! workers' byte budget for large buffers (see [`crate::scan`]) is what bounds them.

/// Read buffers at least this large come from the workers' shared budget (see [`crate::scan`]);
/// a worker keeps a read buffer of up to this size from file to file.
pub const LARGE_ALLOCATION: usize = 4 << 20;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main`: one arena, and freed pages returned at once.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[used]
// SAFETY: jemalloc reads this symbol as a `const char *` to a NUL-terminated string, which it is.
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_OPTIONS: &u8 = &b"narenas:1,dirty_decay_ms:0,muzzy_decay_ms:0\0"[0];

/// Tells the rule loader (`hygiene-rules`, which holds no allocator policy of its own) to keep
/// freed pages through each compile and return them after; see [`keep_freed_memory`].
pub fn set_rule_compile_hooks() {
    hygiene_rules::set_memory_hooks(hygiene_rules::MemoryHooks {
        keep_freed: || std::mem::forget(keep_freed_memory()),
        give_back: || drop(KeepFreedMemory(())),
    });
}

/// Lets the allocator keep the pages freed until the guard is dropped, which returns them once.
/// For a burst of allocations like the rule compile: giving each page back as it is freed cost
/// the signature-base compile 0.6 s of system time, as the next allocations fault it in again.
pub fn keep_freed_memory() -> KeepFreedMemory {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    jemalloc::set_dirty_decay_ms(-1);
    KeepFreedMemory(())
}

/// See [`keep_freed_memory`].
pub struct KeepFreedMemory(());

impl Drop for KeepFreedMemory {
    fn drop(&mut self) {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        jemalloc::set_dirty_decay_ms(0);
        release_free_memory();
    }
}

/// Returns the free pages the allocator still holds to the system.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    jemalloc::purge_all();
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod jemalloc {
    use std::ffi::{CString, c_void};

    /// jemalloc's index meaning "every arena" in `arena.<i>.*` names.
    const ALL_ARENAS: u32 = 4096;

    /// Writes a value to a jemalloc control; `false` when jemalloc refuses it.
    fn write<T>(name: &str, mut value: T) -> bool {
        let name = CString::new(name).expect("no NUL in control names");
        // SAFETY: `value` is the type the named control takes and lives across the call.
        let rc = unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                (&mut value as *mut T).cast::<c_void>(),
                std::mem::size_of::<T>(),
            )
        };
        rc == 0
    }

    pub fn arenas() -> u32 {
        let name = c"arenas.narenas";
        let mut count: u32 = 0;
        let mut len = std::mem::size_of::<u32>();
        // SAFETY: `arenas.narenas` is an unsigned read into a buffer of its size.
        let rc = unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr(),
                (&mut count as *mut u32).cast::<c_void>(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        if rc == 0 { count } else { 0 }
    }

    /// Sets how long freed pages stay before they are returned (-1: until told otherwise), for
    /// every arena there is and every one made later (such as the one for very large blocks).
    pub fn set_dirty_decay_ms(ms: isize) {
        write("arenas.dirty_decay_ms", ms);
        for arena in 0..arenas() {
            // Arenas not in use refuse it; they take the default above when made.
            write(&format!("arena.{arena}.dirty_decay_ms"), ms);
        }
    }

    pub fn purge_all() {
        let name = CString::new(format!("arena.{ALL_ARENAS}.purge")).expect("no NUL");
        // SAFETY: `arena.<i>.purge` takes no value.
        unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
            );
        }
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    #[test]
    fn jemalloc_takes_the_options_and_the_controls() {
        // The options string was read: one arena (plus at most the one for very large blocks).
        assert!(
            (1..=2).contains(&jemalloc::arenas()),
            "{}",
            jemalloc::arenas()
        );
        let kept = keep_freed_memory();
        let burst: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 64 << 10]).collect();
        drop(burst);
        drop(kept);
        release_free_memory();
    }
}
