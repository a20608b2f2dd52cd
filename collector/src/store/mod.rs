//! Persistence. [`Store`] is the one door to the database; it speaks domain types
//! ([`crate::model`]) only.
//!
//! Every write an agent message causes is idempotent (upserts keyed by what the message
//! describes), because agents resend whatever was not acknowledged.
//!
//! SQLite (embedded, WAL) is the default and only backend so far; a PostgreSQL backend slots in
//! behind the same methods.

mod sqlite;
mod sqlite_allow;
mod sqlite_certs;
mod sqlite_enroll;
mod sqlite_intel;
mod sqlite_vuln;

use std::path::PathBuf;

pub use sqlite::SqliteStore;

use crate::findings::{AdminChange, HostStatus};
use crate::intel::iplist::ParsedList;
use crate::intel::{BotnetMatch, HostNetFacts};
use crate::model::{
    AuditEntry, ConnectionFilter, ConnectionReport, Finding, FindingFilter, Host, HostConnection,
    HostDetail, HostFilter, HostHello, Hotfix, InstalledPackage, InventoryReport, NewAuditEntry,
    NewFinding, PackageChange, Program, StoredPackage, SweepProgress, SweepReport,
};
use crate::model::{BotnetChanges, BundleRecord, BundleReport, HostBundleState, IpList, NewIpList};
use crate::model::{FindingChange, RemediationOrders, RemediationReport, SpoolDropped};
use crate::sweep::{NewSweep, SweepOrders, SweepRecord};
use crate::vuln::{Advisory, HostSoftware, StoredAdvisory};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {url}: {source}")]
    Open { url: String, source: sqlx::Error },
    #[error("database {url}: migration failed: {source}")]
    Migrate {
        url: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error("database {url}: PostgreSQL is not supported yet; use an sqlite:// URL or a file path")]
    Unsupported { url: String },
    #[error("{path}: cannot create the database directory: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("database holds a value it cannot read back: {0}")]
    Corrupt(String),
    #[error("no host {}: the collector has never seen it", .0.join(", "))]
    UnknownHosts(Vec<String>),
    #[error("no finding {0}")]
    NoFinding(i64),
    /// A change the findings lifecycle does not allow, and why.
    #[error("{0}")]
    Refused(String),
}

/// The collector's store.
#[derive(Clone)]
pub enum Store {
    Sqlite(SqliteStore),
}

