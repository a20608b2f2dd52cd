//! The admin service behind `hygienectl`: a thin adapter from the protocol to the services
//! (see [`crate::services`]). Every call requires an admin certificate, enforced once by the
//! interceptor the server puts in front of it ([`identity::require_admin`]).

use hygiene_proto::bundle;
use hygiene_proto::v1::{self, admin_service_server::AdminService};
use tonic::{Request, Response, Status};

use crate::allowlist::{AllowEntry, AllowMatch};
use crate::findings::{FindingState, HostStatus};
use crate::identity;
use crate::intel::RecheckSummary;
use crate::intel::iplist::{self, ListFormat};
use crate::intel::rollout::{HostKindState, RolloutState, rollout_state};
use crate::model::BundleRecord;
use crate::model::{
    ConnectionFilter, Finding, FindingFilter, FindingKind, Host, HostFilter, IpList, NewAuditEntry,
    NewIpList,
};
use crate::services::{
    Cleanup, CutOff, Fleet, HostQuery, Intel, Published, Rules, ServiceError, Site, SweepRequest,
    Sweeps, VulnError, Vulns, parse_change, parse_kind, parse_state,
};
use crate::site::SiteEvent;
use crate::store::{Store, StoreError};
use crate::sweep::{HostSweepState, SweepView};
use crate::vuln::report::{HostVulnRow, host_row, patch_order};
use crate::vuln::{ImportOutcome, Severity, VulnFilter};
use hygiene_proto::now_ms;

pub struct AdminEndpoint {
    store: Store,
    site: Site,
    sweeps: Sweeps,
    cleanup: Cleanup,
    fleet: Fleet,
    rules: Rules,
    /// The botnet lists; importing or retiring one re-checks every host.
    intel: Intel,
    /// Microsoft's monthly documents, against which hosts are assessed when asked.
    vulns: Vulns,
    /// A host silent for longer is stale.
    stale_after_ms: i64,
    /// What `enroll create` prints for agents to pin.
    ca_fingerprint: String,
}

impl AdminEndpoint {
    pub fn new(site: Site, stale_after_ms: i64) -> Self {
        AdminEndpoint {
            store: site.store.clone(),
            sweeps: Sweeps::new(site.clone()),
            cleanup: Cleanup::new(site.clone(), stale_after_ms),
            fleet: Fleet::new(site.clone(), stale_after_ms),
            rules: Rules::new(site.clone(), None),
            intel: site.intel.clone(),
            vulns: site.vulns.clone(),
            stale_after_ms,
            ca_fingerprint: String::new(),
            site,
        }
    }

    /// The key rule and IOC bundles are signed with; without one, publishing is refused.
    pub fn with_signing_key(mut self, key: Option<Vec<u8>>) -> Self {
        self.rules = Rules::new(self.site.clone(), key);
        self
    }

    pub fn with_ca_fingerprint(mut self, fingerprint: String) -> Self {
        self.ca_fingerprint = fingerprint;
        self
    }
}

/// A service's refusal as the protocol says it.
fn status(err: ServiceError) -> Status {
    match err {
        ServiceError::Invalid(m) => Status::invalid_argument(m),
        ServiceError::NotFound(m) => Status::not_found(m),
        ServiceError::Refused(m) => Status::failed_precondition(m),
        ServiceError::Internal(m) => {
            tracing::error!("{m}");
            Status::internal(m)
        }
        ServiceError::Store(err) => internal(err),
    }
}

fn internal(err: StoreError) -> Status {
    tracing::error!("{err}");
    Status::internal(err.to_string())
}

fn cut_off_entry(cut: CutOff) -> v1::RevokeHostResponse {
    v1::RevokeHostResponse {
        serials: cut.serials,
        streams_closed: cut.streams_closed as u32,
    }
}

fn published_entry(p: Published) -> v1::PublishResponse {
    v1::PublishResponse {
        bundle: Some(bundle_entry(&p.bundle)),
        skipped: p.skipped,
        sent_to: p.sent_to as u64,
        slow: p.slow,
        sent_at_once: crate::agents::ROLLOUT_AT_ONCE as u32,
    }
}

fn allow_entry(e: &AllowEntry, now: i64) -> v1::AllowEntry {
    let (removed_ms, removed_by) = e.removed.clone().unwrap_or_default();
    v1::AllowEntry {
        id: e.id,
        kind: e.matcher.kind().to_owned(),
        value: e.matcher.value().to_owned(),
        host_id: e.host_id.clone().unwrap_or_default(),
        note: e.note.clone(),
        created_ms: e.created_ms,
        created_by: e.created_by.clone(),
        expires_ms: e.expires_ms.unwrap_or(0),
        removed_ms,
        removed_by,
        active: e.active(now),
    }
}

fn bundle_entry(b: &BundleRecord) -> v1::Bundle {
    v1::Bundle {
        id: b.id,
        kind: b.kind.clone(),
        name: b.name.clone(),
        version: b.version.clone(),
        created_ms: b.created_ms,
        created_by: b.created_by.clone(),
        files: b.files,
        items: b.items,
        bytes: b.bytes,
    }
}

fn source_files(files: Vec<v1::SourceFile>) -> Vec<(String, Vec<u8>)> {
    files.into_iter().map(|f| (f.path, f.content)).collect()
}

#[tonic::async_trait]
impl AdminService for AdminEndpoint {
    async fn list_hosts(
        &self,
        request: Request<v1::ListHostsRequest>,
    ) -> Result<Response<v1::ListHostsResponse>, Status> {
        let r = request.into_inner();
        let query = HostQuery {
            has_package: r.has_package,
            package_below_name: r.package_below_name,
            package_below_version: r.package_below_version,
            missing_kb: r.missing_kb,
            status: r.status,
            infected_only: r.infected_only,
            include_removed: r.include_removed,
        };
        let hosts = self.fleet.hosts(&query).await.map_err(status)?;
        let hosts = hosts
            .into_iter()
            .map(|(h, host_status)| host_entry(h, host_status))
            .collect();
        Ok(Response::new(v1::ListHostsResponse { hosts }))
    }

