//! Being gentle with a host that has work of its own: scan threads run at low CPU and I/O
//! priority, and an optional CPU budget throttles them.

use std::time::{Duration, Instant};

/// Lowers the calling thread's CPU and I/O priority. Linux: nice 10 and the idle I/O class
/// (both are per thread there, so each scan thread calls this); Windows: background mode, which
/// lowers both. Failures are logged once per thread and otherwise ignored: a scan at normal
/// priority is better than no scan.
pub fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain syscalls on the calling thread (who = 0) with valid constants.
        let nice = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
        const IOPRIO_WHO_PROCESS: libc::c_long = 1;
        const IOPRIO_CLASS_IDLE: libc::c_long = 3;
        const IOPRIO_CLASS_SHIFT: libc::c_long = 13;
        let io = unsafe {
            libc::syscall(
                libc::SYS_ioprio_set,
                IOPRIO_WHO_PROCESS,
                0,
                IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT,
            )
        };
        if nice != 0 || io != 0 {
            tracing::debug!(
                "cannot lower scan thread priority: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    #[cfg(all(unix, not(target_os = "linux")))]
    {
        // SAFETY: setpriority on the calling process with valid constants.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) } != 0 {
            tracing::debug!(
                "cannot lower scan priority: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    #[cfg(windows)]
    {
        use windows_sys::Win32::System::Threading::{
            GetCurrentThread, SetThreadPriority, THREAD_MODE_BACKGROUND_BEGIN,
        };
        // SAFETY: the pseudo-handle of the calling thread is always valid.
        if unsafe { SetThreadPriority(GetCurrentThread(), THREAD_MODE_BACKGROUND_BEGIN) } == 0 {
            tracing::debug!(
                "cannot enter background mode: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Keeps one thread's busy share at or below `share` (0 < share <= 1) of one core: after each
/// piece of work it sleeps long enough that busy / (busy + asleep) stays under the share.
/// Busy time is wall time, which counts I/O waits as busy: the limit errs on the gentle side.
#[derive(Debug)]
pub struct Throttle {
    share: f64,
    debt: Duration,
}

impl Throttle {
    /// The throttle for one of `threads` workers sharing a budget of `percent_of_one_core`.
    /// `None` when there is no limit.
    pub fn new(percent_of_one_core: Option<u32>, threads: usize) -> Option<Throttle> {
        let percent = percent_of_one_core?;
        let share = (f64::from(percent) / 100.0 / threads.max(1) as f64).clamp(0.001, 1.0);
        (share < 1.0).then_some(Throttle {
            share,
            debt: Duration::ZERO,
        })
    }

    /// Runs `work`, then sleeps off its cost once the owed sleep is long enough to be worth it.
    pub fn run<T>(&mut self, work: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let result = work();
        let busy = started.elapsed();
        self.debt += busy.mul_f64(1.0 / self.share - 1.0);
        if self.debt >= Duration::from_millis(20) {
            std::thread::sleep(self.debt);
            self.debt = Duration::ZERO;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_split_between_threads() {
        assert!(Throttle::new(None, 4).is_none());
        assert!(
            Throttle::new(Some(400), 4).is_none(),
            "four full cores for four threads is no limit"
        );
        let t = Throttle::new(Some(50), 2).unwrap();
        assert!((t.share - 0.25).abs() < 1e-9);
    }

    #[test]
    fn owes_sleep_in_proportion_to_work() {
        let mut t = Throttle::new(Some(50), 1).unwrap();
        // 5 ms of work at a 50 % share owes 5 ms of sleep: below the 20 ms threshold, kept.
        t.run(|| std::thread::sleep(Duration::from_millis(5)));
        assert!(
            t.debt >= Duration::from_millis(5) && t.debt < Duration::from_millis(20),
            "{:?}",
            t.debt
        );
        let started = Instant::now();
        t.run(|| std::thread::sleep(Duration::from_millis(20)));
        // The debt passed the threshold and was slept off.
        assert!(started.elapsed() >= Duration::from_millis(40));
        assert_eq!(t.debt, Duration::ZERO);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn lowers_the_calling_threads_nice_only() {
        let before = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let inside = std::thread::spawn(|| {
            lower_thread_priority();
            unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
        })
        .join()
        .unwrap();
        assert!(inside >= 10, "nice {inside}");
        assert_eq!(unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }, before);
    }
}
