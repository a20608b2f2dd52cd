//! Persistence. [`Store`] is the one door to the database; it speaks domain types
//! ([`crate::model`]) only.
//!
//! Every write an agent message causes is idempotent (upserts keyed by what the message
//! describes), because agents resend whatever was not acknowledged.
//!
//! The methods are grouped in per-area traits ([`FleetStore`], [`FindingStore`], ...) that a
//! backend implements; [`SqlStore`] implements them all for SQLite (embedded, WAL, the
//! default) and PostgreSQL (several collector replicas on one database), with the same
//! statements wherever the two engines agree.

/// Runs each named test case, an `async fn(SqlStore)` of the calling module, on a fresh SQLite
/// file and on a fresh PostgreSQL database ([`test_db`]): the store's conformance suite.
#[cfg(test)]
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    let url = format!("sqlite://{}", dir.path().join("c.db").display());
                    let store = crate::store::SqlStore::open(&url).await.unwrap();
                    super::$case(store.clone()).await;
                    crate::store::sql::assert_finding_counts_kept(&store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(db) = crate::store::test_db::TestDatabase::create().await else {
                        return;
                    };
                    let store = crate::store::SqlStore::open(&db.url()).await.unwrap();
                    super::$case(store.clone()).await;
                    crate::store::sql::assert_finding_counts_kept(&store).await;
                }
            )*
        }
    };
}

mod copy;
mod query;
mod sql;
mod sql_allow;
mod sql_certs;
mod sql_enroll;
mod sql_intel;
mod sql_site;
mod sql_vuln;
#[doc(hidden)]
pub mod test_db;

use std::path::PathBuf;
use std::sync::Arc;

pub use async_trait::async_trait;

pub use copy::{EPHEMERAL_TABLES, TABLES, TableCopy};
pub use sql::{Dialect, SqlStore};

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

/// The store's errors. Each says its cause in its own message (and keeps it out of the
/// `source` chain), so that a caller printing the chain says it once.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {url}: {cause}")]
    Open { url: String, cause: sqlx::Error },
    #[error("database {url}: migration failed: {cause}")]
    Migrate {
        url: String,
        cause: sqlx::migrate::MigrateError,
    },
    #[error("{path}: cannot create the database directory: {cause}")]
    Directory {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("database query failed: {0}")]
    Query(sqlx::Error),
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

impl From<sqlx::Error> for StoreError {
    fn from(cause: sqlx::Error) -> Self {
        StoreError::Query(cause)
    }
}

/// `Backend`, the sum of the per-area traits, and its blanket implementation, from one list.
macro_rules! backend {
    ($($area:ident),+ $(,)?) => {
        /// Everything the collector persists: one value per backend, behind [`Store`].
        pub trait Backend: $($area +)+ {}

        impl<T: $($area +)+> Backend for T {}
    };
}

backend!(
    FleetStore,
    EnrollStore,
    CertStore,
    InventoryStore,
    FindingStore,
    AllowStore,
    SweepStore,
    AuditStore,
    IntelStore,
    BundleStore,
    VulnStore,
    SiteStore,
);

/// The collector's store: a cheap handle to the backend chosen by the database URL. Its
/// methods come from the per-area traits ([`FleetStore`], [`FindingStore`], ...), which every
/// backend implements (a trait object's supertrait methods need no import).
#[derive(Clone)]
pub struct Store(Arc<dyn Backend>);

impl Store {
    /// Opens the database at `url` (`postgres://...`, or SQLite as `sqlite://PATH`,
    /// `sqlite:PATH` or a plain file path, created if needed) and brings its schema up to date.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        Ok(Store(Arc::new(SqlStore::open(url).await?)))
    }
}

/// Whether `url` names a PostgreSQL database (anything else is an SQLite file).
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

impl std::ops::Deref for Store {
    type Target = dyn Backend;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

#[async_trait]
pub trait CertStore: Send + Sync {
    /// Every certificate a host has presented (see [`crate::certs`]).
    async fn host_certs(&self, host_id: &str) -> Result<Vec<crate::certs::HostCert>, StoreError>;

