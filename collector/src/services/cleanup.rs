//! Cleanup: triage of findings (quarantine, restore, marking) and how far the fleet's cleanup
//! has come (hosts per status now and day by day).

use hygiene_proto::{format_ms, now_ms};

use super::{ServiceError, ServiceResult, Site};
use crate::agents::finding_order;
use crate::findings::{AdminChange, FindingState, HostStatus};
use crate::model::{Finding, FindingChange, FindingFilter, FindingKind, HostFilter};
use crate::site::SiteEvent;
use crate::store::{Store, StoreError};

/// Hosts per status now, and the daily counts since a day.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Every status, zeros too.
    pub by_status: Vec<(HostStatus, u32)>,
    pub hosts: u32,
    /// The share of hosts verified clean, 0 with no host.
    pub verified_clean_share: f64,
    /// `(day, [(status, hosts)])`, oldest day first.
    pub timeline: Vec<(String, Vec<(String, u32)>)>,
}

#[derive(Clone)]
pub struct Cleanup {
    site: Site,
    /// A host silent for longer is stale.
    stale_after_ms: i64,
}

impl Cleanup {
    pub fn new(site: Site, stale_after_ms: i64) -> Self {
        Cleanup {
            site,
            stale_after_ms,
        }
    }

    pub async fn findings(&self, filter: &FindingFilter) -> ServiceResult<Vec<Finding>> {
        Ok(self.site.store.list_findings(filter).await?)
    }

    pub async fn history(&self, id: i64) -> ServiceResult<(Finding, Vec<FindingChange>)> {
        self.site
            .store
            .finding_history(id)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("no finding {id}")))
    }

    /// Applies an admin's change to a finding (and, for a quarantine or restore, to the other
    /// findings on its file), and orders the agent: at once if connected here, through the
    /// other replicas otherwise; an agent offline gets it when it reconnects.
    pub async fn change_finding(
        &self,
        actor: &str,
        id: i64,
        change: &AdminChange,
        note: &str,
    ) -> ServiceResult<Finding> {
        let finding = self
            .site
            .store
            .change_finding(id, change, actor, note, now_ms())
            .await
            .map_err(|err| match err {
                StoreError::NoFinding(_) => ServiceError::not_found(err.to_string()),
                StoreError::Refused(reason) => {
                    ServiceError::refused(format!("finding {id}: {reason}"))
                }
                err => err.into(),
            })?;
        if matches!(change, AdminChange::Quarantine | AdminChange::Restore) {
            if let Some(order) = finding_order(&finding)
                && !self.site.registry.send(&finding.host_id, order)
            {
                tracing::info!(host = %finding.host_id, finding = finding.id, "host not connected here; the other replicas are told");
            }
            self.site
                .publish(SiteEvent::FindingOrdered {
                    host_id: finding.host_id.clone(),
                    finding_id: finding.id,
                })
                .await;
        }
        Ok(finding)
    }

    /// Hosts per status now (also written as today's snapshot) and the timeline since
    /// `since_ms` (the last 30 days with `None`).
    pub async fn progress(&self, since_ms: Option<i64>) -> ServiceResult<Progress> {
        let now = now_ms();
        let since = since_ms.unwrap_or(now - 30 * 86_400_000);
        let by_status = snapshot_statuses(&self.site.store, self.stale_after_ms).await?;
        let hosts: u32 = by_status.iter().map(|(_, n)| n).sum();
        let clean = by_status
            .iter()
            .find(|(s, _)| *s == HostStatus::Clean)
            .map_or(0, |(_, n)| *n);
        let mut timeline: Vec<(String, Vec<(String, u32)>)> = Vec::new();
        for (day, status, count) in self.site.store.status_snapshots(&day_of(since)).await? {
            if timeline.last().is_none_or(|(d, _)| *d != day) {
                timeline.push((day.clone(), Vec::new()));
            }
            timeline
                .last_mut()
                .expect("pushed above")
                .1
                .push((status, count));
        }
        Ok(Progress {
            by_status,
            hosts,
            verified_clean_share: if hosts == 0 {
                0.0
            } else {
                f64::from(clean) / f64::from(hosts)
            },
            timeline,
        })
    }
}

/// The admin change an action names: `quarantine`, `restore`, or `mark` to `state`.
pub fn parse_change(action: &str, state: &str) -> ServiceResult<AdminChange> {
    match action {
        "quarantine" => Ok(AdminChange::Quarantine),
        "restore" => Ok(AdminChange::Restore),
        "mark" => Ok(AdminChange::Mark(parse_state(state)?)),
        other => Err(ServiceError::invalid(format!(
            "{other:?}: the action is quarantine, restore or mark"
        ))),
    }
}

pub fn parse_state(text: &str) -> ServiceResult<FindingState> {
    FindingState::parse(text.trim()).ok_or_else(|| {
        ServiceError::invalid(format!(
            "{text:?} is not a finding state ({})",
            FindingState::ALL.map(FindingState::as_str).join(", ")
        ))
    })
}

pub fn parse_kind(text: &str) -> ServiceResult<FindingKind> {
    FindingKind::parse(text.trim()).ok_or_else(|| {
        ServiceError::invalid(format!(
            "{text:?} is not a finding kind (yara, hash_ioc, botnet_ip)"
        ))
    })
}

/// Hosts per status now, every status named (zeros too).
async fn status_counts(
    store: &Store,
    now: i64,
    stale_after_ms: i64,
) -> Result<Vec<(HostStatus, u32)>, StoreError> {
    let hosts = store.list_hosts(&HostFilter::default()).await?;
    let current = store.current_bundles().await?;
    let statuses: Vec<HostStatus> = hosts
        .iter()
        .map(|h| h.cleanup.status(now, stale_after_ms, &current))
        .collect();
    Ok(HostStatus::ALL
        .into_iter()
        .map(|status| {
            let count = statuses.iter().filter(|s| **s == status).count() as u32;
            (status, count)
        })
        .collect())
}

/// Writes today's count of hosts per status; returns the counts.
pub async fn snapshot_statuses(
    store: &Store,
    stale_after_ms: i64,
) -> Result<Vec<(HostStatus, u32)>, StoreError> {
    let now = now_ms();
    let counts = status_counts(store, now, stale_after_ms).await?;
    store
        .record_status_snapshot(&day_of(now), &counts, now)
        .await?;
    Ok(counts)
}

/// The UTC day of a Unix ms time, `YYYY-MM-DD`.
fn day_of(ms: i64) -> String {
    format_ms(ms).chars().take(10).collect()
}
