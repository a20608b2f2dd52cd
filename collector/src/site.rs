//! One site, several collector replicas: what a replica tells the others. A change made
//! through one replica (a sweep, a quarantine, a bundle, a revocation, an import) is stored
//! first, as always; then an event says what the other replicas must do about it for the
//! agents connected to them. Events are rows (`site_events`), so a replica that missed a
//! PostgreSQL notification catches up from the table; the notification only wakes it sooner.

use serde::{Deserialize, Serialize};

use crate::sweep::SweepOrder;

/// How often a replica notes itself alive, and after how long without that the others take
/// it for gone and its hosts for disconnected.
pub const REPLICA_SEEN_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
pub const REPLICA_DEAD_AFTER_MS: i64 = 30_000;

/// A replica in the site's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRecord {
    pub id: String,
    pub listen: String,
    pub started_ms: i64,
    pub seen_ms: i64,
    /// Hosts whose stream it holds.
    pub connected_hosts: u64,
}

impl ReplicaRecord {
    /// Whether it noted itself alive recently enough to count as running at `now_ms`.
    pub fn alive(&self, now_ms: i64) -> bool {
        now_ms - self.seen_ms < REPLICA_DEAD_AFTER_MS
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SiteEvent {
    /// Send the order to those of `hosts` connected here (and note the deliveries).
    SweepStarted {
        order: SweepOrder,
        hosts: Vec<String>,
    },
    /// Tell those of `hosts` connected here to stop the sweep.
    SweepCancelled {
        sweep_id: String,
        hosts: Vec<String>,
    },
    /// Send the quarantine or restore of a finding to its host, if connected here.
    FindingOrdered { host_id: String, finding_id: i64 },
    /// Roll the current bundle of `kind` out to the agents connected here.
    BundlePublished { kind: String },
    /// The host's certificates were revoked (or the host removed): refuse them, end its
    /// streams here.
    HostCut { host_id: String },
    /// The botnet lists changed: rebuild the matcher.
    IntelChanged,
    /// Microsoft's documents changed: rebuild the catalogue.
    VulnsChanged,
}

impl SiteEvent {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("events serialize")
    }

    /// An event as stored; `None` for one this version does not know (a newer replica's).
    pub fn from_json(text: &str) -> Option<SiteEvent> {
        serde_json::from_str(text).ok()
    }
}

/// An event as stored: its place in the site's order and the replica that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub id: i64,
    /// When it was published (the publishing replica's clock).
    pub at_ms: i64,
    pub origin: String,
    pub body: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_back_as_written_and_unknown_ones_are_skipped() {
        let event = SiteEvent::SweepStarted {
            order: SweepOrder {
                sweep_id: "s-1".into(),
                full: true,
                splay_seconds: 30,
                deadline_ms: 0,
            },
            hosts: vec!["a".into(), "b".into()],
        };
        assert_eq!(SiteEvent::from_json(&event.to_json()), Some(event));
        assert_eq!(
            SiteEvent::from_json(&SiteEvent::IntelChanged.to_json()),
            Some(SiteEvent::IntelChanged)
        );
        assert_eq!(SiteEvent::from_json(r#"{"event":"from_the_future"}"#), None);
    }
}