    async fn get_host(
        &self,
        request: Request<v1::GetHostRequest>,
    ) -> Result<Response<v1::GetHostResponse>, Status> {
        let view = self
            .fleet
            .host(&request.get_ref().host_id)
            .await
            .map_err(status)?;
        let detail = view.detail;
        let inventory = detail.inventory.map(|i| v1::HostInventory {
            family: i.os.family,
            os_id: i.os.id,
            version_id: i.os.version_id,
            pretty_name: i.os.pretty_name,
            kernel: i.os.kernel,
            arch: i.os.arch,
            boot_time: i.os.boot_time.unwrap_or(0),
            last_package_change: i.os.last_package_change.unwrap_or(0),
            product_name: i.os.product_name,
            edition: i.os.edition,
            display_version: i.os.display_version,
            build: i.os.build,
            installation_type: i.os.installation_type,
            collected_ms: i.collected_ms,
            received_ms: i.received_ms,
            partial: i
                .gaps
                .into_iter()
                .map(|g| format!("{}: {}", g.source, g.reason))
                .collect(),
        });
        let last = detail.host.cleanup.last_complete.clone();
        let sets = last.as_ref().map(|l| l.sets.clone()).unwrap_or_default();
        let count = |n: Option<u64>| n.map_or(-1, |n| n as i64);
        Ok(Response::new(v1::GetHostResponse {
            vuln: view.vuln.map(vuln_host_row),
            status_reason: view.status_reason,
            last_sweep_id: last
                .as_ref()
                .map(|l| l.sweep_id.clone())
                .unwrap_or_default(),
            last_sweep_started_ms: last.as_ref().map_or(0, |l| l.started_ms),
            rules_version: sets.rules_version,
            iocs_version: sets.iocs_version,
            rule_count: count(sets.rule_count),
            ioc_count: count(sets.ioc_count),
            host: Some(host_entry(detail.host, view.status)),
            inventory,
            package_count: detail.package_count,
            hotfix_count: detail.hotfix_count,
            program_count: detail.program_count,
            last_change_seen_ms: detail.last_change_seen_ms.unwrap_or(0),
            connection_count: detail.connection_count,
            connections_collected_ms: detail.connections_collected_ms.unwrap_or(0),
            connections_partial: detail.connections_partial.unwrap_or_default(),
            spool_dropped_progress: detail.spool_dropped.progress,
            spool_dropped_connections: detail.spool_dropped.connections,
            spool_dropped_inventories: detail.spool_dropped.inventories,
            spool_dropped_ms: detail.spool_dropped.last_dropped_ms.unwrap_or(0),
        }))
    }

