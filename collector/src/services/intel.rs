//! The botnet lists as the collector applies them: the matcher built from the store's active
//! lists, and re-checks of hosts: all of them when a list is imported or retired (no scan
//! needed: the store has every host's addresses and sockets), one when its agent says hello,
//! reports its sockets or finishes a sweep.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use hygiene_proto::now_ms;

use crate::intel::{BotnetMatch, IpMatcher, RecheckSummary, botnet, match_host};
use crate::store::{Store, StoreError};

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
        let matcher = store.active_ip_matcher().await?;
        Ok(Intel {
            store,
            matcher: Arc::new(RwLock::new(Arc::new(matcher))),
            recheck: Arc::default(),
        })
    }

    /// Starts with no lists and builds the matcher in the background (millions of entries
    /// take seconds), so that the collector serves at once. Until it is built, no host is
    /// re-checked and an import waits: an empty matcher would resolve every botnet match.
    /// Once built, every host is re-checked, to catch up with what agents reported meanwhile.
    pub fn load_in_background(store: Store) -> Intel {
        let intel = Intel {
            store,
            matcher: Arc::default(),
            recheck: Arc::default(),
        };
        let one = intel
            .recheck
            .clone()
            .try_lock_owned()
            .expect("a new lock is free");
        let this = intel.clone();
        tokio::spawn(async move {
            let _one = one;
            let started = Instant::now();
            let matcher = match this.store.active_ip_matcher().await {
                Ok(matcher) => matcher,
                Err(err) => {
                    tracing::error!(
                        "cannot load the botnet lists: {err}; no host is checked against them until a list is imported"
                    );
                    return;
                }
            };
            let entries = matcher.len();
            *this.matcher.write().expect("matcher lock") = Arc::new(matcher);
            tracing::info!(
                entries,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "botnet lists loaded"
            );
            if entries > 0 {
                match this.recheck_locked(None).await {
                    Ok(summary) => tracing::info!(
                        hosts = summary.hosts,
                        matched = summary.matched_hosts,
                        "hosts re-checked against the botnet lists"
                    ),
                    Err(err) => {
                        tracing::error!("cannot re-check the hosts against the botnet lists: {err}")
                    }
                }
            }
        });
        intel
    }

    pub fn matcher(&self) -> Arc<IpMatcher> {
        self.matcher.read().expect("matcher lock").clone()
    }

    /// Rebuilds the matcher after another replica changed the lists (which re-checked the
    /// hosts itself).
    pub async fn reload(&self) -> Result<(), StoreError> {
        let matcher = self.store.active_ip_matcher().await?;
        *self.matcher.write().expect("matcher lock") = Arc::new(matcher);
        Ok(())
    }

    /// Rebuilds the matcher after the lists changed and re-checks every host.
    pub async fn reload_and_recheck(&self) -> Result<RecheckSummary, StoreError> {
        let _one = self.recheck.lock().await;
        let matcher = self.store.active_ip_matcher().await?;
        *self.matcher.write().expect("matcher lock") = Arc::new(matcher);
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
