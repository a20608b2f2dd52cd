//! Generated gRPC types for the Hygiene protocol, `hygiene.v1`.
//!
//! Two services share one mTLS listener on the collector:
//! - [`v1::agent_service_server::AgentService`]: one long-lived bidirectional stream per agent
//!   (`Session`). Every [`v1::AgentMessage`] carries a per-agent sequence number; the collector
//!   answers each one with an [`v1::Ack`] only after its effect is committed to the store.
//! - [`v1::admin_service_server::AdminService`]: the unary calls behind `hygienectl`.
//!
//! These types stop at the edge: the collector's store and the CLI's output work on their own
//! domain types and convert at the service boundary.

pub mod bundle;

/// The largest collector message an agent takes (a rule bundle: signature-base is 7 MB); the
/// collector refuses to publish a bundle that would not fit.
pub const MAX_AGENT_COMMAND_SIZE: usize = 64 * 1024 * 1024;

/// Now, in the protocol's time unit (Unix milliseconds); 0 before 1970.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The protocol's times (Unix milliseconds) as people read them: RFC 3339 UTC, to the
/// second; the number itself when it is out of range.
pub fn format_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// Agent certificates' validity, shared by the collector, which issues them, and the agent,
/// which renews them; and the names of the files an admin's certificate directory holds,
/// which `pki` writes and hygienectl reads.
pub mod certs {
    use std::time::{Duration, SystemTime};

    /// The CA certificate(s) to trust, in every certificate directory.
    pub const CA_CERT_FILE: &str = "ca.pem";
    /// An admin's certificate and key (`pki init`, `pki issue-admin`).
    pub const ADMIN_CERT_FILE: &str = "admin.pem";
    pub const ADMIN_KEY_FILE: &str = "admin.key";

    /// How far back a certificate's validity starts from its issue: an hour of slack for
    /// hosts whose clocks run a little behind the collector's.
    pub const BACKDATE: Duration = Duration::from_secs(3600);

    /// An agent certificate's lifetime unless the collector is told otherwise.
    pub const AGENT_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);

    /// When a certificate valid from `not_before` (backdated by [`BACKDATE`]) until
    /// `not_after` is due for renewal: two-thirds of the way from its issue to its end, which
    /// leaves a third of its life for a host that is off or cut off to come back in time.
    pub fn renewal_due(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
        let issued = not_before + BACKDATE;
        let lifetime = not_after.duration_since(issued).unwrap_or_default();
        issued + lifetime * 2 / 3
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn renewal_is_due_two_thirds_into_the_life_from_issue() {
            let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
            let due = renewal_due(issued - BACKDATE, issued + AGENT_LIFETIME);
            assert_eq!(due, issued + Duration::from_secs(60 * 24 * 3600));
            // Short lifetimes are not swamped by the backdating.
            let due = renewal_due(issued - BACKDATE, issued + Duration::from_secs(30));
            assert_eq!(due, issued + Duration::from_secs(20));
            // A certificate ending before its issue is due at once.
            let due = renewal_due(issued - BACKDATE, issued - BACKDATE);
            assert_eq!(due, issued);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_times_as_rfc3339() {
        assert_eq!(super::format_ms(1_700_000_000_123), "2023-11-14T22:13:20Z");
    }
}

pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("hygiene.v1");
}

/// Displays an error followed by its sources (`outer: inner: root cause`). Transport errors
/// hide the useful part ("connection refused", "certificate unknown") in the chain; a source
/// whose text is already said (several layers repeat their inner error) is said once.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut said = self.0.to_string();
        let mut source = self.0.source();
        while let Some(inner) = source {
            let text = inner.to_string();
            if !said.contains(&text) {
                said.push_str(": ");
                said.push_str(&text);
            }
            source = inner.source();
        }
        f.write_str(&said)
    }
}
