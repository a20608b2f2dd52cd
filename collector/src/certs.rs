//! Which agent certificate speaks for a host. A host's certificates are known by serial from
//! the streams they opened; a newer certificate for the host (`pki issue-agent --force`, a
//! re-enrollment) supersedes the older ones, which are revoked the first time it connects, and
//! an older one presented after a newer is refused and revoked. `hosts revoke` revokes them
//! all. Revoked serials are refused in the TLS handshake and when a stream starts on a
//! connection made before.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::task::Waker;

/// A certificate a host presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCert {
    /// Lower-case hex, as [`crate::refusals::Presented`] shows it.
    pub serial: String,
    /// Its validity start, Unix milliseconds: the later one is the newer issue.
    pub not_before_ms: i64,
    pub revoked: bool,
}

/// What to do with a stream's certificate, given the host's known ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertVerdict {
    /// Serve it, and revoke these older certificates of the host.
    Accept { supersedes: Vec<String> },
    /// Refuse it (and revoke it, if it is not yet); the reason for the log and the agent.
    Refuse { revoke: bool, reason: String },
}

/// Decides on `presented` for a host whose certificates are `known` (`presented` among them
/// or not) and whose certificates starting before `revoked_before_ms` were all revoked
/// (`hosts revoke`).
pub fn judge(
    known: &[HostCert],
    revoked_before_ms: Option<i64>,
    presented: &HostCert,
) -> CertVerdict {
    if known
        .iter()
        .any(|k| k.serial == presented.serial && k.revoked)
    {
        return CertVerdict::Refuse {
            revoke: false,
            reason: format!("certificate {} is revoked", presented.serial),
        };
    }
    if revoked_before_ms.is_some_and(|before| presented.not_before_ms < before) {
        return CertVerdict::Refuse {
            revoke: true,
            reason: format!(
                "certificate {} was issued before the host's certificates were revoked",
                presented.serial
            ),
        };
    }
    if let Some(newer) = known.iter().find(|k| {
        k.serial != presented.serial && !k.revoked && k.not_before_ms > presented.not_before_ms
    }) {
        return CertVerdict::Refuse {
            revoke: true,
            reason: format!(
                "certificate {} is superseded by the host's newer certificate {}",
                presented.serial, newer.serial
            ),
        };
    }
    CertVerdict::Accept {
        supersedes: known
            .iter()
            .filter(|k| {
                k.serial != presented.serial
                    && !k.revoked
                    && k.not_before_ms < presented.not_before_ms
            })
            .map(|k| k.serial.clone())
            .collect(),
    }
}

/// The serial and validity start of a DER certificate; `None` if it does not parse.
pub fn host_cert_of_der(der: &[u8]) -> Option<HostCert> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(HostCert {
        serial: crate::refusals::Presented::of_der(der).serial,
        not_before_ms: cert.validity().not_before.timestamp().saturating_mul(1000),
        revoked: false,
    })
}

/// When a host revoked now has every certificate issued until now refused: their validity
/// starts [`crate::pki::BACKDATE`] before their issue, in whole seconds (so one issued in the
/// second of the revocation, just after it, is not refused).
pub fn revoked_before(now_ms: i64) -> i64 {
    now_ms.div_euclid(1000) * 1000 - crate::pki::BACKDATE.as_millis() as i64
}

/// The revoked serials the server checks, in memory: loaded from the store at start and
/// added to as certificates are revoked. It also knows the live connections by certificate
/// serial, and closes those of a serial when it is revoked, so that the client's next stream
/// needs a new handshake (which the verifier refuses).
#[derive(Debug, Clone, Default)]
pub struct Revocations {
    serials: Arc<RwLock<HashSet<String>>>,
    connections: Arc<Mutex<HashMap<String, Vec<Weak<CutFlag>>>>>,
}

impl Revocations {
    pub fn is_revoked(&self, serial: &str) -> bool {
        self.serials
            .read()
            .expect("revocations lock")
            .contains(serial)
    }

    /// Revokes `serials`, closing their live connections.
    pub fn add(&self, serials: impl IntoIterator<Item = String>) {
        let serials: Vec<String> = serials.into_iter().collect();
        self.serials
            .write()
            .expect("revocations lock")
            .extend(serials.iter().cloned());
        let mut connections = self.connections.lock().expect("connections lock");
        for serial in &serials {
            for flag in connections.remove(serial).unwrap_or_default() {
                if let Some(flag) = flag.upgrade() {
                    flag.cut();
                }
            }
        }
    }

