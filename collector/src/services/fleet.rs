//! The fleet registry: which hosts there are and in what state, looked up by what they run
//! or lack; and cutting a host off (revoking its certificates) or removing it.

use hygiene_proto::now_ms;

use super::{ServiceError, ServiceResult, Site};
use crate::findings::HostStatus;
use crate::model::{Host, HostDetail, HostFilter, NewAuditEntry};
use crate::site::SiteEvent;
use crate::vuln::VulnFilter;
use crate::vuln::report::{HostVulnRow, host_row};

/// A hosts query as an admin types it: every field optional (empty), checked here.
#[derive(Debug, Clone, Default)]
pub struct HostQuery {
    pub has_package: String,
    /// With `package_below_version`: hosts with the package older than the version.
    pub package_below_name: String,
    pub package_below_version: String,
    /// Hosts lacking the KB (`KB5034441` or `5034441`).
    pub missing_kb: String,
    /// One of [`HostStatus::ALL`] by name.
    pub status: String,
    /// Only hosts that need cleaning.
    pub infected_only: bool,
    pub include_removed: bool,
}

/// A host with its status now and why.
#[derive(Debug, Clone)]
pub struct HostView {
    pub detail: HostDetail,
    pub status: HostStatus,
    pub status_reason: String,
    /// What it lacks of Microsoft's updates; `None` until an inventory says what it runs.
    pub vuln: Option<HostVulnRow>,
}

/// What cutting a host off did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutOff {
    pub serials: Vec<String>,
    pub streams_closed: usize,
}

#[derive(Clone)]
pub struct Fleet {
    site: Site,
    /// A host silent for longer is stale.
    stale_after_ms: i64,
}

impl Fleet {
    pub fn new(site: Site, stale_after_ms: i64) -> Self {
        Fleet {
            site,
            stale_after_ms,
        }
    }

    /// The hosts `query` asks for, each with its status now.
    pub async fn hosts(&self, query: &HostQuery) -> ServiceResult<Vec<(Host, HostStatus)>> {
        let given = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        let package_below = match (
            given(&query.package_below_name),
            given(&query.package_below_version),
        ) {
            (Some(name), Some(version)) => Some((name, version)),
            (None, None) => None,
            _ => {
                return Err(ServiceError::invalid(
                    "--package-below needs both a name and a version: NAME=VERSION",
                ));
            }
        };
        let missing_kb = match given(&query.missing_kb) {
            Some(kb) => Some(crate::model::normalise_kb(&kb).ok_or_else(|| {
                ServiceError::invalid(format!("{kb:?} is not a KB number (KB5034441)"))
            })?),
            None => None,
        };
        let status = match given(&query.status) {
            Some(text) => Some(parse_status(&text)?),
            None => None,
        };
        let filter = HostFilter {
            has_package: given(&query.has_package),
            package_below,
            missing_kb,
            include_removed: query.include_removed,
        };
        let store = &self.site.store;
        let now = now_ms();
        let mut hosts = store.list_hosts(&filter).await?;
        if let Some(kb) = &filter.missing_kb {
            let ids: Vec<String> = hosts.iter().map(|h| h.host_id.clone()).collect();
            let lacking = self.site.vulns.lacking_kb(kb, &ids).await?;
            hosts.retain(|h| lacking.contains(&h.host_id));
        }
        let current = store.current_bundles().await?;
        Ok(hosts
            .into_iter()
            .map(|h| {
                let host_status = h.cleanup.status(now, self.stale_after_ms, &current);
                (h, host_status)
            })
            .filter(|(_, host_status)| status.is_none_or(|wanted| wanted == *host_status))
            .filter(|(_, host_status)| !query.infected_only || host_status.needs_cleaning())
            .collect())
    }

