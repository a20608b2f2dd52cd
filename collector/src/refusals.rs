//! Connections the collector turned away: TLS handshakes refused (a certificate from another
//! CA, expired or unparsable, none at all, a broken handshake) and certificates of the wrong
//! role for the service they called. Each refusal is logged, rate-limited per peer and
//! certificate, with the presented subject and serial, and counted; the admin reads the
//! counts with `hygienectl refused list`.
//!
//! The counts live in memory, since the collector started: one process-wide table, because
//! refusals are noticed in places that share nothing else (the TLS verifier, the accept
//! loop, every handler's role check). The table is bounded, so a flood of peers cannot grow
//! it; totals are kept apart and never evicted.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use x509_parser::prelude::{FromDer, X509Certificate};

/// Why a connection or call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefusalKind {
    /// The client certificate does not chain to the Hygiene CA, has expired, or is invalid.
    Certificate,
    /// The client presented no certificate.
    NoCertificate,
    /// The TLS handshake failed otherwise, or did not finish in time.
    Handshake,
    /// A valid certificate of the wrong role (an agent's on the admin service, or the reverse).
    WrongRole,
    /// A valid certificate without a Hygiene role or a usable name.
    NoIdentity,
}

impl RefusalKind {
    pub const ALL: [RefusalKind; 5] = [
        RefusalKind::Certificate,
        RefusalKind::NoCertificate,
        RefusalKind::Handshake,
        RefusalKind::WrongRole,
        RefusalKind::NoIdentity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefusalKind::Certificate => "certificate",
            RefusalKind::NoCertificate => "no_certificate",
            RefusalKind::Handshake => "handshake",
            RefusalKind::WrongRole => "wrong_role",
            RefusalKind::NoIdentity => "no_identity",
        }
    }
}

/// What a peer presented: its certificate's subject and serial number.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Presented {
    pub subject: String,
    /// The serial number in lower-case hex, as `hygiene-collector pki` and openssl show it.
    pub serial: String,
}

/// Longest subject kept: a hostile certificate may carry kilobytes of it.
const SUBJECT_LIMIT: usize = 256;

impl Presented {
    /// The subject and serial of a DER certificate; for bytes that do not parse, a note saying
    /// so and no serial.
    pub fn of_der(der: &[u8]) -> Presented {
        match X509Certificate::from_der(der) {
            Ok((_, cert)) => {
                let mut subject = cert.subject().to_string();
                if subject.len() > SUBJECT_LIMIT {
                    let mut end = SUBJECT_LIMIT;
                    while !subject.is_char_boundary(end) {
                        end -= 1;
                    }
                    subject.truncate(end);
                    subject.push('…');
                }
                let serial = hygiene_proto::bundle::hex(cert.raw_serial());
                Presented { subject, serial }
            }
            Err(_) => Presented {
                subject: "(certificate does not parse)".into(),
                serial: String::new(),
            },
        }
    }
}

/// One refusal as it is noticed.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub peer: Option<SocketAddr>,
    pub presented: Option<Presented>,
    /// The cause, in words.
    pub reason: String,
}

/// Refusals alike (same kind, peer address and certificate), counted together.
#[derive(Debug, Clone)]
pub struct RefusalGroup {
    pub kind: RefusalKind,
    pub peer: Option<IpAddr>,
    pub presented: Option<Presented>,
    /// The latest reason.
    pub reason: String,
    pub count: u64,
    pub first_ms: i64,
    pub last_ms: i64,
}

/// What the admin is shown.
#[derive(Debug, Clone)]
pub struct RefusalReport {
    /// When counting began (the collector's start).
    pub since_ms: i64,
    /// Refusals of each kind since then, including those of groups no longer listed.
    pub totals: Vec<(RefusalKind, u64)>,
    /// The groups, the most recent first.
    pub groups: Vec<RefusalGroup>,
}

/// Groups kept; beyond, the least recently seen is forgotten (its count stays in the totals).
const GROUPS_KEPT: usize = 512;
/// A group is logged when first seen, then at most this often, with the count since.
const LOG_GROUP_EVERY: Duration = Duration::from_secs(60);
/// At most this many log lines per minute for all groups together, so that a flood from
/// many addresses does not flood the log; the lines left out are counted in the next one.
const LOG_LINES_PER_MINUTE: u32 = 30;