impl Store {
    /// Opens the database at `url` (`sqlite://PATH`, `sqlite:PATH` or a plain file path),
    /// creating it if needed, and brings its schema up to date.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Err(StoreError::Unsupported {
                url: url.to_owned(),
            });
        }
        Ok(Store::Sqlite(SqliteStore::open(url).await?))
    }

    /// Marks every host offline: at start-up no agent is connected yet.
    pub async fn reset_connections(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.reset_connections().await,
        }
    }

    /// Records a Hello: creates or updates the host and marks it connected. Returns the new
    /// connection id, which [`Store::record_disconnect`] needs.
    pub async fn record_hello(&self, hello: &HostHello, now_ms: i64) -> Result<i64, StoreError> {
        match self {
            Store::Sqlite(s) => s.record_hello(hello, now_ms).await,
        }
    }

    /// Marks the host offline, unless it has reconnected since on a newer connection.
    pub async fn record_disconnect(
        &self,
        host_id: &str,
        connection_id: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.record_disconnect(host_id, connection_id, now_ms).await,
        }
    }

    /// Updates the host's last-seen time.
    pub async fn touch(&self, host_id: &str, now_ms: i64) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.touch(host_id, now_ms).await,
        }
    }

    /// Records what the host's agent said its full spool dropped (running totals).
    pub async fn record_spool_dropped(
        &self,
        host_id: &str,
        dropped: &SpoolDropped,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.record_spool_dropped(host_id, dropped).await,
        }
    }

    /// Stores a new enrollment token (see [`crate::enroll`]) with its audit entry; its id.
    pub async fn create_enroll_token(
        &self,
        token: &crate::enroll::EnrollToken,
        token_sha256: &str,
        audit: &NewAuditEntry,
    ) -> Result<i64, StoreError> {
        match self {
            Store::Sqlite(s) => s.create_enroll_token(token, token_sha256, audit).await,
        }
    }

    /// Takes one use of an active token for a host (audited); otherwise the token's state
    /// (`None`: unknown).
    pub async fn consume_enroll_token(
        &self,
        token_sha256: &str,
        host_id: &str,
        now_ms: i64,
    ) -> Result<Result<crate::enroll::EnrollToken, Option<crate::enroll::TokenState>>, StoreError>
    {
        match self {
            Store::Sqlite(s) => s.consume_enroll_token(token_sha256, host_id, now_ms).await,
        }
    }

    pub async fn list_enroll_tokens(&self) -> Result<Vec<crate::enroll::EnrollToken>, StoreError> {
        match self {
            Store::Sqlite(s) => s.list_enroll_tokens().await,
        }
    }

    /// Revokes an enrollment token; `false` if unknown or revoked already.
    pub async fn revoke_enroll_token(
        &self,
        id: i64,
        audit: &NewAuditEntry,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => s.revoke_enroll_token(id, audit).await,
        }
    }

    /// Every certificate a host has presented (see [`crate::certs`]).
    pub async fn host_certs(
        &self,
        host_id: &str,
    ) -> Result<Vec<crate::certs::HostCert>, StoreError> {
        match self {
            Store::Sqlite(s) => s.host_certs(host_id).await,
        }
    }

    /// Notes that a host presented a certificate.
    pub async fn record_host_cert(
        &self,
        host_id: &str,
        cert: &crate::certs::HostCert,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.record_host_cert(host_id, cert, now_ms).await,
        }
    }

    /// Revokes a host's certificates (`serials`, or all when `None`) not revoked already;
    /// the serials revoked now.
    pub async fn revoke_certs(
        &self,
        host_id: &str,
        serials: Option<&[String]>,
        by: &str,
        note: &str,
        now_ms: i64,
        audit: Option<&NewAuditEntry>,
    ) -> Result<Vec<String>, StoreError> {
        match self {
            Store::Sqlite(s) => {
                s.revoke_certs(host_id, serials, by, note, now_ms, audit)
                    .await
            }
        }
    }

    /// Every revoked serial.
    pub async fn revoked_serials(&self) -> Result<Vec<String>, StoreError> {
        match self {
            Store::Sqlite(s) => s.revoked_serials().await,
        }
    }

    /// Before when `hosts revoke` revoked a host's certificates, if it did.
    pub async fn certs_revoked_before(&self, host_id: &str) -> Result<Option<i64>, StoreError> {
        match self {
            Store::Sqlite(s) => s.certs_revoked_before(host_id).await,
        }
    }

    /// Decommissions a host (audited); `false` if it was already.
    pub async fn remove_host(
        &self,
        host_id: &str,
        audit: &NewAuditEntry,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => s.remove_host(host_id, audit).await,
        }
    }

    pub async fn host_exists(&self, host_id: &str) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => s.host_exists(host_id).await,
        }
    }

    /// How many of a host's findings were last seen by a sweep.
    pub async fn count_sweep_findings(
        &self,
        host_id: &str,
        sweep_id: &str,
    ) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(s) => s.count_sweep_findings(host_id, sweep_id).await,
        }
    }

    /// Stores findings in one transaction; a finding already known is updated, not duplicated.
    pub async fn record_findings(
        &self,
        host_id: &str,
        findings: &[NewFinding],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.record_findings(host_id, findings, now_ms).await,
        }
    }

    pub async fn record_sweep_report(
        &self,
        host_id: &str,
        report: &SweepReport,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.record_sweep_report(host_id, report, now_ms).await,
        }
    }

    /// Keeps the latest progress report of a sweep; an older report never replaces a newer one.
    pub async fn record_sweep_progress(
        &self,
        host_id: &str,
        progress: &SweepProgress,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.record_sweep_progress(host_id, progress, now_ms).await,
        }
    }

    /// Replaces a host's package list, recording what appeared, changed or left.
    pub async fn record_packages(
        &self,
        host_id: &str,
        packages: &[InstalledPackage],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.record_packages(host_id, packages, now_ms).await,
        }
    }

    /// Stores an inventory: OS facts, and each list the agent collected whole. `false`: a
    /// delta that does not fit the stored lists was not applied; ask for a complete one.
    pub async fn record_inventory(
        &self,
        host_id: &str,
        report: &InventoryReport,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => s.record_inventory(host_id, report, now_ms).await,
        }
    }

    /// Replaces a host's socket list, unless a newer one is stored.
    pub async fn record_connections(
        &self,
        host_id: &str,
        report: &ConnectionReport,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.record_connections(host_id, report, now_ms).await,
        }
    }

    pub async fn list_connections(
        &self,
        filter: &ConnectionFilter,
    ) -> Result<Vec<HostConnection>, StoreError> {
        match self {
            Store::Sqlite(s) => s.list_connections(filter).await,
        }
    }

    pub async fn list_hotfixes(&self, host_id: &str) -> Result<Vec<Hotfix>, StoreError> {
        match self {
            Store::Sqlite(s) => s.list_hotfixes(host_id).await,
        }
    }

    pub async fn list_programs(&self, host_id: &str) -> Result<Vec<Program>, StoreError> {
        match self {
            Store::Sqlite(s) => s.list_programs(host_id).await,
        }
    }

    /// Everything known about one host; `None` for a host never seen.
    pub async fn host_detail(&self, host_id: &str) -> Result<Option<HostDetail>, StoreError> {
        match self {
            Store::Sqlite(s) => s.host_detail(host_id).await,
        }
    }

    pub async fn list_packages(&self, host_id: &str) -> Result<Vec<StoredPackage>, StoreError> {
        match self {
            Store::Sqlite(s) => s.list_packages(host_id).await,
        }
    }

    pub async fn package_history(&self, host_id: &str) -> Result<Vec<PackageChange>, StoreError> {
        match self {
            Store::Sqlite(s) => s.package_history(host_id).await,
        }
    }

    pub async fn list_hosts(&self, filter: &HostFilter) -> Result<Vec<Host>, StoreError> {
        match self {
            Store::Sqlite(s) => s.list_hosts(filter).await,
        }
    }

    pub async fn list_findings(&self, filter: &FindingFilter) -> Result<Vec<Finding>, StoreError> {
        match self {
            Store::Sqlite(s) => s.list_findings(filter).await,
        }
    }

    /// Every host id the collector knows.
    pub async fn all_host_ids(&self) -> Result<Vec<String>, StoreError> {
        match self {
            Store::Sqlite(s) => s.all_host_ids().await,
        }
    }

    /// Stores a sweep with its targets and its audit entry; refuses hosts never seen
    /// ([`StoreError::UnknownHosts`]).
    pub async fn create_sweep(
        &self,
        sweep: &NewSweep,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.create_sweep(sweep, audit).await,
        }
    }

    /// Notes when a sweep's order first went onto these hosts' streams.
    pub async fn mark_delivered(
        &self,
        sweep_id: &str,
        hosts: &[String],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.mark_delivered(sweep_id, hosts, now_ms).await,
        }
    }

    /// The sweeps to start and to cancel on a host that just connected.
    pub async fn sweep_orders(
        &self,
        host_id: &str,
        now_ms: i64,
    ) -> Result<SweepOrders, StoreError> {
        match self {
            Store::Sqlite(s) => s.sweep_orders(host_id, now_ms).await,
        }
    }

    pub async fn sweep(&self, sweep_id: &str) -> Result<Option<SweepRecord>, StoreError> {
        match self {
            Store::Sqlite(s) => s.sweep(sweep_id).await,
        }
    }

    /// Every sweep, newest first.
    pub async fn sweeps(&self) -> Result<Vec<SweepRecord>, StoreError> {
        match self {
            Store::Sqlite(s) => s.sweeps().await,
        }
    }

    /// Marks a sweep cancelled, with its audit entry; `false` when there is no such sweep.
    pub async fn cancel_sweep(
        &self,
        sweep_id: &str,
        audit: &NewAuditEntry,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => s.cancel_sweep(sweep_id, audit).await,
        }
    }

    pub async fn record_audit(&self, entry: &NewAuditEntry) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.record_audit(entry).await,
        }
    }

    /// The audit log, oldest first.
    pub async fn list_audit(&self) -> Result<Vec<AuditEntry>, StoreError> {
        match self {
            Store::Sqlite(s) => s.list_audit().await,
        }
    }

    pub async fn finding(&self, id: i64) -> Result<Option<Finding>, StoreError> {
        match self {
            Store::Sqlite(s) => s.finding(id).await,
        }
    }

    /// Applies an admin's change to a finding with its history and audit entries; refuses
    /// ([`StoreError::Refused`]) what the lifecycle does not allow.
    pub async fn change_finding(
        &self,
        id: i64,
        change: &AdminChange,
        actor: &str,
        note: &str,
        now_ms: i64,
    ) -> Result<Finding, StoreError> {
        match self {
            Store::Sqlite(s) => s.change_finding(id, change, actor, note, now_ms).await,
        }
    }

    pub async fn finding_history(
        &self,
        id: i64,
    ) -> Result<Option<(Finding, Vec<FindingChange>)>, StoreError> {
        match self {
            Store::Sqlite(s) => s.finding_history(id).await,
        }
    }

    /// Quarantines and restores asked for on a host and not answered yet.
    pub async fn remediation_orders(&self, host_id: &str) -> Result<RemediationOrders, StoreError> {
        match self {
            Store::Sqlite(s) => s.remediation_orders(host_id).await,
        }
    }

    pub async fn record_remediation(
        &self,
        host_id: &str,
        report: &RemediationReport,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.record_remediation(host_id, report, now_ms).await,
        }
    }

    pub async fn record_status_snapshot(
        &self,
        day: &str,
        counts: &[(HostStatus, u32)],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.record_status_snapshot(day, counts, now_ms).await,
        }
    }

    /// (day, status, hosts) from `since_day` on.
    pub async fn status_snapshots(
        &self,
        since_day: &str,
    ) -> Result<Vec<(String, String, u32)>, StoreError> {
        match self {
            Store::Sqlite(s) => s.status_snapshots(since_day).await,
        }
    }

    /// Stores a botnet IP list as its source's next version.
    pub async fn import_ip_list(
        &self,
        list: &NewIpList,
        parsed: &ParsedList,
        now_ms: i64,
    ) -> Result<IpList, StoreError> {
        match self {
            Store::Sqlite(s) => s.import_ip_list(list, parsed, now_ms).await,
        }
    }

    /// Retires a botnet IP list.
    pub async fn retire_ip_list(
        &self,
        id: i64,
        actor: &str,
        now_ms: i64,
    ) -> Result<IpList, StoreError> {
        match self {
            Store::Sqlite(s) => s.retire_ip_list(id, actor, now_ms).await,
        }
    }

    /// Every botnet IP list, active and retired.
    pub async fn ip_lists(&self) -> Result<Vec<IpList>, StoreError> {
        match self {
            Store::Sqlite(s) => s.ip_lists().await,
        }
    }

    /// The matcher of every active list's entries, built as the rows stream in.
    pub async fn active_ip_matcher(&self) -> Result<crate::intel::IpMatcher, StoreError> {
        match self {
            Store::Sqlite(s) => s.active_ip_matcher().await,
        }
    }

    /// Addresses, egress address and sockets of one host, or of all; only the sockets whose
    /// remote address `keep` accepts.
    pub async fn host_net_facts(
        &self,
        host_id: Option<&str>,
        keep: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<Vec<HostNetFacts>, StoreError> {
        match self {
            Store::Sqlite(s) => s.host_net_facts(host_id, keep).await,
        }
    }

    /// Brings hosts' `botnet_ip` findings in line with their current matches; `listed` says
    /// whether an address is on an active list.
    pub async fn apply_botnet_matches(
        &self,
        results: &[(String, Vec<BotnetMatch>)],
        listed: &(dyn Fn(std::net::IpAddr) -> bool + Sync),
        now_ms: i64,
    ) -> Result<BotnetChanges, StoreError> {
        match self {
            Store::Sqlite(s) => s.apply_botnet_matches(results, listed, now_ms).await,
        }
    }

    /// Stores a signed bundle; the newest of a kind is the current one.
    pub async fn save_bundle(
        &self,
        bundle: &BundleRecord,
        members: &[String],
    ) -> Result<BundleRecord, StoreError> {
        match self {
            Store::Sqlite(s) => s.save_bundle(bundle, members).await,
        }
    }

    /// The version of the current bundle of `kind`, without its bytes.
    pub async fn current_bundle_version(&self, kind: &str) -> Result<Option<String>, StoreError> {
        match self {
            Store::Sqlite(s) => s.current_bundle_version(kind).await,
        }
    }

    /// Adds an allowlist entry; the findings it makes false positives now.
    pub async fn add_allow(
        &self,
        entry: &crate::allowlist::AllowEntry,
        now_ms: i64,
    ) -> Result<(crate::allowlist::AllowEntry, Vec<i64>), StoreError> {
        match self {
            Store::Sqlite(s) => s.add_allow(entry, now_ms).await,
        }
    }

    /// Every allowlist entry, the removed and expired ones too.
    pub async fn allow_entries(&self) -> Result<Vec<crate::allowlist::AllowEntry>, StoreError> {
        match self {
            Store::Sqlite(s) => s.allow_entries().await,
        }
    }

    /// Takes an allowlist entry out of force; `false`: none such in force.
    pub async fn remove_allow(
        &self,
        id: i64,
        actor: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => s.remove_allow(id, actor, now_ms).await,
        }
    }

    /// The versions of the current rule and IOC bundles, which a clean host's last sweep
    /// must have run with.
    pub async fn current_bundles(&self) -> Result<crate::findings::CurrentBundles, StoreError> {
        Ok(crate::findings::CurrentBundles {
            rules: self
                .current_bundle_version(hygiene_proto::bundle::RULES)
                .await?,
            iocs: self
                .current_bundle_version(hygiene_proto::bundle::IOCS)
                .await?,
        })
    }

    /// The current bundle of `kind` (`rules` or `iocs`).
    pub async fn current_bundle(&self, kind: &str) -> Result<Option<BundleRecord>, StoreError> {
        match self {
            Store::Sqlite(s) => s.current_bundle(kind).await,
        }
    }

    /// Notes that bundle `version` of `kind` was put on the host's stream.
    pub async fn record_bundle_offer(
        &self,
        host_id: &str,
        kind: &str,
        version: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.record_bundle_offer(host_id, kind, version, now_ms).await,
        }
    }

    /// What a host's agent said of a bundle kind.
    pub async fn record_bundle_report(
        &self,
        host_id: &str,
        report: &BundleReport,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.record_bundle_report(host_id, report, now_ms).await,
        }
    }

    /// Every host's bundles.
    pub async fn host_bundles(&self) -> Result<Vec<HostBundleState>, StoreError> {
        match self {
            Store::Sqlite(s) => s.host_bundles().await,
        }
    }

    /// Whether the host said it runs, or refused, `version` of `kind`.
    pub async fn answered_bundle(
        &self,
        host_id: &str,
        kind: &str,
        version: &str,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => s.answered_bundle(host_id, kind, version).await,
        }
    }

    /// The version of `kind` the host refused last (empty: none).
    pub async fn refused_version(&self, host_id: &str, kind: &str) -> Result<String, StoreError> {
        match self {
            Store::Sqlite(s) => s.refused_version(host_id, kind).await,
        }
    }

    /// The stored month `id` (`2024-Jan`), without its content.
    pub async fn advisory(&self, id: &str) -> Result<Option<StoredAdvisory>, StoreError> {
        match self {
            Store::Sqlite(s) => s.advisory(id).await,
        }
    }

    /// Stores a month, replacing an earlier revision of it.
    pub async fn save_advisory(
        &self,
        record: &StoredAdvisory,
        advisory: &Advisory,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.save_advisory(record, advisory).await,
        }
    }

    /// Every stored month.
    pub async fn advisories(&self) -> Result<Vec<Advisory>, StoreError> {
        match self {
            Store::Sqlite(s) => s.advisories().await,
        }
    }

    /// OS facts, installed updates and programs of one host, or of every host.
    pub async fn host_software(
        &self,
        host_id: Option<&str>,
    ) -> Result<Vec<HostSoftware>, StoreError> {
        match self {
            Store::Sqlite(s) => s.host_software(host_id).await,
        }
    }
}
