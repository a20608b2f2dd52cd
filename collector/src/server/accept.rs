//! Accepting connections when the process runs out of file descriptors: the collector keeps
//! accepting once some are free again, says so (at most every few seconds), and raises its
//! own open-file limit as far as it may at start.

use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// How often a failing accept is logged at most.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// How long to wait after a failed accept before trying again (the failure is usually
/// EMFILE, which only a closing connection cures).
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// The listener's connections as a stream that never ends on an accept error: the error is
/// logged (rate-limited, with how many there were) and accepting goes on. The stream ends
/// when its receiver is dropped (the server stopped).
pub fn incoming(
    listener: TcpListener,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<TcpStream>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut failures = FailureLog::new(LOG_EVERY);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = tx.closed() => return,
            };
            match accepted {
                Ok((stream, _)) => {
                    if tx.send(Ok(stream)).await.is_err() {
                        return;
                    }
                }
                Err(err) => {
                    if let Some(count) = failures.note(Instant::now()) {
                        tracing::warn!(
                            failed = count,
                            "cannot accept connections: {err}; agents and hygienectl wait until some close (raise the open-file limit, LimitNOFILE)"
                        );
                    }
                    tokio::time::sleep(RETRY_AFTER).await;
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Counts failures and says when to log them: the first at once, then at most once per
/// `every`, with the number since the last log.
#[derive(Debug)]
struct FailureLog {
    every: Duration,
    last: Option<Instant>,
    since_last: u64,
}

impl FailureLog {
    fn new(every: Duration) -> Self {
        FailureLog {
            every,
            last: None,
            since_last: 0,
        }
    }

    /// Notes a failure at `now`; `Some(count)` when it is time to log `count` failures.
    fn note(&mut self, now: Instant) -> Option<u64> {
        self.since_last += 1;
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < self.every)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.since_last))
    }
}

/// Raises the soft limit on open files to the hard limit (each agent holds a connection);
/// the limits before and after. Unix only; elsewhere `None`.
pub fn raise_open_file_limit() -> Option<std::io::Result<(u64, u64)>> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit fills the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return Some(Err(std::io::Error::last_os_error()));
        }
        let before = limit.rlim_cur;
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            // SAFETY: a valid rlimit, soft at most hard.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
                return Some(Err(std::io::Error::last_os_error()));
            }
        }
        #[allow(clippy::unnecessary_cast)]
        Some(Ok((before as u64, limit.rlim_cur as u64)))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_logged_at_once_then_at_most_every_interval_with_their_count() {
        let start = Instant::now();
        let mut log = FailureLog::new(Duration::from_secs(10));
        assert_eq!(log.note(start), Some(1));
        for ms in [1, 500, 9_000] {
            assert_eq!(log.note(start + Duration::from_millis(ms)), None);
        }
        assert_eq!(log.note(start + Duration::from_secs(10)), Some(4));
        assert_eq!(log.note(start + Duration::from_secs(11)), None);
    }

    #[cfg(unix)]
    #[test]
    fn the_open_file_limit_is_raised_to_the_hard_limit() {
        let (_, after) = raise_open_file_limit().unwrap().unwrap();
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit fills the struct it is given.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        #[allow(clippy::unnecessary_cast)]
        let (soft, hard) = (limit.rlim_cur as u64, limit.rlim_max as u64);
        assert_eq!((after, soft), (hard, hard));
    }
}