    /// Everything known about one host, with its status and what it lacks.
    pub async fn host(&self, host_id: &str) -> ServiceResult<HostView> {
        let store = &self.site.store;
        let detail = store
            .host_detail(host_id)
            .await?
            .ok_or_else(|| no_host(host_id))?;
        let current = store.current_bundles().await?;
        let (status, status_reason) =
            detail
                .host
                .cleanup
                .assess(now_ms(), self.stale_after_ms, &current);
        let vulns = &self.site.vulns;
        let vuln = vulns
            .assess_host(host_id)
            .await?
            .map(|a| host_row(&vulns.catalogue(), &a, &VulnFilter::default()));
        Ok(HostView {
            detail,
            status,
            status_reason,
            vuln,
        })
    }

    /// The site's collector replicas (this one alone on SQLite), with the agents each holds.
    pub async fn replicas(&self) -> ServiceResult<Vec<crate::site::ReplicaRecord>> {
        Ok(self.site.store.replicas().await?)
    }

    /// `host_id` if the collector knows the host; not found, naming it, otherwise.
    pub async fn known_host(&self, host_id: &str) -> ServiceResult<String> {
        if host_id.is_empty() {
            return Err(ServiceError::invalid("a host id is required"));
        }
        match self.site.store.host_exists(host_id).await? {
            true => Ok(host_id.to_owned()),
            false => Err(no_host(host_id)),
        }
    }

    /// Revokes every certificate `host_id` was issued until now and ends its streams here
    /// and on the other replicas; the host must enroll again to come back.
    pub async fn revoke(&self, actor: &str, host_id: &str, note: &str) -> ServiceResult<CutOff> {
        self.cut_off(actor, host_id, note, true).await
    }

    /// Cuts a decommissioned host off and takes it out of the fleet's lists (its history
    /// stays).
    pub async fn remove(&self, actor: &str, host_id: &str, note: &str) -> ServiceResult<CutOff> {
        let cut = self.cut_off(actor, host_id, note, false).await?;
        let audit = NewAuditEntry {
            at_ms: now_ms(),
            actor: actor.to_owned(),
            action: "host.remove".into(),
            target: host_id.to_owned(),
            detail: note.trim().to_owned(),
        };
        if !self.site.store.remove_host(host_id, &audit).await? {
            return Err(ServiceError::refused(format!(
                "host {host_id:?} was removed already"
            )));
        }
        tracing::warn!(host = %host_id, admin = %actor, "host removed (decommissioned)");
        Ok(cut)
    }

    /// Revokes the host's certificates (audited as a revocation when `audited`; a removal is
    /// audited with the removal itself) and ends its streams.
    async fn cut_off(
        &self,
        actor: &str,
        host_id: &str,
        note: &str,
        audited: bool,
    ) -> ServiceResult<CutOff> {
        let note = note.trim();
        if note.is_empty() {
            return Err(ServiceError::invalid(
                "cutting a host off needs a note saying why (--note)",
            ));
        }
        let store = &self.site.store;
        if !store.host_exists(host_id).await? {
            return Err(no_host(host_id));
        }
        let now = now_ms();
        let audit = NewAuditEntry {
            at_ms: now,
            actor: actor.to_owned(),
            action: "host.revoke".into(),
            target: host_id.to_owned(),
            detail: note.to_owned(),
        };
        let serials = store
            .revoke_certs(host_id, None, actor, note, now, audited.then_some(&audit))
            .await?;
        self.site.revocations.add(serials.iter().cloned());
        let streams_closed = self.site.registry.cut(host_id, None);
        self.site
            .publish(SiteEvent::HostCut {
                host_id: host_id.to_owned(),
            })
            .await;
        tracing::warn!(host = %host_id, admin = actor, ?serials, streams_closed, "host's certificates revoked: {note}");
        Ok(CutOff {
            serials,
            streams_closed,
        })
    }
}

pub fn parse_status(text: &str) -> ServiceResult<HostStatus> {
    HostStatus::parse(text.trim()).ok_or_else(|| {
        ServiceError::invalid(format!(
            "{text:?} is not a host status ({})",
            HostStatus::ALL.map(HostStatus::as_str).join(", ")
        ))
    })
}

fn no_host(host_id: &str) -> ServiceError {
    ServiceError::not_found(format!("no host {host_id:?}"))
}