    async fn list_connections(
        &self,
        request: Request<v1::ListConnectionsRequest>,
    ) -> Result<Response<v1::ListConnectionsResponse>, Status> {
        let r = request.get_ref();
        let remote = match r.remote.trim() {
            "" => None,
            text => Some(parse_network(text).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "{text:?} is neither an IP address nor a CIDR network (10.0.0.0/8)"
                ))
            })?),
        };
        let filter = ConnectionFilter {
            host_id: (!r.host_id.is_empty()).then(|| r.host_id.clone()),
            remote,
        };
        let connections = self
            .store
            .list_connections(&filter)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|c| v1::ConnectionEntry {
                host_id: c.host_id,
                proto: c.connection.proto,
                local_addr: c.connection.local_addr,
                local_port: c.connection.local_port.into(),
                remote_addr: c.connection.remote_addr,
                remote_port: c.connection.remote_port.into(),
                state: c.connection.state,
                pid: c.connection.pid.unwrap_or(0),
                process: c.connection.process.unwrap_or_default(),
                collected_ms: c.collected_ms,
            })
            .collect();
        Ok(Response::new(v1::ListConnectionsResponse { connections }))
    }

    async fn list_findings(
        &self,
        request: Request<v1::ListFindingsRequest>,
    ) -> Result<Response<v1::ListFindingsResponse>, Status> {
        let r = request.get_ref();
        let given = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        let filter = FindingFilter {
            host_id: given(&r.host_id),
            state: given(&r.state)
                .map(|s| parse_state(&s))
                .transpose()
                .map_err(status)?,
            rule: given(&r.rule),
            sha256: given(&r.sha256),
            kind: given(&r.kind)
                .map(|k| parse_kind(&k))
                .transpose()
                .map_err(status)?,
        };
        let findings = self.cleanup.findings(&filter).await.map_err(status)?;
        let findings = findings.into_iter().map(finding_entry).collect();
        Ok(Response::new(v1::ListFindingsResponse { findings }))
    }

    async fn change_finding(
        &self,
        request: Request<v1::ChangeFindingRequest>,
    ) -> Result<Response<v1::FindingEntry>, Status> {
        let admin = identity::admin_of(&request)?;
        let r = request.into_inner();
        let change = parse_change(&r.action, &r.state).map_err(status)?;
        let finding = self
            .cleanup
            .change_finding(&admin.name, r.id, &change, &r.note)
            .await
            .map_err(status)?;
        Ok(Response::new(finding_entry(finding)))
    }

    async fn finding_history(
        &self,
        request: Request<v1::FindingHistoryRequest>,
    ) -> Result<Response<v1::FindingHistoryResponse>, Status> {
        let (finding, changes) = self
            .cleanup
            .history(request.get_ref().id)
            .await
            .map_err(status)?;
        Ok(Response::new(v1::FindingHistoryResponse {
            finding: Some(finding_entry(finding)),
            changes: changes
                .into_iter()
                .map(|c| v1::FindingChange {
                    at_ms: c.at_ms,
                    actor: c.actor,
                    from_state: c.from_state.map_or("", FindingState::as_str).to_owned(),
                    to_state: c.to_state.as_str().to_owned(),
                    note: c.note,
                })
                .collect(),
        }))
    }

    async fn progress(
        &self,
        request: Request<v1::ProgressRequest>,
    ) -> Result<Response<v1::ProgressResponse>, Status> {
        let since = match request.get_ref().since_ms {
            0 => None,
            ms => Some(ms),
        };
        let progress = self.cleanup.progress(since).await.map_err(status)?;
        let counts = |counts: Vec<(String, u32)>| {
            counts
                .into_iter()
                .map(|(status, hosts)| v1::StatusCount { status, hosts })
                .collect()
        };
        Ok(Response::new(v1::ProgressResponse {
            by_status: counts(
                progress
                    .by_status
                    .into_iter()
                    .map(|(s, n)| (s.as_str().to_owned(), n))
                    .collect(),
            ),
            hosts: progress.hosts,
            verified_clean_share: progress.verified_clean_share,
            timeline: progress
                .timeline
                .into_iter()
                .map(|(day, by_status)| v1::ProgressDay {
                    day,
                    by_status: counts(by_status),
                })
                .collect(),
        }))
    }

    async fn start_sweep(
        &self,
        request: Request<v1::StartSweepRequest>,
    ) -> Result<Response<v1::StartSweepResponse>, Status> {
        let admin = identity::admin_of(&request)?;
        let r = request.into_inner();
        let started = self
            .sweeps
            .start(
                &admin.name,
                SweepRequest {
                    all: r.all,
                    hosts: r.host_ids,
                    full: r.full,
                    splay_seconds: r.splay_seconds,
                    deadline_seconds: r.deadline_seconds,
                },
            )
            .await
            .map_err(status)?;
        Ok(Response::new(v1::StartSweepResponse {
            id: started.id,
            hosts: started.hosts as u32,
            delivered: started.delivered as u32,
        }))
    }

    async fn get_sweep(
        &self,
        request: Request<v1::GetSweepRequest>,
    ) -> Result<Response<v1::SweepStatus>, Status> {
        let view = self
            .sweeps
            .get(&request.get_ref().id)
            .await
            .map_err(status)?;
        Ok(Response::new(sweep_status(view, true)))
    }

    async fn list_sweeps(
        &self,
        _request: Request<v1::ListSweepsRequest>,
    ) -> Result<Response<v1::ListSweepsResponse>, Status> {
        let sweeps = self.sweeps.list().await.map_err(status)?;
        let sweeps = sweeps
            .into_iter()
            .map(|view| sweep_status(view, false))
            .collect();
        Ok(Response::new(v1::ListSweepsResponse { sweeps }))
    }

    async fn cancel_sweep(
        &self,
        request: Request<v1::CancelSweepRequest>,
    ) -> Result<Response<v1::CancelSweepResponse>, Status> {
        let admin = identity::admin_of(&request)?;
        let id = request.into_inner().id;
        let open = self.sweeps.cancel(&admin.name, &id).await.map_err(status)?;
        Ok(Response::new(v1::CancelSweepResponse {
            hosts: open.len() as u32,
        }))
    }

    async fn list_audit(
        &self,
        _request: Request<v1::ListAuditRequest>,
    ) -> Result<Response<v1::ListAuditResponse>, Status> {
        let entries = self
            .store
            .list_audit()
            .await
            .map_err(internal)?
            .into_iter()
            .map(|e| v1::AuditEntry {
                id: e.id,
                at_ms: e.at_ms,
                actor: e.actor,
                action: e.action,
                target: e.target,
                detail: e.detail,
            })
            .collect();
        Ok(Response::new(v1::ListAuditResponse { entries }))
    }

    async fn list_packages(
        &self,
        request: Request<v1::ListPackagesRequest>,
    ) -> Result<Response<v1::ListPackagesResponse>, Status> {
        let host_id = &request.get_ref().host_id;
        if host_id.is_empty() {
            return Err(Status::invalid_argument("a host id is required"));
        }
        let packages = self.store.list_packages(host_id).await.map_err(internal)?;
        let packages = packages
            .into_iter()
            .map(|p| v1::PackageEntry {
                host_id: p.host_id,
                name: p.package.name,
                version: p.package.version,
                arch: p.package.arch,
                source: p.package.source.unwrap_or_default(),
                installed_ms: p.installed_ms,
                manager: p
                    .package
                    .manager
                    .map_or("", crate::version::Scheme::as_str)
                    .to_owned(),
            })
            .collect();
        Ok(Response::new(v1::ListPackagesResponse { packages }))
    }

    async fn list_updates(
        &self,
        request: Request<v1::ListPackagesRequest>,
    ) -> Result<Response<v1::ListUpdatesResponse>, Status> {
        let host_id = self
            .fleet
            .known_host(&request.get_ref().host_id)
            .await
            .map_err(status)?;
        let updates = self
            .store
            .list_hotfixes(&host_id)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|h| v1::UpdateEntry {
                kb: h.kb,
                title: h.title,
                installed_on: h.installed_on.unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(v1::ListUpdatesResponse { updates }))
    }

    async fn list_programs(
        &self,
        request: Request<v1::ListPackagesRequest>,
    ) -> Result<Response<v1::ListProgramsResponse>, Status> {
        let host_id = self
            .fleet
            .known_host(&request.get_ref().host_id)
            .await
            .map_err(status)?;
        let programs = self
            .store
            .list_programs(&host_id)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|p| v1::ProgramEntry {
                name: p.name,
                version: p.version,
                publisher: p.publisher,
            })
            .collect();
        Ok(Response::new(v1::ListProgramsResponse { programs }))
    }

    async fn import_ip_list(
        &self,
        request: Request<v1::ImportIpListRequest>,
    ) -> Result<Response<v1::ImportIpListResponse>, Status> {
        let admin = identity::admin_of(&request)?;
        let mut r = request.into_inner();
        // A list can be 50 MB: it is let go once read, before the store and the matcher
        // take their share.
        let content = std::mem::take(&mut r.content);
        let source = r.source.trim();
        if source.is_empty() {
            return Err(Status::invalid_argument(
                "a list needs its source (--source NAME: who sent it)",
            ));
        }
        let format = ListFormat::parse(r.format.trim()).ok_or_else(|| {
            Status::invalid_argument(format!(
                "{:?} is not a list format (auto, plain, csv)",
                r.format
            ))
        })?;
        let (parsed, format) = iplist::parse(&r.file_name, &content, format)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let sha256 = crate::intel::sha256_hex(&content);
        drop(content);
        let screen = iplist::Screen {
            allow_broad: r.allow_broad,
            allow_reserved: r.allow_reserved,
        };
        let parsed = iplist::screen(&r.file_name, parsed, screen)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        // A list that holds nothing but comments is the publisher's word that the source has
        // no entries now (Spamhaus EDROP since its merge into DROP); a list whose every line
        // was skipped is more likely the wrong file.
        let skipped = parsed.bad_lines.len() + parsed.reserved.len() + parsed.domains as usize;
        if parsed.entries.is_empty() && skipped > 0 {
            return Err(Status::invalid_argument(format!(
                "{}: no IP address or range in it ({} bad lines, {} special-purpose ranges skipped, {} domains); nothing imported",
                r.file_name,
                parsed.bad_lines.len(),
                parsed.reserved.len(),
                parsed.domains
            )));
        }
        let list = NewIpList {
            source: source.to_owned(),
            file_name: r.file_name.clone(),
            format: format.as_str().to_owned(),
            sha256,
            bad_lines: parsed.bad_lines.len() as u64,
            domains: parsed.domains,
            replace: r.replace,
            actor: admin.name,
        };
        let stored = self
            .store
            .import_ip_list(&list, &parsed, now_ms())
            .await
            .map_err(internal)?;
        tracing::info!(list = stored.id, source = %stored.source, version = stored.version, entries = stored.entries, "botnet list imported");
        let mut parsed = parsed;
        parsed.entries = Vec::new();
        let recheck = self.intel.reload_and_recheck().await.map_err(internal)?;
        self.site.publish(SiteEvent::IntelChanged).await;
        let bad_line = |b: iplist::BadLine| v1::BadLine {
            line: b.line,
            text: b.text,
            reason: b.reason,
        };
        Ok(Response::new(v1::ImportIpListResponse {
            stated_entries: parsed.stated,
            domain_examples: parsed.domain_examples.clone(),
            reserved: parsed.reserved.into_iter().map(bad_line).collect(),
            list: Some(ip_list_entry(stored)),
            bad_lines: parsed.bad_lines.into_iter().map(bad_line).collect(),
            recheck: Some(recheck_entry(recheck)),
        }))
    }

    async fn list_ip_lists(
        &self,
        _request: Request<v1::ListIpListsRequest>,
    ) -> Result<Response<v1::ListIpListsResponse>, Status> {
        let lists = self.store.ip_lists().await.map_err(internal)?;
        Ok(Response::new(v1::ListIpListsResponse {
            lists: lists.into_iter().map(ip_list_entry).collect(),
        }))
    }

    async fn remove_ip_list(
        &self,
        request: Request<v1::RemoveIpListRequest>,
    ) -> Result<Response<v1::RemoveIpListResponse>, Status> {
        let admin = identity::admin_of(&request)?;
        let id = request.get_ref().id;
        let list = match self.store.retire_ip_list(id, &admin.name, now_ms()).await {
            Ok(list) => list,
            Err(StoreError::Refused(why)) => return Err(Status::failed_precondition(why)),
            Err(err) => return Err(internal(err)),
        };
        let recheck = self.intel.reload_and_recheck().await.map_err(internal)?;
        self.site.publish(SiteEvent::IntelChanged).await;
        Ok(Response::new(v1::RemoveIpListResponse {
            list: Some(ip_list_entry(list)),
            recheck: Some(recheck_entry(recheck)),
        }))
    }

    async fn add_allow(
        &self,
        request: Request<v1::AddAllowRequest>,
    ) -> Result<Response<v1::AddAllowResponse>, Status> {
        let admin = identity::admin_of(&request)?;
        let r = request.into_inner();
        let matcher = AllowMatch::parse(&r.kind, &r.value).map_err(Status::invalid_argument)?;
        if r.note.trim().is_empty() {
            return Err(Status::invalid_argument(
                "an allowlist entry needs a note saying why (--note)",
            ));
        }
        let now = now_ms();
        let expires_ms = match r.expires_seconds {
            0 => None,
            seconds => Some(
                i64::try_from(seconds)
                    .ok()
                    .and_then(|s| s.checked_mul(1000))
                    .and_then(|ms| ms.checked_add(now))
                    .ok_or_else(|| Status::invalid_argument("the expiry is too far away"))?,
            ),
        };
        let entry = AllowEntry {
            id: 0,
            matcher,
            host_id: Some(r.host_id.trim().to_owned()).filter(|h| !h.is_empty()),
            note: r.note.trim().to_owned(),
            created_ms: now,
            created_by: admin.name,
            expires_ms,
            removed: None,
        };
        let (entry, findings) =
            self.store
                .add_allow(&entry, now)
                .await
                .map_err(|err| match err {
                    StoreError::UnknownHosts(_) => Status::not_found(err.to_string()),
                    err => internal(err),
                })?;
        tracing::info!(entry = entry.id, matcher = %entry.matcher, findings = findings.len(), "allowlist entry added");
        Ok(Response::new(v1::AddAllowResponse {
            entry: Some(allow_entry(&entry, now)),
            findings,
        }))
    }

    async fn list_allow(
        &self,
        _request: Request<v1::ListAllowRequest>,
    ) -> Result<Response<v1::ListAllowResponse>, Status> {
        let now = now_ms();
        let entries = self.store.allow_entries().await.map_err(internal)?;
        Ok(Response::new(v1::ListAllowResponse {
            entries: entries.iter().map(|e| allow_entry(e, now)).collect(),
        }))
    }

    async fn remove_allow(
        &self,
        request: Request<v1::RemoveAllowRequest>,
    ) -> Result<Response<v1::RemoveAllowResponse>, Status> {
        let admin = identity::admin_of(&request)?;
        let id = request.get_ref().id;
        if !self
            .store
            .remove_allow(id, &admin.name, now_ms())
            .await
            .map_err(internal)?
        {
            return Err(Status::not_found(format!(
                "no allowlist entry {id} in force"
            )));
        }
        Ok(Response::new(v1::RemoveAllowResponse {}))
    }

    async fn create_enroll_token(
        &self,
        request: Request<v1::CreateEnrollTokenRequest>,
    ) -> Result<Response<v1::CreateEnrollTokenResponse>, Status> {
        let admin = identity::admin_of(&request)?;
        let r = request.into_inner();
        let label = r.label.trim();
        if label.is_empty() {
            return Err(Status::invalid_argument(
                "a token needs a label saying whose hosts it is for (--label)",
            ));
        }
        if r.uses == Some(0) {
            return Err(Status::invalid_argument("--uses must be at least 1"));
        }
        let now = now_ms();
        let expires_ms = r
            .expires_seconds
            .map(|s| now.saturating_add(i64::try_from(s).unwrap_or(i64::MAX).saturating_mul(1000)));
        let group = Some(r.group.trim().to_owned()).filter(|g| !g.is_empty());
        let token = crate::enroll::new_token();
        let record = crate::enroll::EnrollToken {
            id: 0,
            label: label.to_owned(),
            uses_allowed: r.uses,
            uses: 0,
            expires_ms,
            group: group.clone(),
            created_ms: now,
            created_by: admin.name.clone(),
            revoked: None,
        };
        let audit = NewAuditEntry {
            at_ms: now,
            actor: admin.name,
            action: "enroll.create".into(),
            target: String::new(),
            detail: format!(
                "{label}; uses {}; expires {}; group {}",
                r.uses.map_or("any".into(), |n| n.to_string()),
                expires_ms.map_or("never".into(), hygiene_proto::format_ms),
                group.as_deref().unwrap_or("none")
            ),
        };
        let id = self
            .store
            .create_enroll_token(&record, &crate::enroll::token_hash(&token), &audit)
            .await
            .map_err(internal)?;
        Ok(Response::new(v1::CreateEnrollTokenResponse {
            id,
            token,
            ca_fingerprint: self.ca_fingerprint.clone(),
        }))
    }

    async fn list_enroll_tokens(
        &self,
        _request: Request<v1::ListEnrollTokensRequest>,
    ) -> Result<Response<v1::ListEnrollTokensResponse>, Status> {
        let now = now_ms();
        let tokens = self
            .store
            .list_enroll_tokens()
            .await
            .map_err(internal)?
            .into_iter()
            .map(|t| {
                let (revoked_ms, revoked_by) = t.revoked.clone().unzip();
                v1::EnrollTokenEntry {
                    id: t.id,
                    state: t.state(now).as_str().into(),
                    label: t.label,
                    uses: t.uses,
                    uses_allowed: t.uses_allowed,
                    expires_ms: t.expires_ms,
                    group: t.group.unwrap_or_default(),
                    created_ms: t.created_ms,
                    created_by: t.created_by,
                    revoked_ms,
                    revoked_by: revoked_by.unwrap_or_default(),
                }
            })
            .collect();
        Ok(Response::new(v1::ListEnrollTokensResponse { tokens }))
    }

    async fn revoke_enroll_token(
        &self,
        request: Request<v1::RevokeEnrollTokenRequest>,
    ) -> Result<Response<v1::RevokeEnrollTokenResponse>, Status> {
        let admin = identity::admin_of(&request)?;
        let id = request.get_ref().id;
        let audit = NewAuditEntry {
            at_ms: now_ms(),
            actor: admin.name,
            action: "enroll.revoke".into(),
            target: format!("token {id}"),
            detail: String::new(),
        };
        if !self
            .store
            .revoke_enroll_token(id, &audit)
            .await
            .map_err(internal)?
        {
            return Err(Status::not_found(format!(
                "no enrollment token {id} in force"
            )));
        }
        Ok(Response::new(v1::RevokeEnrollTokenResponse {}))
    }

    async fn revoke_host(
        &self,
        request: Request<v1::RevokeHostRequest>,
    ) -> Result<Response<v1::RevokeHostResponse>, Status> {
        let admin = identity::admin_of(&request)?;
        let r = request.into_inner();
        let cut = self
            .fleet
            .revoke(&admin.name, &r.host_id, &r.note)
            .await
            .map_err(status)?;
        Ok(Response::new(cut_off_entry(cut)))
    }

    async fn remove_host(
        &self,
        request: Request<v1::RevokeHostRequest>,
    ) -> Result<Response<v1::RevokeHostResponse>, Status> {
        let admin = identity::admin_of(&request)?;
        let r = request.into_inner();
        let cut = self
            .fleet
            .remove(&admin.name, &r.host_id, &r.note)
            .await
            .map_err(status)?;
        Ok(Response::new(cut_off_entry(cut)))
    }

    async fn list_replicas(
        &self,
        _request: Request<v1::ListReplicasRequest>,
    ) -> Result<Response<v1::ListReplicasResponse>, Status> {
        let now = now_ms();
        let replicas = self.fleet.replicas().await.map_err(status)?;
        let replicas = replicas
            .into_iter()
            .map(|r| v1::Replica {
                alive: r.alive(now),
                id: r.id,
                listen: r.listen,
                started_ms: r.started_ms,
                seen_ms: r.seen_ms,
                connected_hosts: u32::try_from(r.connected_hosts).unwrap_or(u32::MAX),
            })
            .collect();
        Ok(Response::new(v1::ListReplicasResponse { replicas }))
    }

    async fn list_refusals(
        &self,
        _request: Request<v1::ListRefusalsRequest>,
    ) -> Result<Response<v1::ListRefusalsResponse>, Status> {
        let report = crate::refusals::refusals().report();
        Ok(Response::new(v1::ListRefusalsResponse {
            since_ms: report.since_ms,
            totals: report
                .totals
                .into_iter()
                .map(|(kind, count)| v1::RefusalTotal {
                    kind: kind.as_str().into(),
                    count,
                })
                .collect(),
            groups: report
                .groups
                .into_iter()
                .map(|g| {
                    let presented = g.presented.unwrap_or_default();
                    v1::RefusalGroup {
                        kind: g.kind.as_str().into(),
                        peer: g.peer.map(|ip| ip.to_string()).unwrap_or_default(),
                        subject: presented.subject,
                        serial: presented.serial,
                        reason: g.reason,
                        count: g.count,
                        first_ms: g.first_ms,
                        last_ms: g.last_ms,
                    }
                })
                .collect(),
        }))
    }

    async fn publish_rules(
        &self,
        request: Request<v1::PublishRulesRequest>,
    ) -> Result<Response<v1::PublishResponse>, Status> {
        let admin = identity::admin_of(&request)?;
        let r = request.into_inner();
        let published = self
            .rules
            .publish_rules(
                &admin.name,
                &r.name,
                source_files(r.files),
                r.skip_broken,
                r.allow_slow,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(published_entry(published)))
    }

    async fn import_hashes(
        &self,
        request: Request<v1::ImportHashesRequest>,
    ) -> Result<Response<v1::PublishResponse>, Status> {
        let admin = identity::admin_of(&request)?;
        let r = request.into_inner();
        let published = self
            .rules
            .publish_hashes(&admin.name, &r.name, source_files(r.files))
            .await
            .map_err(status)?;
        Ok(Response::new(published_entry(published)))
    }

    async fn rules_status(
        &self,
        _request: Request<v1::RulesStatusRequest>,
    ) -> Result<Response<v1::RulesStatusResponse>, Status> {
        let rules = self
            .store
            .current_bundle(bundle::RULES)
            .await
            .map_err(internal)?;
        let iocs = self
            .store
            .current_bundle(bundle::IOCS)
            .await
            .map_err(internal)?;
        let current = |b: &Option<BundleRecord>, running: &Option<(String, i64)>| match b {
            Some(b) => running.as_ref().is_some_and(|(v, _)| *v == b.version),
            None => true,
        };
        let hosts = self
            .store
            .host_bundles()
            .await
            .map_err(internal)?
            .into_iter()
            .map(|h| {
                let state = |bundle: &Option<BundleRecord>,
                             running: &Option<(String, i64)>,
                             refused: &str,
                             offered: &str| {
                    rollout_state(
                        bundle.as_ref().map(|b| b.version.as_str()),
                        &HostKindState {
                            running: running.as_ref().map_or("", |r| r.0.as_str()),
                            refused,
                            reason: &h.error,
                            offered,
                        },
                    )
                };
                let rules_state = state(&rules, &h.rules, &h.refused_rules, &h.offered_rules);
                let iocs_state = state(&iocs, &h.iocs, &h.refused_iocs, &h.offered_iocs);
                let reason = |s: &RolloutState| match s {
                    RolloutState::Refused(reason) => reason.clone(),
                    _ => String::new(),
                };
                v1::HostBundles {
                    rules_refused: reason(&rules_state),
                    iocs_refused: reason(&iocs_state),
                    rules_state: rules_state.as_str().to_owned(),
                    iocs_state: iocs_state.as_str().to_owned(),
                    rules_current: current(&rules, &h.rules),
                    iocs_current: current(&iocs, &h.iocs),
                    host_id: h.host_id,
                    online: h.online,
                    rules_version: h.rules.as_ref().map(|r| r.0.clone()).unwrap_or_default(),
                    rules_since_ms: h.rules.as_ref().map_or(0, |r| r.1),
                    iocs_version: h.iocs.as_ref().map(|r| r.0.clone()).unwrap_or_default(),
                    iocs_since_ms: h.iocs.as_ref().map_or(0, |r| r.1),
                    error: h.error,
                }
            })
            .collect();
        Ok(Response::new(v1::RulesStatusResponse {
            rules: rules.as_ref().map(bundle_entry),
            iocs: iocs.as_ref().map(bundle_entry),
            hosts,
        }))
    }

    async fn priority_hosts(
        &self,
        _request: Request<v1::PriorityHostsRequest>,
    ) -> Result<Response<v1::PriorityHostsResponse>, Status> {
        let now = now_ms();
        let current = self.store.current_bundles().await.map_err(internal)?;
        let hosts = self
            .store
            .list_hosts(&HostFilter::default())
            .await
            .map_err(internal)?
            .into_iter()
            .map(|h| {
                let status = h.cleanup.status(now, self.stale_after_ms, &current);
                (h, status)
            })
            .collect();
        let botnet = self
            .store
            .list_findings(&FindingFilter {
                kind: Some(FindingKind::BotnetIp),
                ..FindingFilter::default()
            })
            .await
            .map_err(internal)?;
        let critical: std::collections::HashMap<String, u64> = self
            .vulns
            .assess_all()
            .await
            .map_err(internal)?
            .iter()
            .map(|a| (a.host_id.clone(), a.counts(&VulnFilter::default()).critical))
            .collect();
        let hosts = crate::priority::rank(hosts, &botnet, &critical)
            .into_iter()
            .map(|r| v1::PriorityHost {
                rank: r.rank,
                host_id: r.host_id,
                hostname: r.hostname,
                status: r.status.as_str().to_owned(),
                score: r.score,
                botnet_matches: r.botnet_matches,
                open_findings: r.open_findings,
                missing_critical: r.missing_critical,
                reason: r.reason,
                online: r.online,
                last_seen_ms: r.last_seen_ms,
            })
            .collect();
        Ok(Response::new(v1::PriorityHostsResponse { hosts }))
    }

    async fn import_advisories(
        &self,
        request: Request<v1::ImportAdvisoriesRequest>,
    ) -> Result<Response<v1::ImportAdvisoriesResponse>, Status> {
        let admin = identity::admin_of(&request)?;
        let files = request.into_inner().files;
        if files.is_empty() {
            return Err(Status::invalid_argument("no document to import"));
        }
        let mut results = Vec::new();
        for file in files {
            let mut result = v1::AdvisoryImport {
                file: file.path.clone(),
                ..v1::AdvisoryImport::default()
            };
            match self
                .vulns
                .import(&file.path, &file.content, &admin.name, now_ms())
                .await
            {
                Ok((held, outcome)) => {
                    result.outcome = outcome.as_str().to_owned();
                    if let ImportOutcome::Replaced { revision }
                    | ImportOutcome::Older { revision } = outcome
                    {
                        result.other_revision = revision;
                    }
                    result.id = held.id;
                    result.title = held.title;
                    result.revision = held.revision;
                    result.current_release = held.current_release;
                    result.cves = held.cves;
                    result.products = held.products;
                    result.fixes = held.fixes;
                }
                Err(VulnError::Document { file, source }) => {
                    result.outcome = "refused".to_owned();
                    result.error = format!("{file}: {source}");
                }
                Err(VulnError::Store(e)) => return Err(internal(e)),
            }
            results.push(result);
        }
        self.site.publish(SiteEvent::VulnsChanged).await;
        Ok(Response::new(v1::ImportAdvisoriesResponse {
            files: results,
            advisories: self.advisory_names(),
        }))
    }

    async fn vuln_hosts(
        &self,
        request: Request<v1::VulnHostsRequest>,
    ) -> Result<Response<v1::VulnHostsResponse>, Status> {
        let r = request.into_inner();
        let filter = vuln_filter(&r.min_severity, r.min_cvss)?;
        let catalogue = self.vulns.catalogue();
        let assessments = self.vulns.assess_all().await.map_err(internal)?;
        let mut rows: Vec<HostVulnRow> = assessments
            .iter()
            .map(|a| host_row(&catalogue, a, &filter))
            .filter(|row| {
                r.all
                    || matches!(
                        row.state,
                        crate::vuln::VulnState::Missing | crate::vuln::VulnState::NotAssessed
                    )
            })
            .collect();
        // Most critical CVEs first, then important, then the highest score.
        rows.sort_by(|a, b| {
            (b.counts.critical, b.counts.important, b.counts.cves)
                .cmp(&(a.counts.critical, a.counts.important, a.counts.cves))
                .then(a.state.cmp(&b.state))
                .then_with(|| a.host_id.cmp(&b.host_id))
        });
        Ok(Response::new(v1::VulnHostsResponse {
            hosts: rows.into_iter().map(vuln_host_row).collect(),
            advisories: self.advisory_names(),
        }))
    }

    async fn vuln_host(
        &self,
        request: Request<v1::VulnHostRequest>,
    ) -> Result<Response<v1::VulnHostResponse>, Status> {
        let host_id = request.into_inner().host_id;
        let assessment = self
            .vulns
            .assess_host(&host_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| Status::not_found(format!("no host {host_id:?}")))?;
        let catalogue = self.vulns.catalogue();
        let filter = VulnFilter::default();
        let install: std::collections::HashMap<usize, std::sync::Arc<str>> =
            crate::vuln::assess::updates_to_install(&catalogue, &assessment, &filter)
                .into_iter()
                .collect();
        let missing = assessment
            .missing
            .iter()
            .enumerate()
            .map(|(i, m)| v1::MissingFix {
                cve: m.cve.to_string(),
                title: m.title.to_string(),
                severity: m.severity.map_or("", Severity::as_str).to_owned(),
                cvss: m.cvss.unwrap_or(-1.0),
                exploited: m.exploited,
                product: m.product.to_string(),
                kb: m.kb().to_owned(),
                fixed_build: m.fixed_build().to_owned(),
                installed: m.installed.to_string(),
                basis: m.basis.as_str().to_owned(),
                advisory: m.advisory.to_string(),
                install: install.get(&i).map(|kb| kb.to_string()).unwrap_or_default(),
            })
            .collect();
        let not_assessed = assessment
            .not_assessed
            .iter()
            .map(|n| v1::NotAssessedProduct {
                product: n.product.clone(),
                version: n.version.clone(),
                reason: n.reason.clone(),
            })
            .collect();
        Ok(Response::new(v1::VulnHostResponse {
            host: Some(vuln_host_row(host_row(&catalogue, &assessment, &filter))),
            missing,
            not_assessed,
            advisories: self.advisory_names(),
        }))
    }

    async fn vuln_summary(
        &self,
        request: Request<v1::VulnSummaryRequest>,
    ) -> Result<Response<v1::VulnSummaryResponse>, Status> {
        let r = request.into_inner();
        let filter = vuln_filter(&r.min_severity, r.min_cvss)?;
        let catalogue = self.vulns.catalogue();
        let assessments = self.vulns.assess_all().await.map_err(internal)?;
        let mut response = v1::VulnSummaryResponse {
            advisories: self.advisory_names(),
            ..v1::VulnSummaryResponse::default()
        };
        for a in &assessments {
            match host_row(&catalogue, a, &filter).state {
                crate::vuln::VulnState::Missing => response.hosts_missing += 1,
                crate::vuln::VulnState::UpToDate => response.hosts_up_to_date += 1,
                crate::vuln::VulnState::NotAssessed => response.hosts_not_assessed += 1,
                crate::vuln::VulnState::NotApplicable => {}
            }
        }
        response.kbs = patch_order(&catalogue, &assessments, &filter)
            .into_iter()
            .map(|n| v1::KbNeed {
                kb: n.kb,
                products: n.products.into_iter().collect(),
                hosts: n.hosts,
                cves: n.cves,
                critical: n.critical,
                important: n.important,
                exploited: n.exploited,
                max_cvss: n.max_cvss.unwrap_or(-1.0),
            })
            .collect();
        Ok(Response::new(response))
    }
}