type GroupKey = (RefusalKind, Option<IpAddr>, Option<Presented>);

struct GroupState {
    group: RefusalGroup,
    logged_at: Instant,
    unlogged: u64,
}

struct State {
    since_ms: i64,
    totals: [u64; RefusalKind::ALL.len()],
    groups: HashMap<GroupKey, GroupState>,
    minute_started: Option<Instant>,
    lines_this_minute: u32,
    suppressed: u64,
}

/// The refusal table (see the module's documentation).
pub struct Refusals {
    state: Mutex<State>,
}

/// A line to log for a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Refusals of this group since its last line (1 the first time).
    pub repeated: u64,
    /// Lines of other groups left out by the overall rate limit since the last line.
    pub suppressed: u64,
}

impl Refusals {
    pub fn new(since_ms: i64) -> Self {
        Refusals {
            state: Mutex::new(State {
                since_ms,
                totals: [0; RefusalKind::ALL.len()],
                groups: HashMap::new(),
                minute_started: None,
                lines_this_minute: 0,
                suppressed: 0,
            }),
        }
    }

    /// Counts `refusal`; `Some` when it is to be logged now.
    pub fn note(&self, refusal: &Refusal, now_ms: i64, now: Instant) -> Option<LogLine> {
        let mut state = self.state.lock().expect("refusals lock");
        state.totals[refusal.kind as usize] += 1;
        let key: GroupKey = (
            refusal.kind,
            refusal.peer.map(|p| p.ip()),
            refusal.presented.clone(),
        );
        if !state.groups.contains_key(&key) && state.groups.len() >= GROUPS_KEPT {
            let oldest = state
                .groups
                .iter()
                .min_by_key(|(_, g)| g.group.last_ms)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                state.groups.remove(&oldest);
            }
        }
        let mut due = false;
        let group = state.groups.entry(key).or_insert_with(|| {
            due = true;
            GroupState {
                group: RefusalGroup {
                    kind: refusal.kind,
                    peer: refusal.peer.map(|p| p.ip()),
                    presented: refusal.presented.clone(),
                    reason: String::new(),
                    count: 0,
                    first_ms: now_ms,
                    last_ms: now_ms,
                },
                logged_at: now,
                unlogged: 0,
            }
        });
        group.group.count += 1;
        group.group.last_ms = now_ms;
        group.group.reason.clone_from(&refusal.reason);
        group.unlogged += 1;
        due = due || now.duration_since(group.logged_at) >= LOG_GROUP_EVERY;
        if !due {
            return None;
        }
        // The overall limit.
        if state
            .minute_started
            .is_none_or(|start| now.duration_since(start) >= Duration::from_secs(60))
        {
            state.minute_started = Some(now);
            state.lines_this_minute = 0;
        }
        if state.lines_this_minute >= LOG_LINES_PER_MINUTE {
            state.suppressed += 1;
            return None;
        }
        state.lines_this_minute += 1;
        let suppressed = std::mem::take(&mut state.suppressed);
        let key: GroupKey = (
            refusal.kind,
            refusal.peer.map(|p| p.ip()),
            refusal.presented.clone(),
        );
        let group = state
            .groups
            .get_mut(&key)
            .expect("the group was just noted");
        group.logged_at = now;
        Some(LogLine {
            repeated: std::mem::take(&mut group.unlogged),
            suppressed,
        })
    }

    pub fn report(&self) -> RefusalReport {
        let state = self.state.lock().expect("refusals lock");
        let mut groups: Vec<RefusalGroup> =
            state.groups.values().map(|g| g.group.clone()).collect();
        groups.sort_by(|a, b| b.last_ms.cmp(&a.last_ms).then(b.count.cmp(&a.count)));
        RefusalReport {
            since_ms: state.since_ms,
            totals: RefusalKind::ALL
                .iter()
                .map(|&kind| (kind, state.totals[kind as usize]))
                .collect(),
            groups,
        }
    }
}

static REFUSALS: LazyLock<Refusals> = LazyLock::new(|| Refusals::new(hygiene_proto::now_ms()));

/// The process's refusal table.
pub fn refusals() -> &'static Refusals {
    &REFUSALS
}

