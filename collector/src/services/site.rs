//! The replica's side of the site's events (see [`crate::site`]): it publishes what the admin
//! service changed and carries out what other replicas published, for the agents connected
//! here. Both sides use the same delivery functions, so a sweep reaches an agent the same way
//! whichever replica it was started on.

use std::time::Duration;

use hygiene_proto::now_ms;

use crate::agents::{Registry, cancel_sweep_command, finding_order, roll_out, start_sweep_command};
use crate::certs::Revocations;
use crate::services::{Intel, Vulns};
use crate::site::{SiteEvent, StoredEvent};
use crate::store::{Store, StoreError};
use crate::sweep::SweepOrder;

/// Events are read at least this often (a missed notification costs no more).
const POLL: Duration = Duration::from_secs(1);
/// Events older than this are deleted (a replica down longer catches up from agents'
/// reconnections, which get every pending order).
const KEEP_EVENTS_MS: i64 = 3_600_000;

/// What a replica needs to act on events.
#[derive(Clone)]
pub struct Site {
    pub store: Store,
    pub registry: Registry,
    pub intel: Intel,
    pub vulns: Vulns,
    pub revocations: Revocations,
}

impl Site {
    /// Stores `event` for the other replicas (this one has done its part already). A failure
    /// is logged: the change itself is stored, and agents elsewhere get it when they reconnect.
    pub async fn publish(&self, event: SiteEvent) {
        if let Err(err) = self.store.publish_event(&event.to_json(), now_ms()).await {
            tracing::error!(?event, "cannot tell the other replicas: {err}");
        }
    }

    /// Reads and carries out the other replicas' events until the process ends.
    pub async fn follow(self) {
        let mut last = loop {
            match self.store.last_event_id().await {
                Ok(id) => break id,
                Err(err) => {
                    tracing::error!("cannot read the site's events: {err}");
                    tokio::time::sleep(POLL).await;
                }
            }
        };
        let mut cues = self.store.event_cues().await;
        let mut pruned_at = 0_i64;
        loop {
            match &mut cues {
                Some(cues) => {
                    let _ = tokio::time::timeout(POLL, cues.recv()).await;
                }
                None => tokio::time::sleep(POLL).await,
            }
            match self.store.events_after(last).await {
                Ok(events) => {
                    for event in events {
                        last = event.id;
                        self.carry_out(&event).await;
                    }
                }
                Err(err) => tracing::error!("cannot read the site's events: {err}"),
            }
            let now = now_ms();
            if now - pruned_at > KEEP_EVENTS_MS / 4 {
                pruned_at = now;
                if let Err(err) = self.store.prune_events(now - KEEP_EVENTS_MS).await {
                    tracing::warn!("cannot prune the site's events: {err}");
                }
            }
        }
    }

    async fn carry_out(&self, stored: &StoredEvent) {
        if stored.origin == self.store.replica_id() {
            return;
        }
        let Some(event) = SiteEvent::from_json(&stored.body) else {
            tracing::warn!(id = stored.id, origin = %stored.origin, "site event of a newer version skipped");
            return;
        };
        tracing::debug!(id = stored.id, origin = %stored.origin, ?event, "site event");
        let done = match event {
            SiteEvent::SweepStarted { order, hosts } => {
                let delivered = self.deliver_sweep(&order, &hosts).await;
                tracing::info!(
                    sweep = %order.sweep_id, hosts = hosts.len(), delivered = delivered.len(),
                    after_ms = now_ms() - stored.at_ms,
                    "sweep started on another replica, delivered here"
                );
                Ok(())
            }
            SiteEvent::SweepCancelled { sweep_id, hosts } => {
                let command = cancel_sweep_command(&sweep_id);
                for host in &hosts {
                    self.registry.send(host, command.clone());
                }
                Ok(())
            }
            SiteEvent::FindingOrdered {
                host_id,
                finding_id,
            } => self.send_finding_order(&host_id, finding_id).await,
            SiteEvent::BundlePublished { kind } => match self.store.current_bundle(&kind).await {
                Ok(Some(bundle)) => {
                    let hosts = self.registry.connected();
                    tokio::spawn(roll_out(
                        self.store.clone(),
                        self.registry.clone(),
                        bundle,
                        hosts,
                    ));
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(err) => Err(err),
            },
            SiteEvent::HostCut { host_id } => match self.store.revoked_serials().await {
                Ok(serials) => {
                    self.revocations.add(serials);
                    self.registry.cut(&host_id, None);
                    Ok(())
                }
                Err(err) => Err(err),
            },
            SiteEvent::IntelChanged => self.intel.reload().await,
            SiteEvent::VulnsChanged => self.vulns.reload().await,
        };
        if let Err(err) = done {
            tracing::error!(id = stored.id, origin = %stored.origin, "cannot carry out a site event: {err}");
        }
    }

    /// Sends a sweep's order to those of `hosts` connected here and notes the deliveries; the
    /// hosts it reached.
    pub async fn deliver_sweep(&self, order: &SweepOrder, hosts: &[String]) -> Vec<String> {
        let command = start_sweep_command(order);
        let delivered: Vec<String> = hosts
            .iter()
            .filter(|host| self.registry.send(host, command.clone()))
            .cloned()
            .collect();
        // Agents dedupe orders by sweep id, so a failure to note the delivery only means the
        // order is sent again when the host next connects.
        if let Err(err) = self
            .store
            .mark_delivered(&order.sweep_id, &delivered, now_ms())
            .await
        {
            tracing::error!(sweep = %order.sweep_id, "cannot note deliveries: {err}");
        }
        delivered
    }

    /// The finding's pending quarantine or restore, sent to its host if connected here.
    async fn send_finding_order(&self, host_id: &str, finding_id: i64) -> Result<(), StoreError> {
        let Some(finding) = self.store.finding(finding_id).await? else {
            return Ok(());
        };
        if let Some(order) = finding_order(&finding) {
            self.registry.send(host_id, order);
        }
        Ok(())
    }
}

/// Keeps this replica in the site's list and takes over after replicas that died.
pub async fn note_alive(store: Store, listen: String, every: Duration, dead_after: Duration) {
    let dead_after_ms = i64::try_from(dead_after.as_millis()).unwrap_or(i64::MAX);
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let now = now_ms();
        if let Err(err) = store.replica_seen(&listen, now, now - dead_after_ms).await {
            tracing::warn!("cannot note this replica alive: {err}");
        }
    }
}