    /// The flag that closes a connection made with certificate `serial` once it is revoked
    /// (at once if it already is).
    pub fn watch(&self, serial: &str) -> Arc<CutFlag> {
        let flag = Arc::new(CutFlag::default());
        let mut connections = self.connections.lock().expect("connections lock");
        // Forget connections that closed.
        connections.retain(|_, flags| {
            flags.retain(|f| f.strong_count() > 0);
            !flags.is_empty()
        });
        connections
            .entry(serial.to_owned())
            .or_default()
            .push(Arc::downgrade(&flag));
        drop(connections);
        if self.is_revoked(serial) {
            flag.cut();
        }
        flag
    }
}

/// Set when a connection's certificate is revoked; the connection's reads then end and its
/// writes fail, which closes it.
#[derive(Debug, Default)]
pub struct CutFlag {
    cut: AtomicBool,
    reader: Mutex<Option<Waker>>,
}

impl CutFlag {
    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Acquire)
    }

    /// Wakes the connection's reader with `waker` once cut (its latest waker only: one task
    /// reads a connection).
    pub fn wake_on_cut(&self, waker: &Waker) {
        let mut reader = self.reader.lock().expect("cut flag lock");
        if !reader.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *reader = Some(waker.clone());
        }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        if let Some(waker) = self.reader.lock().expect("cut flag lock").take() {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(serial: &str, not_before_ms: i64, revoked: bool) -> HostCert {
        HostCert {
            serial: serial.into(),
            not_before_ms,
            revoked,
        }
    }

    #[test]
    fn a_newer_certificate_supersedes_and_an_older_one_is_refused() {
        let old = cert("0a", 1_000, false);
        let new = cert("0b", 2_000, false);
        // First seen: nothing to supersede.
        assert_eq!(
            judge(&[], None, &old),
            CertVerdict::Accept { supersedes: vec![] }
        );
        assert_eq!(
            judge(std::slice::from_ref(&old), None, &old),
            CertVerdict::Accept { supersedes: vec![] }
        );
        // The reissued one revokes the old one...
        assert_eq!(
            judge(std::slice::from_ref(&old), None, &new),
            CertVerdict::Accept {
                supersedes: vec!["0a".into()]
            }
        );
        // ...and the old one, presented after the new one was seen, is refused and revoked.
        let CertVerdict::Refuse { revoke, reason } = judge(&[old.clone(), new.clone()], None, &old)
        else {
            panic!("the old certificate was accepted");
        };
        assert!(revoke && reason.contains("superseded"), "{reason}");
    }

    #[test]
    fn a_revoked_certificate_stays_refused_and_same_second_issues_coexist() {
        let revoked = cert("0a", 1_000, true);
        assert!(matches!(
            judge(
                std::slice::from_ref(&revoked),
                None,
                &cert("0a", 1_000, false)
            ),
            CertVerdict::Refuse { revoke: false, .. }
        ));
        // A revoked older certificate supersedes nothing and is superseded by nothing.
        assert_eq!(
            judge(&[revoked], None, &cert("0b", 500, false)),
            CertVerdict::Accept { supersedes: vec![] }
        );
        // Issued in the same second: neither is known to be newer.
        assert_eq!(
            judge(&[cert("0c", 3_000, false)], None, &cert("0d", 3_000, false)),
            CertVerdict::Accept { supersedes: vec![] }
        );
    }

    #[test]
    fn a_revoked_host_refuses_certificates_issued_before_even_unseen_ones() {
        let cutoff = Some(revoked_before(10_000_000));
        // Issued a minute before the revocation, never seen: refused.
        let unseen = cert("0e", 10_000_000 - 60_000 - 3_600_000, false);
        assert!(matches!(
            judge(&[], cutoff, &unseen),
            CertVerdict::Refuse { revoke: true, .. }
        ));
        // Issued a minute after: served.
        let reissued = cert("0f", 10_000_000 + 60_000 - 3_600_000, false);
        assert_eq!(
            judge(&[], cutoff, &reissued),
            CertVerdict::Accept { supersedes: vec![] }
        );
    }

    #[test]
    fn a_certificate_is_read_from_its_der() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x0a, 0xbc]));
        params.not_before = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        assert_eq!(
            host_cert_of_der(&der),
            Some(cert("0abc", 1_700_000_000_000, false))
        );
        assert_eq!(host_cert_of_der(b"junk"), None);
    }

    #[test]
    fn revocations_are_seen_by_every_clone_and_cut_their_connections() {
        let revocations = Revocations::default();
        let seen_by_verifier = revocations.clone();
        let connection = revocations.watch("0a");
        let other = revocations.watch("0b");
        assert!(!seen_by_verifier.is_revoked("0a"));
        revocations.add(["0a".to_owned()]);
        assert!(seen_by_verifier.is_revoked("0a"));
        assert!(connection.is_cut() && !other.is_cut());
        // A connection made with a revoked certificate (revoked after its handshake) is cut
        // as soon as it is watched.
        assert!(revocations.watch("0a").is_cut());
    }
}
