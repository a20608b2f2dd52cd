//! Fleet sweeps: starting one over chosen hosts or all of them, following it, cancelling it,
//! and the rescan a new bundle sets off. Every replica's agents get the order (see
//! [`super::Site`]).

use hygiene_proto::{format_ms, now_ms};

use super::{ServiceError, ServiceResult, Site};
use crate::agents::cancel_sweep_command;
use crate::model::{BundleRecord, NewAuditEntry};
use crate::site::SiteEvent;
use crate::store::StoreError;
use crate::sweep::{self, NewSweep, SweepOrder, SweepState, SweepView};

/// What an admin asks for when starting a sweep.
#[derive(Debug, Clone, Default)]
pub struct SweepRequest {
    /// Every known host; exclusive with `hosts`.
    pub all: bool,
    pub hosts: Vec<String>,
    pub full: bool,
    /// `None`: [`sweep::DEFAULT_SPLAY_SECONDS`].
    pub splay_seconds: Option<u32>,
    /// `None`: [`sweep::DEFAULT_DEADLINE_SECONDS`].
    pub deadline_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedSweep {
    pub id: String,
    pub hosts: usize,
    /// The hosts connected to this replica that were sent the order at once.
    pub delivered: usize,
}

#[derive(Clone)]
pub struct Sweeps {
    site: Site,
}

impl Sweeps {
    pub fn new(site: Site) -> Self {
        Sweeps { site }
    }

    pub async fn start(&self, actor: &str, request: SweepRequest) -> ServiceResult<StartedSweep> {
        let began = std::time::Instant::now();
        let store = &self.site.store;
        let mut hosts: Vec<String> = request
            .hosts
            .iter()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .collect();
        hosts.sort();
        hosts.dedup();
        match (request.all, hosts.is_empty()) {
            (true, false) => {
                return Err(ServiceError::invalid(
                    "name hosts or ask for all of them, not both",
                ));
            }
            (false, true) => {
                return Err(ServiceError::invalid(
                    "no hosts named: pass --all or --host ID",
                ));
            }
            (true, true) => hosts = store.all_host_ids().await?,
            (false, false) => {}
        }
        if hosts.is_empty() {
            return Err(ServiceError::refused(
                "the collector knows no host yet: no agent has connected",
            ));
        }
        let now = now_ms();
        let deadline_seconds = request
            .deadline_seconds
            .unwrap_or(sweep::DEFAULT_DEADLINE_SECONDS);
        if deadline_seconds == 0 {
            return Err(ServiceError::invalid("the deadline must be in the future"));
        }
        let deadline_ms = i64::try_from(deadline_seconds)
            .ok()
            .and_then(|s| s.checked_mul(1000))
            .and_then(|ms| ms.checked_add(now))
            .ok_or_else(|| ServiceError::invalid("the deadline is too far away"))?;
        let new = NewSweep {
            id: sweep::new_sweep_id(now, rand::random()),
            created_ms: now,
            created_by: actor.to_owned(),
            full: request.full,
            splay_seconds: request
                .splay_seconds
                .unwrap_or(sweep::DEFAULT_SPLAY_SECONDS),
            deadline_ms,
            hosts,
            after_bundle: false,
        };
        let audit = NewAuditEntry {
            at_ms: now,
            actor: actor.to_owned(),
            action: "sweep.start".into(),
            target: new.id.clone(),
            detail: format!(
                "{} host(s){}, full {}, splay {} s, deadline {}",
                new.hosts.len(),
                if request.all { " (all)" } else { "" },
                new.full,
                new.splay_seconds,
                format_ms(deadline_ms),
            ),
        };
        store
            .create_sweep(&new, &audit)
            .await
            .map_err(|err| match err {
                StoreError::UnknownHosts(_) => ServiceError::not_found(err.to_string()),
                err => err.into(),
            })?;
        let stored = began.elapsed();
        let order = SweepOrder {
            sweep_id: new.id.clone(),
            full: new.full,
            splay_seconds: new.splay_seconds,
            deadline_ms,
        };
        // The other replicas first, so that they deliver to their agents while this one
        // delivers to its own.
        self.site
            .publish(SiteEvent::SweepStarted {
                order: order.clone(),
                hosts: new.hosts.clone(),
            })
            .await;
        let published = began.elapsed();
        let delivered = self.site.deliver_sweep(&order, &new.hosts).await;
        tracing::info!(
            sweep = %new.id, hosts = new.hosts.len(), delivered = delivered.len(), by = %new.created_by,
            stored_ms = stored.as_millis() as u64, published_ms = published.as_millis() as u64,
            done_ms = began.elapsed().as_millis() as u64,
            "sweep started"
        );
        Ok(StartedSweep {
            id: new.id,
            hosts: new.hosts.len(),
            delivered: delivered.len(),
        })
    }