    /// Notes that a host presented a certificate.
    async fn record_host_cert(
        &self,
        host_id: &str,
        cert: &crate::certs::HostCert,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Revokes a host's certificates (`serials`, or all when `None`) not revoked already;
    /// the serials revoked now.
    async fn revoke_certs(
        &self,
        host_id: &str,
        serials: Option<&[String]>,
        by: &str,
        note: &str,
        now_ms: i64,
        audit: Option<&NewAuditEntry>,
    ) -> Result<Vec<String>, StoreError>;

    /// Every revoked serial.
    async fn revoked_serials(&self) -> Result<Vec<String>, StoreError>;

    /// Before when `hosts revoke` revoked a host's certificates, if it did.
    async fn certs_revoked_before(&self, host_id: &str) -> Result<Option<i64>, StoreError>;

    /// Decommissions a host (audited); `false` if it was already.
    async fn remove_host(&self, host_id: &str, audit: &NewAuditEntry) -> Result<bool, StoreError>;

    async fn host_exists(&self, host_id: &str) -> Result<bool, StoreError>;
}

#[async_trait]
pub trait AllowStore: Send + Sync {
    /// Adds an allowlist entry; the findings it makes false positives now.
    async fn add_allow(
        &self,
        entry: &crate::allowlist::AllowEntry,
        now_ms: i64,
    ) -> Result<(crate::allowlist::AllowEntry, Vec<i64>), StoreError>;

    /// Every allowlist entry, the removed and expired ones too.
    async fn allow_entries(&self) -> Result<Vec<crate::allowlist::AllowEntry>, StoreError>;

    /// Takes an allowlist entry out of force; `false`: none such in force.
    async fn remove_allow(&self, id: i64, actor: &str, now_ms: i64) -> Result<bool, StoreError>;
}

#[async_trait]
pub trait BundleStore: Send + Sync {
    /// Stores a signed bundle; the newest of a kind is the current one.
    async fn save_bundle(
        &self,
        bundle: &BundleRecord,
        members: &[String],
    ) -> Result<BundleRecord, StoreError>;

    /// The version of the current bundle of `kind`, without its bytes.
    async fn current_bundle_version(&self, kind: &str) -> Result<Option<String>, StoreError>;