impl AdminEndpoint {
    /// The months held, oldest first: `2024-Jan r5`.
    fn advisory_names(&self) -> Vec<String> {
        self.vulns
            .catalogue()
            .advisories()
            .iter()
            .map(|a| format!("{} r{}", a.id, a.revision))
            .collect()
    }
}

fn vuln_filter(min_severity: &str, min_cvss: f32) -> Result<VulnFilter, Status> {
    let min_severity = match min_severity.trim() {
        "" => None,
        text => Some(Severity::parse(text).ok_or_else(|| {
            Status::invalid_argument(format!(
                "{text:?} is not a severity (critical, important, moderate, low)"
            ))
        })?),
    };
    if !(0.0..=10.0).contains(&min_cvss) {
        return Err(Status::invalid_argument(format!(
            "{min_cvss} is not a CVSS score (0 to 10)"
        )));
    }
    Ok(VulnFilter {
        min_severity,
        min_cvss: (min_cvss > 0.0).then_some(min_cvss),
    })
}

fn vuln_host_row(row: HostVulnRow) -> v1::VulnHostRow {
    v1::VulnHostRow {
        host_id: row.host_id,
        hostname: row.hostname,
        os_product: row.os_product,
        build: row.build,
        state: row.state.as_str().to_owned(),
        cves: row.counts.cves,
        critical: row.counts.critical,
        important: row.counts.important,
        moderate: row.counts.moderate,
        low: row.counts.low,
        exploited: row.counts.exploited,
        max_cvss: row.counts.max_cvss.unwrap_or(-1.0),
        kbs: row.kbs,
        not_assessed: row.not_assessed,
        reason: row.reason,
    }
}