    pub async fn get(&self, id: &str) -> ServiceResult<SweepView> {
        let record = self
            .site
            .store
            .sweep(id)
            .await?
            .ok_or_else(|| no_sweep(id))?;
        Ok(record.view(now_ms()))
    }

    pub async fn list(&self) -> ServiceResult<Vec<SweepView>> {
        let now = now_ms();
        Ok(self
            .site
            .store
            .sweeps()
            .await?
            .into_iter()
            .map(|record| record.view(now))
            .collect())
    }

    /// Stops a running sweep; the hosts that had not finished, which are told to stop.
    pub async fn cancel(&self, actor: &str, id: &str) -> ServiceResult<Vec<String>> {
        let view = self.get(id).await?;
        if view.state != SweepState::Running {
            return Err(ServiceError::refused(format!(
                "sweep {id} is already {}",
                view.state.as_str()
            )));
        }
        let open: Vec<String> = view
            .hosts
            .iter()
            .filter(|h| h.state.is_open())
            .map(|h| h.host_id.clone())
            .collect();
        let audit = NewAuditEntry {
            at_ms: now_ms(),
            actor: actor.to_owned(),
            action: "sweep.cancel".into(),
            target: id.to_owned(),
            detail: format!("{} host(s) not finished", open.len()),
        };
        if !self.site.store.cancel_sweep(id, &audit).await? {
            return Err(no_sweep(id));
        }
        // Hosts offline now are told when they reconnect (if they were sent the sweep).
        let command = cancel_sweep_command(id);
        for host in &open {
            self.site.registry.send(host, command.clone());
        }
        self.site
            .publish(SiteEvent::SweepCancelled {
                sweep_id: id.to_owned(),
                hosts: open.clone(),
            })
            .await;
        Ok(open)
    }

    /// Lists the rescan that a new bundle sets off on every agent as a fleet sweep of every
    /// known host, so that `sweep status` follows it. The agents start it themselves once
    /// the bundle is applied; a bundle published again keeps the sweep it already has.
    pub async fn track_rescan(&self, bundle: &BundleRecord, now: i64) -> ServiceResult<()> {
        let store = &self.site.store;
        let id = hygiene_proto::bundle::rescan_sweep_id(&bundle.kind, &bundle.version);
        if store.sweep(&id).await?.is_some() {
            return Ok(());
        }
        let hosts = store.all_host_ids().await?;
        if hosts.is_empty() {
            return Ok(());
        }
        let deadline_ms = now + sweep::DEFAULT_DEADLINE_SECONDS as i64 * 1000;
        let new = NewSweep {
            id,
            created_ms: now,
            created_by: bundle.created_by.clone(),
            full: false,
            splay_seconds: 0,
            deadline_ms,
            hosts,
            after_bundle: true,
        };
        let audit = NewAuditEntry {
            at_ms: now,
            actor: bundle.created_by.clone(),
            action: "sweep.start".into(),
            target: new.id.clone(),
            detail: format!(
                "{} host(s), rescan after {} bundle {} ({}), deadline {}",
                new.hosts.len(),
                bundle.kind,
                bundle.version,
                bundle.name,
                format_ms(deadline_ms),
            ),
        };
        Ok(store.create_sweep(&new, &audit).await?)
    }
}

fn no_sweep(id: &str) -> ServiceError {
    ServiceError::not_found(format!("no sweep {id:?}"))
}
