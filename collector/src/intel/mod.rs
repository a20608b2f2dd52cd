//! Threat intelligence on the collector: the CERT's botnet IP lists and what they say about
//! each host.
//!
//! - [`iplist`]: reading list files (plain, Loki's C2 list, CSV).
//! - [`matcher`]: the active lists' networks in a prefix trie.
//! - [`botnet`]: one host's addresses, egress address and sockets against the lists.
//! - [`rollout`]: where a rule or IOC bundle's rollout stands on each host.
//!
//! [`Intel`] holds the matcher built from the store's active lists and re-checks hosts: all of
//! them when a list is imported or retired (no scan needed: the store has every host's
//! addresses and sockets), one when its agent says hello, reports its sockets or finishes a
//! sweep. Each match is a `botnet_ip` finding; see [`crate::store::Store::apply_botnet_matches`]
//! for when one is resolved.

pub mod botnet;
pub mod bundles;
pub mod iplist;
pub mod matcher;
pub mod rollout;

use std::sync::{Arc, RwLock};
use std::time::Instant;

use crate::store::{Store, StoreError};
pub use botnet::{BotnetMatch, HostNetFacts, MatchVia, match_host};
pub use matcher::{ActiveEntry, IpMatcher};

/// What a re-check found and changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecheckSummary {
    pub hosts: u64,
    /// Hosts with at least one match.
    pub matched_hosts: u64,
    pub opened: u64,
    pub reopened: u64,
    pub resolved: u64,
    pub elapsed_ms: u64,
}

/// The botnet lists as the collector applies them.
#[derive(Clone)]
pub struct Intel {
    store: Store,
    matcher: Arc<RwLock<Arc<IpMatcher>>>,
    /// One re-check at a time, so that a host's matches are never written from an older
    /// matcher after a newer one.
    recheck: Arc<tokio::sync::Mutex<()>>,
}

impl Intel {
    /// Builds the matcher from the store's active lists.
    pub async fn load(store: Store) -> Result<Intel, StoreError> {
        let entries = store.active_ip_entries().await?;
        Ok(Intel {
            store,
            matcher: Arc::new(RwLock::new(Arc::new(IpMatcher::new(entries)))),
            recheck: Arc::default(),
        })
    }

    pub fn matcher(&self) -> Arc<IpMatcher> {
        self.matcher.read().expect("matcher lock").clone()
    }

    /// Rebuilds the matcher after the lists changed and re-checks every host.
    pub async fn reload_and_recheck(&self) -> Result<RecheckSummary, StoreError> {
        let _one = self.recheck.lock().await;
        let entries = self.store.active_ip_entries().await?;
        *self.matcher.write().expect("matcher lock") = Arc::new(IpMatcher::new(entries));
        self.recheck_locked(None).await
    }

    /// Re-checks one host (after its hello, socket report or sweep).
    pub async fn recheck_host(&self, host_id: &str) -> Result<RecheckSummary, StoreError> {
        let _one = self.recheck.lock().await;
        self.recheck_locked(Some(host_id)).await
    }

    async fn recheck_locked(&self, host_id: Option<&str>) -> Result<RecheckSummary, StoreError> {
        let started = Instant::now();
        let matcher = self.matcher();
        // Only sockets to listed addresses are worth reading whole.
        let to_listed =
            |remote: &str| botnet::parse_ip(remote).is_some_and(|ip| matcher.contains(ip));
        let facts = self.store.host_net_facts(host_id, &to_listed).await?;
        let results: Vec<(String, Vec<BotnetMatch>)> = facts
            .iter()
            .map(|host| (host.host_id.clone(), match_host(&matcher, host)))
            .collect();
        let mut summary = RecheckSummary {
            hosts: results.len() as u64,
            matched_hosts: results.iter().filter(|(_, m)| !m.is_empty()).count() as u64,
            ..RecheckSummary::default()
        };
        let listed = |ip| matcher.contains(ip);
        let changes = self
            .store
            .apply_botnet_matches(&results, &listed, now_ms())
            .await?;
        summary.opened = changes.opened;
        summary.reopened = changes.reopened;
        summary.resolved = changes.resolved;
        summary.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(summary)
    }
}

/// Lower-case hex SHA-256 of `bytes` (an imported file's fingerprint).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hygiene_proto::bundle::hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