/// Counts `refusal` in the process's table and logs it when due.
pub fn record(refusal: Refusal) {
    let Some(line) = refusals().note(&refusal, hygiene_proto::now_ms(), Instant::now()) else {
        return;
    };
    let peer = refusal
        .peer
        .map_or_else(|| "unknown".to_owned(), |p| p.to_string());
    // Debug formatting escapes whatever control characters a hostile subject holds.
    let (subject, serial) = refusal
        .presented
        .as_ref()
        .map_or(("", ""), |p| (p.subject.as_str(), p.serial.as_str()));
    tracing::warn!(
        kind = refusal.kind.as_str(),
        %peer,
        subject = ?subject,
        serial,
        repeated = line.repeated,
        not_logged_others = line.suppressed,
        "refused a connection: {}",
        refusal.reason
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(kind: RefusalKind, peer: &str, serial: &str) -> Refusal {
        Refusal {
            kind,
            peer: Some(peer.parse().unwrap()),
            presented: Some(Presented {
                subject: "CN=intruder".into(),
                serial: serial.into(),
            }),
            reason: "unknown issuer".into(),
        }
    }

    #[test]
    fn a_group_is_logged_first_then_once_a_minute_with_its_count() {
        let table = Refusals::new(0);
        let start = Instant::now();
        let r = refusal(RefusalKind::Certificate, "192.0.2.7:40000", "0a");
        assert_eq!(
            table.note(&r, 1, start),
            Some(LogLine {
                repeated: 1,
                suppressed: 0
            })
        );
        // Another port of the same address is the same group.
        let other_port = refusal(RefusalKind::Certificate, "192.0.2.7:40001", "0a");
        for s in [1, 30, 59] {
            assert_eq!(
                table.note(&other_port, 2, start + Duration::from_secs(s)),
                None
            );
        }
        assert_eq!(
            table.note(&r, 3, start + Duration::from_secs(60)),
            Some(LogLine {
                repeated: 4,
                suppressed: 0
            })
        );
        // Another certificate from the same address is another group, logged at once.
        let other = refusal(RefusalKind::Certificate, "192.0.2.7:40002", "0b");
        assert!(
            table
                .note(&other, 4, start + Duration::from_secs(61))
                .is_some()
        );
        let report = table.report();
        assert_eq!(report.groups.len(), 2);
        assert_eq!(report.groups[0].presented.as_ref().unwrap().serial, "0b");
        assert_eq!(report.groups[1].count, 5);
        assert_eq!(report.groups[1].peer, Some("192.0.2.7".parse().unwrap()));
        assert_eq!(report.totals[0], (RefusalKind::Certificate, 6));
    }

    #[test]
    fn a_flood_of_peers_is_bounded_in_memory_and_in_log_lines() {
        let table = Refusals::new(0);
        let start = Instant::now();
        let mut logged = 0;
        for i in 0..2_000u32 {
            let peer = format!("10.{}.{}.{}:1", i >> 16 & 255, i >> 8 & 255, i & 255);
            let r = refusal(RefusalKind::Handshake, &peer, "");
            if table.note(&r, i64::from(i), start).is_some() {
                logged += 1;
            }
        }
        assert_eq!(logged, LOG_LINES_PER_MINUTE);
        let report = table.report();
        assert_eq!(report.groups.len(), GROUPS_KEPT);
        assert_eq!(report.groups[0].last_ms, 1_999);
        assert_eq!(report.totals[2], (RefusalKind::Handshake, 2_000));
        // A minute later lines are written again, saying how many were left out.
        let r = refusal(RefusalKind::Handshake, "10.9.9.9:1", "");
        let line = table
            .note(&r, 3_000, start + Duration::from_secs(60))
            .unwrap();
        assert_eq!(line.suppressed, 2_000 - u64::from(LOG_LINES_PER_MINUTE));
    }

    #[test]
    fn subject_and_serial_are_read_from_the_certificate_and_bounded() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "x".repeat(1_000));
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x01, 0xab, 0xff]));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let presented = Presented::of_der(cert.der());
        assert_eq!(presented.serial, "01abff");
        assert!(presented.subject.starts_with("CN=xxx"), "{presented:?}");
        assert!(presented.subject.len() <= SUBJECT_LIMIT + '…'.len_utf8());
        assert_eq!(Presented::of_der(b"junk").serial, "");
    }
}