fn finding_entry(f: Finding) -> v1::FindingEntry {
    v1::FindingEntry {
        id: f.id,
        host_id: f.host_id,
        path: f.path,
        sha256: f.sha256,
        size: f.size,
        kind: f.kind.as_str().to_owned(),
        rule: f.rule,
        namespace: f.namespace,
        ioc_comment: f.ioc_comment,
        state: f.state.as_str().to_owned(),
        first_seen_ms: f.first_seen_ms,
        last_seen_ms: f.last_seen_ms,
        state_changed_ms: f.state_changed_ms,
        quarantine_id: f.quarantine_id.unwrap_or_default(),
        remediation_error: f.remediation_error.unwrap_or_default(),
        sweep_id: f.sweep_id,
        list_id: f.list_id.unwrap_or(0),
        evidence: f.evidence,
    }
}

fn host_entry(h: Host, status: HostStatus) -> v1::HostEntry {
    v1::HostEntry {
        host_id: h.host_id,
        hostname: h.hostname,
        os_name: h.os_name,
        os_version: h.os_version,
        kernel_version: h.kernel_version,
        arch: h.arch,
        ip_addresses: h.ip_addresses,
        agent_version: h.agent_version,
        peer_address: h.peer_address.unwrap_or_default(),
        first_seen_ms: h.first_seen_ms,
        last_seen_ms: h.last_seen_ms,
        online: h.online,
        open_findings: h.open_findings,
        status: status.as_str().to_owned(),
        botnet_matches: h.botnet_matches,
        package_versions: h.package_versions,
        removed_ms: h.removed_ms,
    }
}

