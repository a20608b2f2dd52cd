//! Persistence. [`Store`] is the one door to the database; it speaks domain types
//! ([`crate::model`]) only.
//!
//! Every write an agent message causes is idempotent (upserts keyed by what the message
//! describes), because agents resend whatever was not acknowledged.
//!
//! SQLite (embedded, WAL) is the default and only backend so far; a PostgreSQL backend slots in
//! behind the same methods.

mod sqlite;

use std::path::PathBuf;

pub use sqlite::SqliteStore;

use crate::model::{
    ConnectionFilter, ConnectionReport, Finding, FindingFilter, Host, HostConnection, HostDetail,
    HostFilter, HostHello, Hotfix, InstalledPackage, InventoryReport, NewFinding, PackageChange,
    Program, StoredPackage, SweepProgress, SweepReport,
};

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
}
