//! Accepting connections when the process runs out of file descriptors: the collector keeps
//! accepting once some are free again, says so (at most every few seconds), and raises its
//! own open-file limit as far as it may at start. Every connection is counted while it lives,
//! so that agents are turned away before they take the descriptors the admin service needs.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use super::tls::ServerTls;

/// Descriptors kept from agents for everything else: admin calls, the store, logs.
pub const RESERVE: usize = 128;

/// Connections open now, and how many agents may hold one.
#[derive(Debug, Clone)]
pub struct ConnectionBudget {
    open: Arc<AtomicUsize>,
    agents: usize,
}

impl ConnectionBudget {
    /// Agents may hold all but [`RESERVE`] of the process's open-file limit (`None`: no
    /// limit known).
    pub fn new(open_file_limit: Option<u64>) -> Self {
        let agents = open_file_limit
            .map_or(usize::MAX, |limit| {
                usize::try_from(limit).unwrap_or(usize::MAX)
            })
            .saturating_sub(RESERVE)
            .max(1);
        ConnectionBudget {
            open: Arc::new(AtomicUsize::new(0)),
            agents,
        }
    }

    /// Whether another agent stream would eat into the reserve: this connection is counted
    /// already, so more than the budget is too many.
    pub fn agents_over(&self) -> bool {
        self.open.load(Ordering::Relaxed) > self.agents
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub fn agents(&self) -> usize {
        self.agents
    }
}

/// A connection, counted in its budget while it lives, and closed when the certificate it
/// was made with is revoked.
pub struct Counted {
    stream: TcpStream,
    open: Arc<AtomicUsize>,
    cut: Option<Arc<crate::certs::CutFlag>>,
}

impl Counted {
    fn new(stream: TcpStream, budget: &ConnectionBudget) -> Self {
        budget.open.fetch_add(1, Ordering::Relaxed);
        Counted {
            stream,
            open: budget.open.clone(),
            cut: None,
        }
    }

    /// Closes the connection once `flag` is cut: reads end, writes fail.
    fn close_on(&mut self, flag: Arc<crate::certs::CutFlag>) {
        self.cut = Some(flag);
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Connected for Counted {
    // The TCP stream's own, so that TLS and the peer's certificates read as before.
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(cut) = &self.cut {
            if cut.is_cut() {
                // The end of the stream: the connection is closed.
                return Poll::Ready(Ok(()));
            }
            cut.wake_on_cut(cx.waker());
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.cut.as_ref().is_some_and(|cut| cut.is_cut()) {
            return Poll::Ready(Err(revoked()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if self.cut.as_ref().is_some_and(|cut| cut.is_cut()) {
            return Poll::Ready(Err(revoked()));
        }
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

fn revoked() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "the certificate of this connection was revoked",
    )
}

/// How often a failing accept is logged at most.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// How long to wait after a failed accept before trying again (the failure is usually
/// EMFILE, which only a closing connection cures).
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// The listener's connections, TLS done, as a stream that never ends on an accept error: the
/// error is logged (rate-limited, with how many there were) and accepting goes on. Each
/// handshake runs on a task of its own, so a slow client holds up no other; a refused one is
/// recorded by [`ServerTls::accept`] and not passed on. The stream ends when its receiver is
/// dropped (the server stopped). Each connection counts in `budget` while it lives.
pub fn incoming(
    listener: TcpListener,
    tls: ServerTls,
    budget: ConnectionBudget,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<TlsStream<Counted>>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut failures = FailureLog::new(LOG_EVERY);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = tx.closed() => return,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let counted = Counted::new(stream, &budget);
                    let (tls, tx) = (tls.clone(), tx.clone());
                    tokio::spawn(async move {
                        if let Some(mut stream) = tls.accept(counted, Some(peer)).await {
                            let serial = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|chain| chain.first())
                                .map(|leaf| crate::refusals::Presented::of_der(leaf).serial);
                            if let Some(serial) = serial {
                                let flag = tls.revocations().watch(&serial);
                                stream.get_mut().0.close_on(flag);
                            }
                            // The server stopped if this fails; the connection just closes.
                            let _ = tx.send(Ok(stream)).await;
                        }
                    });
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

/// The process's soft limit on open files; `None` where there is none to read (not Unix).
pub fn open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit fills the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0
            || limit.rlim_cur == libc::RLIM_INFINITY
        {
            return None;
        }
        #[allow(clippy::unnecessary_cast)]
        Some(limit.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    {
        None
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
    fn agents_may_hold_all_but_the_reserve() {
        let budget = ConnectionBudget::new(Some(200));
        assert_eq!(budget.agents(), 200 - RESERVE);
        budget.open.store(200 - RESERVE, Ordering::Relaxed);
        assert!(!budget.agents_over());
        budget.open.store(201 - RESERVE, Ordering::Relaxed);
        assert!(budget.agents_over());
        assert_eq!(ConnectionBudget::new(None).agents(), usize::MAX - RESERVE);
        assert_eq!(ConnectionBudget::new(Some(10)).agents(), 1);
    }

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