    /// The versions of the current rule and IOC bundles, which a clean host's last sweep
    /// must have run with.
    async fn current_bundles(&self) -> Result<crate::findings::CurrentBundles, StoreError> {
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
    async fn current_bundle(&self, kind: &str) -> Result<Option<BundleRecord>, StoreError>;

    /// Notes that bundle `version` of `kind` was put on the host's stream.
    async fn record_bundle_offer(
        &self,
        host_id: &str,
        kind: &str,
        version: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// What a host's agent said of a bundle kind.
    async fn record_bundle_report(
        &self,
        host_id: &str,
        report: &BundleReport,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Every host's bundles.
    async fn host_bundles(&self) -> Result<Vec<HostBundleState>, StoreError>;

    /// Whether the host said it runs, or refused, `version` of `kind`.
    async fn answered_bundle(
        &self,
        host_id: &str,
        kind: &str,
        version: &str,
    ) -> Result<bool, StoreError>;

    /// The version of `kind` the host refused last (empty: none).
    async fn refused_version(&self, host_id: &str, kind: &str) -> Result<String, StoreError>;
}

#[async_trait]
pub trait FleetStore: Send + Sync {
    /// Records a Hello: creates or updates the host and marks it connected. Returns the new
    /// connection id, which [`FleetStore::record_disconnect`] needs.
    async fn record_hello(&self, hello: &HostHello, now_ms: i64) -> Result<i64, StoreError>;

    /// Marks the host offline, unless it has reconnected since on a newer connection.
    async fn record_disconnect(
        &self,
        host_id: &str,
        connection_id: i64,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Updates the host's last-seen time.
    async fn touch(&self, host_id: &str, now_ms: i64) -> Result<(), StoreError>;

    /// Records what the host's agent said its full spool dropped (running totals).
    async fn record_spool_dropped(
        &self,
        host_id: &str,
        dropped: &SpoolDropped,
    ) -> Result<(), StoreError>;

    async fn list_hosts(&self, filter: &HostFilter) -> Result<Vec<Host>, StoreError>;

    /// Everything known about one host; `None` for a host never seen.
    async fn host_detail(&self, host_id: &str) -> Result<Option<HostDetail>, StoreError>;

    /// Every host id the collector knows.
    async fn all_host_ids(&self) -> Result<Vec<String>, StoreError>;

    async fn record_status_snapshot(
        &self,
        day: &str,
        counts: &[(HostStatus, u32)],
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// (day, status, hosts) from `since_day` on.
    async fn status_snapshots(
        &self,
        since_day: &str,
    ) -> Result<Vec<(String, String, u32)>, StoreError>;
}

#[async_trait]
pub trait EnrollStore: Send + Sync {
    /// Stores a new enrollment token (see [`crate::enroll`]) with its audit entry; its id.
    async fn create_enroll_token(
        &self,
        token: &crate::enroll::EnrollToken,
        token_sha256: &str,
        audit: &NewAuditEntry,
    ) -> Result<i64, StoreError>;

    /// Takes one use of an active token for a host (audited); otherwise the token's state
    /// (`None`: unknown).
    async fn consume_enroll_token(
        &self,
        token_sha256: &str,
        host_id: &str,
        now_ms: i64,
    ) -> Result<Result<crate::enroll::EnrollToken, Option<crate::enroll::TokenState>>, StoreError>;

    async fn list_enroll_tokens(&self) -> Result<Vec<crate::enroll::EnrollToken>, StoreError>;

    /// Revokes an enrollment token; `false` if unknown or revoked already.
    async fn revoke_enroll_token(&self, id: i64, audit: &NewAuditEntry)
    -> Result<bool, StoreError>;
}

#[async_trait]
pub trait InventoryStore: Send + Sync {
    /// Replaces a host's package list, recording what appeared, changed or left.
    async fn record_packages(
        &self,
        host_id: &str,
        packages: &[InstalledPackage],
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Stores an inventory: OS facts, and each list the agent collected whole. `false`: a
    /// delta that does not fit the stored lists was not applied; ask for a complete one.
    async fn record_inventory(
        &self,
        host_id: &str,
        report: &InventoryReport,
        now_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Replaces a host's socket list, unless a newer one is stored.
    async fn record_connections(
        &self,
        host_id: &str,
        report: &ConnectionReport,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    async fn list_connections(
        &self,
        filter: &ConnectionFilter,
    ) -> Result<Vec<HostConnection>, StoreError>;

    async fn list_hotfixes(&self, host_id: &str) -> Result<Vec<Hotfix>, StoreError>;

    async fn list_programs(&self, host_id: &str) -> Result<Vec<Program>, StoreError>;

    async fn list_packages(&self, host_id: &str) -> Result<Vec<StoredPackage>, StoreError>;

    async fn package_history(&self, host_id: &str) -> Result<Vec<PackageChange>, StoreError>;
}

#[async_trait]
pub trait FindingStore: Send + Sync {
    /// How many of a host's findings were last seen by a sweep.
    async fn count_sweep_findings(&self, host_id: &str, sweep_id: &str) -> Result<u64, StoreError>;

    /// Stores findings in one transaction; a finding already known is updated, not duplicated.
    async fn record_findings(
        &self,
        host_id: &str,
        findings: &[NewFinding],
        now_ms: i64,
    ) -> Result<(), StoreError>;

    async fn list_findings(&self, filter: &FindingFilter) -> Result<Vec<Finding>, StoreError>;

    async fn finding(&self, id: i64) -> Result<Option<Finding>, StoreError>;

    /// Applies an admin's change to a finding with its history and audit entries; refuses
    /// ([`StoreError::Refused`]) what the lifecycle does not allow.
    async fn change_finding(
        &self,
        id: i64,
        change: &AdminChange,
        actor: &str,
        note: &str,
        now_ms: i64,
    ) -> Result<Finding, StoreError>;

    async fn finding_history(
        &self,
        id: i64,
    ) -> Result<Option<(Finding, Vec<FindingChange>)>, StoreError>;

    /// Quarantines and restores asked for on a host and not answered yet.
    async fn remediation_orders(&self, host_id: &str) -> Result<RemediationOrders, StoreError>;

    async fn record_remediation(
        &self,
        host_id: &str,
        report: &RemediationReport,
        now_ms: i64,
    ) -> Result<(), StoreError>;
}

#[async_trait]
pub trait SweepStore: Send + Sync {
    async fn record_sweep_report(
        &self,
        host_id: &str,
        report: &SweepReport,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Keeps the latest progress report of a sweep; an older report never replaces a newer one.
    async fn record_sweep_progress(
        &self,
        host_id: &str,
        progress: &SweepProgress,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Stores a sweep with its targets and its audit entry; refuses hosts never seen
    /// ([`StoreError::UnknownHosts`]).
    async fn create_sweep(&self, sweep: &NewSweep, audit: &NewAuditEntry)
    -> Result<(), StoreError>;

    /// Notes when a sweep's order first went onto these hosts' streams.
    async fn mark_delivered(
        &self,
        sweep_id: &str,
        hosts: &[String],
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// The sweeps to start and to cancel on a host that just connected.
    async fn sweep_orders(&self, host_id: &str, now_ms: i64) -> Result<SweepOrders, StoreError>;

    async fn sweep(&self, sweep_id: &str) -> Result<Option<SweepRecord>, StoreError>;

    /// Every sweep, newest first.
    async fn sweeps(&self) -> Result<Vec<SweepRecord>, StoreError>;

    /// Marks a sweep cancelled, with its audit entry; `false` when there is no such sweep.
    async fn cancel_sweep(&self, sweep_id: &str, audit: &NewAuditEntry)
    -> Result<bool, StoreError>;
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn record_audit(&self, entry: &NewAuditEntry) -> Result<(), StoreError>;

    /// The audit log, oldest first.
    async fn list_audit(&self) -> Result<Vec<AuditEntry>, StoreError>;
}

#[async_trait]
pub trait IntelStore: Send + Sync {
    /// Stores a botnet IP list as its source's next version.
    async fn import_ip_list(
        &self,
        list: &NewIpList,
        parsed: &ParsedList,
        now_ms: i64,
    ) -> Result<IpList, StoreError>;

    /// Retires a botnet IP list.
    async fn retire_ip_list(&self, id: i64, actor: &str, now_ms: i64)
    -> Result<IpList, StoreError>;

    /// Every botnet IP list, active and retired.
    async fn ip_lists(&self) -> Result<Vec<IpList>, StoreError>;

    /// The matcher of every active list's entries, built as the rows stream in.
    async fn active_ip_matcher(&self) -> Result<crate::intel::IpMatcher, StoreError>;

    /// Addresses, egress address and sockets of one host, or of all; only the sockets whose
    /// remote address `keep` accepts.
    async fn host_net_facts(
        &self,
        host_id: Option<&str>,
        keep: &(dyn for<'s> Fn(&'s str) -> bool + Sync),
    ) -> Result<Vec<HostNetFacts>, StoreError>;

    /// Brings hosts' `botnet_ip` findings in line with their current matches; `listed` says
    /// whether an address is on an active list.
    async fn apply_botnet_matches(
        &self,
        results: &[(String, Vec<BotnetMatch>)],
        listed: &(dyn Fn(std::net::IpAddr) -> bool + Sync),
        now_ms: i64,
    ) -> Result<BotnetChanges, StoreError>;
}

#[async_trait]
pub trait VulnStore: Send + Sync {
    /// The stored month `id` (`2024-Jan`), without its content.
    async fn advisory(&self, id: &str) -> Result<Option<StoredAdvisory>, StoreError>;

    /// Stores a month, replacing an earlier revision of it.
    async fn save_advisory(
        &self,
        record: &StoredAdvisory,
        advisory: &Advisory,
    ) -> Result<(), StoreError>;

    /// Every stored month.
    async fn advisories(&self) -> Result<Vec<Advisory>, StoreError>;

    /// OS facts, installed updates and programs of one host, or of every host.
    async fn host_software(&self, host_id: Option<&str>) -> Result<Vec<HostSoftware>, StoreError>;
}

/// Several replicas on one database: the events they tell each other, which are alive (and
/// so whose hosts are connected), and jobs that run once across them (see [`crate::site`]).
#[async_trait]
pub trait SiteStore: Send + Sync {
    /// This process's replica id (hosts connected here carry it).
    fn replica_id(&self) -> &str;

    /// Stores an event (JSON) from this replica and wakes the others; its id.
    async fn publish_event(&self, body: &str, now_ms: i64) -> Result<i64, StoreError>;

    /// Events after `after`, oldest first (at most 1,000 at a time).
    async fn events_after(&self, after: i64) -> Result<Vec<crate::site::StoredEvent>, StoreError>;

    /// The newest event's id (0 when none): where a starting replica begins to read.
    async fn last_event_id(&self) -> Result<i64, StoreError>;

    /// Deletes events older than `before_ms`; how many.
    async fn prune_events(&self, before_ms: i64) -> Result<u64, StoreError>;

    /// Notes this replica alive; hosts whose replica was last seen before `dead_before_ms`
    /// (or left) are marked offline, and such replicas forgotten.
    async fn replica_seen(
        &self,
        listen: &str,
        now_ms: i64,
        dead_before_ms: i64,
    ) -> Result<(), StoreError>;

    /// This replica stops: it leaves the list and its hosts are offline.
    async fn replica_gone(&self) -> Result<(), StoreError>;

    /// The replicas in the site's list, by listen address, with the hosts each holds.
    async fn replicas(&self) -> Result<Vec<crate::site::ReplicaRecord>, StoreError>;

    /// Takes or renews lease `name` until `until_ms` when it is free, expired or ours already;
    /// whether this replica holds it.
    async fn take_lease(&self, name: &str, now_ms: i64, until_ms: i64) -> Result<bool, StoreError>;

    /// Wake-ups when another replica publishes (PostgreSQL's notifications); `None` where
    /// there are none (SQLite), and reading the table on a timer is all there is.
    async fn event_cues(&self) -> Option<tokio::sync::mpsc::Receiver<()>>;
}