fn ip_list_entry(l: IpList) -> v1::IpList {
    v1::IpList {
        id: l.id,
        source: l.source,
        version: l.version,
        file_name: l.file_name,
        format: l.format,
        sha256: l.sha256,
        imported_ms: l.imported_ms,
        imported_by: l.imported_by,
        entries: l.entries,
        bad_lines: l.bad_lines,
        domains: l.domains,
        retired_ms: l.retired_ms.unwrap_or(0),
        retired_by: l.retired_by.unwrap_or_default(),
    }
}

fn recheck_entry(r: RecheckSummary) -> v1::RecheckSummary {
    v1::RecheckSummary {
        hosts: r.hosts,
        matched_hosts: r.matched_hosts,
        opened: r.opened,
        reopened: r.reopened,
        resolved: r.resolved,
        elapsed_ms: r.elapsed_ms,
    }
}

/// A sweep for the wire; `with_hosts` false leaves the per-host lines out (listings).
fn sweep_status(view: SweepView, with_hosts: bool) -> v1::SweepStatus {
    let t = &view.totals;
    let totals = v1::SweepTotals {
        hosts: t.hosts,
        pending: t.count(HostSweepState::Pending),
        running: t.count(HostSweepState::Running),
        done: t.count(HostSweepState::Done),
        failed: t.count(HostSweepState::Failed),
        expired: t.count(HostSweepState::Expired),
        cancelled: t.count(HostSweepState::Cancelled),
        infected: t.infected,
        files_done: t.files_done,
        bytes_done: t.bytes_done,
        files_estimate: t.files_estimate,
        bytes_estimate: t.bytes_estimate,
        findings: t.findings,
        errors: t.errors,
        estimated_hosts: t.estimated_hosts,
    };
    let (cancelled_ms, cancelled_by) = view.cancelled.clone().unwrap_or_default();
    let hosts = if with_hosts {
        view.hosts
            .into_iter()
            .map(|h| v1::SweepHost {
                host_id: h.host_id,
                state: h.state.as_str().to_owned(),
                files_done: h.files_done,
                bytes_done: h.bytes_done,
                files_estimate: h.files_estimate,
                bytes_estimate: h.bytes_estimate,
                findings: h.findings,
                errors: h.errors,
                error: h.error.unwrap_or_default(),
                delivered_ms: h.delivered_ms.unwrap_or(0),
                started_ms: h.started_ms.unwrap_or(0),
                updated_ms: h.updated_ms.unwrap_or(0),
                finished_ms: h.finished_ms.unwrap_or(0),
                online: h.online,
                eta_ms: h.eta_ms.unwrap_or(0),
            })
            .collect()
    } else {
        Vec::new()
    };
    v1::SweepStatus {
        id: view.id,
        state: view.state.as_str().to_owned(),
        created_ms: view.created_ms,
        created_by: view.created_by,
        full: view.full,
        splay_seconds: view.splay_seconds,
        deadline_ms: view.deadline_ms,
        cancelled_ms,
        cancelled_by,
        hosts,
        eta_ms: view.eta_ms.unwrap_or(0),
        finished_ms: view.finished_ms.unwrap_or(0),
        totals: Some(totals),
    }
}

/// An address (a network of one) or a CIDR network.
pub fn parse_network(text: &str) -> Option<ipnet::IpNet> {
    text.parse::<ipnet::IpNet>().ok().or_else(|| {
        text.parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_and_single_addresses_parse() {
        let net = parse_network("10.1.0.0/16").unwrap();
        assert!(net.contains(&"10.1.200.3".parse::<std::net::IpAddr>().unwrap()));
        assert!(!net.contains(&"10.2.0.1".parse::<std::net::IpAddr>().unwrap()));
        let one = parse_network("2001:db8::1").unwrap();
        assert!(one.contains(&"2001:db8::1".parse::<std::net::IpAddr>().unwrap()));
        assert!(!one.contains(&"2001:db8::2".parse::<std::net::IpAddr>().unwrap()));
        for bad in ["10.0.0.0/33", "example.org", "10.0.0", ""] {
            assert!(parse_network(bad).is_none(), "{bad}");
        }
    }
}
