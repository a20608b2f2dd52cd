//! The SQL backend: one implementation for both engines, SQLite (embedded, one file, WAL) and
//! PostgreSQL (shared by collector replicas). Queries are written once, in the SQL both speak
//! (`$N` parameters, `ON CONFLICT`, `RETURNING`); where the engines differ, [`Dialect`] says
//! how. Each engine has its own migrations: `migrations/sqlite`, `migrations/postgres`.

use std::path::Path;
use std::str::FromStr;

use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::sqlite::SqliteConnectOptions;

use super::query::SqlBuilder;
use super::{
    AuditStore, FindingStore, FleetStore, InventoryStore, StoreError, SweepStore, async_trait,
};
use crate::findings::{
    AdminChange, BotnetLead, CompleteSweep, FindingState, HostCleanup, HostStatus, RuleSets,
    admin_transition, sweep_is_complete, under_roots,
};
use crate::model::{
    AuditEntry, ConnectionFilter, ConnectionReport, Finding, FindingFilter, FindingKind, Host,
    HostConnection, HostDetail, HostFilter, HostHello, Hotfix, InstalledPackage, InventoryReport,
    NetConnection, NewAuditEntry, NewFinding, OsFacts, PackageChange, Program, StoredInventory,
    StoredPackage, SweepProgress, SweepReport,
};
use crate::model::{
    FindingChange, RemediationAction, RemediationOrders, RemediationReport, SpoolDropped,
};
use crate::sweep::{
    NewSweep, ProgressRecord, ReportRecord, SweepOrder, SweepOrders, SweepRecord, TargetRecord,
};
use crate::version::Scheme;

/// A write transaction ([`SqlStore::write`]): the transaction and this process's turn among
/// its writers, held until it ends. Dereferences to the connection, as a transaction does.
pub(super) struct Tx<'c> {
    tx: sqlx::Transaction<'c, sqlx::Any>,
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

impl Tx<'_> {
    pub(super) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = sqlx::AnyConnection;

    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for Tx<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

/// Rows per multi-row INSERT: at up to 9 values a row, far below SQLite's limit of 32,766
/// bound parameters and PostgreSQL's of 65,535.
pub(super) const ROWS_PER_INSERT: usize = 500;

/// Which engine a [`SqlStore`] talks to, for the few statements they write differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The larger of two values: SQLite's two-argument `max`, PostgreSQL's `GREATEST`.
    pub(super) fn greatest(self) -> &'static str {
        match self {
            Dialect::Sqlite => "max",
            Dialect::Postgres => "GREATEST",
        }
    }

    /// The distinct values of a text column joined with commas (an aggregate).
    pub(super) fn join_distinct(self, column: &str) -> String {
        match self {
            Dialect::Sqlite => format!("group_concat(DISTINCT {column})"),
            Dialect::Postgres => format!("string_agg(DISTINCT {column}, ',')"),
        }
    }

    /// A table source of the elements of a JSON array held in `json` (an expression), as
    /// `value`: texts for an array of strings, JSON for an array of objects.
    pub(super) fn json_elements(self, json: &str) -> String {
        match self {
            Dialect::Sqlite => format!("json_each({json})"),
            Dialect::Postgres => format!("jsonb_array_elements(CAST({json} AS jsonb))"),
        }
    }

    /// Element `index` of a JSON array (an expression), as text.
    pub(super) fn json_item(self, json: &str, index: usize) -> String {
        match self {
            Dialect::Sqlite => format!("json_extract({json}, '$[{index}]')"),
            Dialect::Postgres => format!("({json} ->> {index})"),
        }
    }

    /// Field `name` of a JSON object (an expression), as text.
    pub(super) fn json_field(self, json: &str, name: &str) -> String {
        match self {
            Dialect::Sqlite => format!("json_extract({json}, '$.{name}')"),
            Dialect::Postgres => format!("({json} ->> '{name}')"),
        }
    }

    /// The column that orders a history table's rows as they were inserted.
    pub(super) fn insertion_order(self) -> &'static str {
        match self {
            Dialect::Sqlite => "rowid",
            Dialect::Postgres => "seq",
        }
    }
}

#[derive(Clone)]
pub struct SqlStore {
    pub(super) pool: AnyPool,
    pub(super) dialect: Dialect,
    /// This process's id among the site's replicas: the hosts whose streams it holds say so.
    pub(super) replica: std::sync::Arc<str>,
    /// The URL it was opened with (PostgreSQL's notifications need a connection of their own).
    pub(super) url: String,
    /// This process's writers queue here, in order, before they take the database's write
    /// lock: left to SQLite's busy handler, which polls, eight concurrent writers starved one
    /// past its busy timeout ("database is locked") in the store benchmark; on PostgreSQL
    /// each waiter held a pooled connection.
    pub(super) write_turn: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// Every writer takes this PostgreSQL advisory lock for its transaction, so that writes are
/// serialised across replicas as SQLite serialises them (see [`SqlStore::write`]).
const PG_WRITE_LOCK: i64 = 0x0068_7967_6965_6e65; // "hygiene"

const HOST_COLUMNS: &str = "h.host_id, h.removed_ms, h.hostname, h.os_name, h.os_version, h.kernel_version, h.arch, \
     h.ip_addresses, h.agent_version, h.peer_address, h.first_seen_ms, h.last_seen_ms, h.connected, \
     h.open_findings, h.botnet_matches, h.requested_findings, h.quarantined_findings, \
     h.complete_sweep_id, h.complete_started_ms, r.rules_version AS c_rules_version, r.iocs_version AS c_iocs_version, \
     r.rule_count AS c_rule_count, r.ioc_count AS c_ioc_count";

/// The hosts table with its latest complete sweep's report, for [`HOST_COLUMNS`]. The
/// finding counts are kept by the database's triggers (migration `host_finding_counts`).
const HOST_FROM: &str = "hosts h LEFT JOIN sweep_reports r \
     ON r.host_id = h.host_id AND r.sweep_id = h.complete_sweep_id";

const FINDING_COLUMNS: &str = "id, host_id, kind, path, path_raw, sha256, size, rule, namespace, ioc_comment, state, \
     first_seen_ms, last_seen_ms, state_changed_ms, quarantine_id, remediation_error, restore_requested_ms, sweep_id, \
     list_id, evidence";

impl SqlStore {
    /// Opens the database at `url`: `postgres://...` / `postgresql://...`, or SQLite as
    /// `sqlite://PATH`, `sqlite:PATH` or a plain file path (created if needed). Brings the
    /// schema up to date.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let open_error = |cause| StoreError::Open {
            url: url.to_owned(),
            cause,
        };
        let migrate_error = |cause| StoreError::Migrate {
            url: url.to_owned(),
            cause,
        };
        if super::is_postgres(url) {
            let options = AnyConnectOptions::from_str(url).map_err(open_error)?;
            // One connection first: a pool retries until its timeout and then says only that
            // it timed out; this says why (refused, no such database, authentication).
            sqlx::ConnectOptions::connect(&options)
                .await
                .map_err(open_error)?;
            let pool = AnyPoolOptions::new()
                .max_connections(16)
                .connect_with(options)
                .await
                .map_err(open_error)?;
            // sqlx's migrator holds an advisory lock while it runs: replicas starting together
            // create the schema once.
            sqlx::migrate!("./migrations/postgres")
                .run(&pool)
                .await
                .map_err(migrate_error)?;
            return Ok(SqlStore {
                pool,
                dialect: Dialect::Postgres,
                replica: new_replica_id(),
                url: url.to_owned(),
                write_turn: Default::default(),
            });
        }
        let file = if url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url)
                .map_err(open_error)?
                .get_filename()
                .to_path_buf()
        } else {
            Path::new(url).to_path_buf()
        };
        let file = std::path::absolute(&file).map_err(|cause| StoreError::Directory {
            path: file.clone(),
            cause,
        })?;
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(|cause| StoreError::Directory {
                path: parent.to_path_buf(),
                cause,
            })?;
        }
        let options = AnyConnectOptions::from_str(&sqlite_url(&file)).map_err(open_error)?;
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .after_connect(|conn, _| Box::pin(sqlite_pragmas(conn)))
            .connect_with(options)
            .await
            .map_err(open_error)?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(migrate_error)?;
        Ok(SqlStore {
            pool,
            dialect: Dialect::Sqlite,
            replica: new_replica_id(),
            url: url.to_owned(),
            write_turn: Default::default(),
        })
    }

    /// A write transaction, serialised with every other writer. On SQLite `BEGIN IMMEDIATE`
    /// takes the write lock at once, waiting up to the busy timeout: a deferred transaction
    /// that reads before it writes fails at once with SQLITE_BUSY ("database is locked") when
    /// another connection wrote after its read began, which agents reporting while an admin
    /// imports a list make routine. On PostgreSQL a transaction-scoped advisory lock does the
    /// same across replicas, so that read-then-write transactions see what they update.
    pub(super) async fn write(&self) -> Result<Tx<'static>, StoreError> {
        // This process's writers take turns first, holding no connection while they wait:
        // then at most one pooled connection per process waits for the database's lock, and
        // readers are never left without a connection behind queued writers.
        let turn = self.write_turn.clone().lock_owned().await;
        let tx = match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(PG_WRITE_LOCK)
                    .execute(&mut *tx)
                    .await?;
                tx
            }
        };
        Ok(Tx { tx, _turn: turn })
    }

    /// The botnet list matches of one host or of all, by host: open and resolved ones (false
    /// positives left out), each with when it was found and last seen to hold.
    async fn botnet_leads(
        &self,
        host_id: Option<&str>,
    ) -> Result<std::collections::HashMap<String, Vec<BotnetLead>>, StoreError> {
        let mut query = SqlBuilder::new(
            "SELECT host_id, state, namespace, first_seen_ms, state_changed_ms, last_seen_ms \
             FROM findings WHERE kind = 'botnet_ip' AND state <> 'false_positive'",
        );
        if let Some(host_id) = host_id {
            query.push(" AND host_id = ").push_bind(host_id);
        }
        let rows = query.build()?.fetch_all(&self.pool).await?;
        let mut leads: std::collections::HashMap<String, Vec<BotnetLead>> = Default::default();
        for row in rows {
            let state = state_of(&row)?;
            let via: String = row.try_get("namespace")?;
            let first_seen: i64 = row.try_get("first_seen_ms")?;
            let changed: i64 = row.try_get("state_changed_ms")?;
            let lead = BotnetLead {
                open: state.is_open(),
                own_address: crate::intel::MatchVia::parse(&via)
                    .is_some_and(crate::intel::MatchVia::is_own_address),
                // An open match last changed state when it was found or reopened.
                since_ms: if state.is_open() { changed } else { first_seen },
                last_seen_ms: row.try_get("last_seen_ms")?,
            };
            leads.entry(row.try_get("host_id")?).or_default().push(lead);
        }
        Ok(leads)
    }

    /// Hosts with package `name` installed at a version below `version`, each compared in the
    /// ordering of the package manager that installed it.
    async fn hosts_with_package_below(
        &self,
        name: &str,
        version: &str,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let rows = sqlx::query("SELECT host_id, version, manager FROM packages WHERE name = $1")
            .bind(name)
            .fetch_all(&self.pool)
            .await?;
        let mut hosts = std::collections::HashSet::new();
        for row in rows {
            let installed: String = row.try_get("version")?;
            let manager: String = row.try_get("manager")?;
            // Rows from agents that did not name their package manager: dpkg's ordering, which
            // agrees with RPM's on plain dotted versions.
            let scheme = Scheme::parse(&manager).unwrap_or(Scheme::Dpkg);
            if crate::version::compare(scheme, &installed, version).is_lt() {
                hosts.insert(row.try_get("host_id")?);
            }
        }
        Ok(hosts)
    }
}

impl SqlStore {
    async fn sweep_targets(&self, sweep_id: &str) -> Result<Vec<TargetRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.host_id, t.delivered_ms, h.connected, \
                 p.first_received_ms, p.updated_ms, p.files_done, p.bytes_done, p.files_estimate, \
                 p.bytes_estimate, p.findings AS p_findings, p.errors AS p_errors, \
                 r.received_ms, r.files, r.bytes, r.findings AS r_findings, r.errors AS r_errors, r.failure, \
                 prev.files AS prev_files, prev.bytes AS prev_bytes, \
                 (SELECT COUNT(*) FROM findings f WHERE f.host_id = t.host_id AND f.sweep_id = t.sweep_id \
                     AND f.state = 'false_positive') AS false_positives \
             FROM sweep_targets t JOIN hosts h ON h.host_id = t.host_id \
             LEFT JOIN sweep_progress p ON p.host_id = t.host_id AND p.sweep_id = t.sweep_id \
             LEFT JOIN sweep_reports r ON r.host_id = t.host_id AND r.sweep_id = t.sweep_id \
             LEFT JOIN sweep_reports prev ON prev.host_id = t.host_id \
                 AND prev.sweep_id = h.complete_sweep_id AND prev.sweep_id <> t.sweep_id \
             WHERE t.sweep_id = $1 ORDER BY t.host_id",
        )
        .bind(sweep_id)
        .fetch_all(&self.pool)
        .await?;
        let count = |v: Option<i64>| v.unwrap_or(0).max(0) as u64;
        rows.iter()
            .map(|row| {
                let updated: Option<i64> = row.try_get("updated_ms")?;
                let received: Option<i64> = row.try_get("received_ms")?;
                let progress = match updated {
                    None => None,
                    Some(updated_ms) => {
                        let first: i64 = row.try_get("first_received_ms")?;
                        Some(ProgressRecord {
                            // Rows from before the column existed: the latest report is all
                            // there is to go by.
                            first_received_ms: if first > 0 { first } else { updated_ms },
                            updated_ms,
                            files_done: count(row.try_get("files_done")?),
                            bytes_done: count(row.try_get("bytes_done")?),
                            files_estimate: count(row.try_get("files_estimate")?),
                            bytes_estimate: count(row.try_get("bytes_estimate")?),
                            findings: count(row.try_get("p_findings")?),
                            errors: error_total(row.try_get("p_errors")?)?,
                        })
                    }
                };
                let report = match received {
                    None => None,
                    Some(received_ms) => Some(ReportRecord {
                        received_ms,
                        files: count(row.try_get("files")?),
                        bytes: count(row.try_get("bytes")?),
                        findings: count(row.try_get("r_findings")?),
                        errors: error_total(row.try_get("r_errors")?)?,
                        failure: row.try_get("failure")?,
                        false_positives: count(row.try_get("false_positives")?),
                    }),
                };
                Ok(TargetRecord {
                    host_id: row.try_get("host_id")?,
                    online: row.try_get::<i64, _>("connected")? != 0,
                    delivered_ms: row.try_get("delivered_ms")?,
                    progress,
                    report,
                    previous: match (
                        row.try_get::<Option<i64>, _>("prev_files")?,
                        row.try_get::<Option<i64>, _>("prev_bytes")?,
                    ) {
                        (Some(files), Some(bytes)) => {
                            Some((count(Some(files)), count(Some(bytes))))
                        }
                        _ => None,
                    },
                })
            })
            .collect()
    }
}

#[async_trait]
impl FleetStore for SqlStore {
    async fn record_hello(&self, hello: &HostHello, now_ms: i64) -> Result<i64, StoreError> {
        let ips = serde_json::to_string(&hello.ip_addresses).expect("strings serialize");
        let row = sqlx::query(
            "INSERT INTO hosts (host_id, hostname, os_name, os_version, kernel_version, arch, ip_addresses, \
                 agent_version, boot_time, peer_address, first_seen_ms, last_seen_ms, connected, connection_id, \
                 replica) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 1, 1, $13) \
             ON CONFLICT (host_id) DO UPDATE SET hostname = excluded.hostname, os_name = excluded.os_name, \
                 os_version = excluded.os_version, kernel_version = excluded.kernel_version, arch = excluded.arch, \
                 ip_addresses = excluded.ip_addresses, agent_version = excluded.agent_version, \
                 boot_time = excluded.boot_time, peer_address = excluded.peer_address, \
                 last_seen_ms = excluded.last_seen_ms, connected = 1, connection_id = hosts.connection_id + 1, \
                 replica = excluded.replica, removed_ms = NULL, removed_by = NULL, remove_note = NULL \
             RETURNING connection_id",
        )
        .bind(&hello.host_id)
        .bind(&hello.hostname)
        .bind(&hello.os_name)
        .bind(&hello.os_version)
        .bind(&hello.kernel_version)
        .bind(&hello.arch)
        .bind(ips)
        .bind(&hello.agent_version)
        .bind(hello.boot_time)
        .bind(&hello.peer_address)
        .bind(now_ms)
        .bind(now_ms)
        .bind(&*self.replica)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get(0)?)
    }

    async fn record_disconnect(
        &self,
        host_id: &str,
        connection_id: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "UPDATE hosts SET connected = 0, last_seen_ms = {}(last_seen_ms, $1) \
             WHERE host_id = $2 AND connection_id = $3",
            self.dialect.greatest()
        ))
        .bind(now_ms)
        .bind(host_id)
        .bind(connection_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn touch(&self, host_id: &str, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "UPDATE hosts SET last_seen_ms = {}(last_seen_ms, $1) WHERE host_id = $2",
            self.dialect.greatest()
        ))
        .bind(now_ms)
        .bind(host_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records what the host's agent said its full spool dropped. The counts are running
    /// totals: a resent or older report never lowers them.
    async fn record_spool_dropped(
        &self,
        host_id: &str,
        dropped: &SpoolDropped,
    ) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "UPDATE hosts SET spool_dropped_progress = {g}(spool_dropped_progress, $1), \
                 spool_dropped_connections = {g}(spool_dropped_connections, $2), \
                 spool_dropped_inventories = {g}(spool_dropped_inventories, $3), \
                 spool_dropped_ms = {g}(coalesce(spool_dropped_ms, 0), $4) \
             WHERE host_id = $5",
            g = self.dialect.greatest()
        ))
        .bind(dropped.progress as i64)
        .bind(dropped.connections as i64)
        .bind(dropped.inventories as i64)
        .bind(dropped.last_dropped_ms.unwrap_or(0))
        .bind(host_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Everything known about one host; `None` for a host the collector has never seen.
    async fn host_detail(&self, host_id: &str) -> Result<Option<HostDetail>, StoreError> {
        let Some(row) = sqlx::query(&format!(
            "SELECT {HOST_COLUMNS} FROM {HOST_FROM} WHERE h.host_id = $1"
        ))
        .bind(host_id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let mut host = host_from_row(&row)?;
        host.cleanup.botnet = self
            .botnet_leads(Some(host_id))
            .await?
            .remove(host_id)
            .unwrap_or_default();
        let inventory = match sqlx::query("SELECT * FROM host_inventory WHERE host_id = $1")
            .bind(host_id)
            .fetch_optional(&self.pool)
            .await?
        {
            Some(row) => {
                let gaps: String = row.try_get("partial")?;
                Some(StoredInventory {
                    os: OsFacts {
                        family: row.try_get("family")?,
                        id: row.try_get("os_id")?,
                        version_id: row.try_get("version_id")?,
                        pretty_name: row.try_get("pretty_name")?,
                        kernel: row.try_get("kernel")?,
                        arch: row.try_get("arch")?,
                        boot_time: row.try_get("boot_time")?,
                        last_package_change: row.try_get("last_package_change")?,
                        product_name: row.try_get("product_name")?,
                        edition: row.try_get("edition")?,
                        display_version: row.try_get("display_version")?,
                        build: row.try_get("build")?,
                        installation_type: row.try_get("installation_type")?,
                    },
                    collected_ms: row.try_get("collected_ms")?,
                    received_ms: row.try_get("received_ms")?,
                    gaps: serde_json::from_str(&gaps).map_err(|e| {
                        StoreError::Corrupt(format!("{host_id}: inventory gaps: {e}"))
                    })?,
                })
            }
            None => None,
        };
        let mut counts = Vec::new();
        for table in ["packages", "hotfixes", "programs"] {
            let count: i64 =
                sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table} WHERE host_id = $1"))
                    .bind(host_id)
                    .fetch_one(&self.pool)
                    .await?;
            counts.push(count as u64);
        }
        let last_change_seen_ms: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(t) FROM (SELECT MAX(changed_ms) AS t FROM package_history WHERE host_id = $1 \
             UNION ALL SELECT MAX(changed_ms) FROM hotfix_history WHERE host_id = $1) AS changes",
        )
        .bind(host_id)
        .fetch_one(&self.pool)
        .await?;
        let report = sqlx::query(
            "SELECT collected_ms, count, partial_reason FROM connection_reports WHERE host_id = $1",
        )
        .bind(host_id)
        .fetch_optional(&self.pool)
        .await?;
        let (connection_count, connections_collected_ms, connections_partial) = match report {
            Some(row) => (
                row.try_get::<i64, _>("count")? as u64,
                Some(row.try_get("collected_ms")?),
                row.try_get("partial_reason")?,
            ),
            None => (0, None, None),
        };
        let spool = sqlx::query(
            "SELECT spool_dropped_progress, spool_dropped_connections, spool_dropped_inventories, \
                 spool_dropped_ms FROM hosts WHERE host_id = $1",
        )
        .bind(host_id)
        .fetch_one(&self.pool)
        .await?;
        let spool_dropped = SpoolDropped {
            progress: spool.try_get::<i64, _>(0)? as u64,
            connections: spool.try_get::<i64, _>(1)? as u64,
            inventories: spool.try_get::<i64, _>(2)? as u64,
            last_dropped_ms: spool.try_get(3)?,
        };
        Ok(Some(HostDetail {
            host,
            inventory,
            package_count: counts[0],
            hotfix_count: counts[1],
            program_count: counts[2],
            last_change_seen_ms,
            connection_count,
            connections_collected_ms,
            connections_partial,
            spool_dropped,
        }))
    }

    async fn list_hosts(&self, filter: &HostFilter) -> Result<Vec<Host>, StoreError> {
        let mut query = SqlBuilder::new(format!(
            "SELECT {HOST_COLUMNS} FROM {HOST_FROM} WHERE 1 = 1"
        ));
        if let Some(name) = &filter.has_package {
            query
                .push(" AND EXISTS (SELECT 1 FROM packages p WHERE p.host_id = h.host_id AND p.name = ")
                .push_bind(name)
                .push(")");
        }
        if let Some(kb) = &filter.missing_kb {
            // Only Windows hosts whose update list is complete can be said to miss a KB.
            let partial = self.dialect.json_elements("i.partial");
            let source = self.dialect.json_field("g.value", "source");
            query
                .push(&format!(
                    " AND EXISTS (SELECT 1 FROM host_inventory i WHERE i.host_id = h.host_id \
                     AND i.family = 'windows' AND NOT EXISTS (SELECT 1 FROM {partial} g \
                         WHERE {source} = 'hotfixes')) \
                     AND NOT EXISTS (SELECT 1 FROM hotfixes x WHERE x.host_id = h.host_id AND x.kb = "
                ))
                .push_bind(kb.to_ascii_uppercase())
                .push(")");
        }
        if !filter.include_removed {
            query.push(" AND h.removed_ms IS NULL");
        }
        query.push(" ORDER BY h.host_id");
        let rows = query.build()?.fetch_all(&self.pool).await?;
        let mut hosts: Vec<Host> = rows.iter().map(host_from_row).collect::<Result<_, _>>()?;
        let mut leads = self.botnet_leads(None).await?;
        for host in &mut hosts {
            host.cleanup.botnet = leads.remove(&host.host_id).unwrap_or_default();
        }
        if let Some((name, below)) = &filter.package_below {
            let below_on = self.hosts_with_package_below(name, below).await?;
            hosts.retain(|h| below_on.contains(&h.host_id));
        }
        // Which version each listed host has of the package asked about.
        if let Some(name) = filter
            .has_package
            .as_ref()
            .or(filter.package_below.as_ref().map(|(name, _)| name))
        {
            let rows = sqlx::query(
                "SELECT host_id, version, arch FROM packages WHERE name = $1 ORDER BY host_id, arch",
            )
            .bind(name)
            .fetch_all(&self.pool)
            .await?;
            let mut versions: std::collections::HashMap<String, Vec<String>> = Default::default();
            for row in rows {
                let version: String = row.try_get("version")?;
                let arch: String = row.try_get("arch")?;
                versions
                    .entry(row.try_get("host_id")?)
                    .or_default()
                    .push(format!("{version} {arch}").trim_end().to_owned());
            }
            for host in &mut hosts {
                host.package_versions = versions.remove(&host.host_id).unwrap_or_default();
            }
        }
        Ok(hosts)
    }

    /// Stores today's count of hosts per status (replacing what the day had so far).
    async fn record_status_snapshot(
        &self,
        day: &str,
        counts: &[(HostStatus, u32)],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        for (status, hosts) in counts {
            sqlx::query(
                "INSERT INTO status_snapshots (day, status, hosts, updated_ms) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (day, status) DO UPDATE SET hosts = excluded.hosts, updated_ms = excluded.updated_ms",
            )
            .bind(day)
            .bind(status.as_str())
            .bind(i64::from(*hosts))
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Hosts per status for each day from `since_day` on, as (day, status, hosts), by day.
    async fn status_snapshots(
        &self,
        since_day: &str,
    ) -> Result<Vec<(String, String, u32)>, StoreError> {
        let rows = sqlx::query(
            "SELECT day, status, hosts FROM status_snapshots WHERE day >= $1 ORDER BY day, status",
        )
        .bind(since_day)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("day")?,
                    row.try_get("status")?,
                    row.try_get::<i64, _>("hosts")?.max(0) as u32,
                ))
            })
            .collect()
    }

    async fn all_host_ids(&self) -> Result<Vec<String>, StoreError> {
        let rows =
            sqlx::query("SELECT host_id FROM hosts WHERE removed_ms IS NULL ORDER BY host_id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| r.try_get(0).map_err(StoreError::from))
            .collect()
    }
}

#[async_trait]
impl FindingStore for SqlStore {
    /// How many of `host_id`'s findings were last seen by `sweep_id`.
    async fn count_sweep_findings(&self, host_id: &str, sweep_id: &str) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM findings WHERE host_id = $1 AND sweep_id = $2",
        )
        .bind(host_id)
        .bind(sweep_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Stores findings in one transaction. A finding already known is updated, not
    /// duplicated; one resolved (or a false positive that had gone) that shows up again, at its
    /// path or with its content elsewhere, is reopened; anything else is a new open finding.
    async fn record_findings(
        &self,
        host_id: &str,
        findings: &[NewFinding],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let allowlist = super::sql_allow::active_entries(&mut tx, now_ms).await?;
        for f in findings {
            // An allowlisted file is a false positive from the moment it is found (again).
            let allowed = crate::allowlist::allowed_by(
                &allowlist,
                &crate::allowlist::FileFinding {
                    host_id,
                    path: &f.path,
                    sha256: &f.sha256,
                    namespace: &f.namespace,
                    rule: &f.rule,
                },
                now_ms,
            );
            let allowed_note = allowed.map(|entry| entry.history_note());
            let same = sqlx::query(
                "SELECT id, state, gone_ms FROM findings WHERE host_id = $1 AND kind = $2 AND path = $3 \
                 AND sha256 = $4 AND namespace = $5 AND rule = $6",
            )
            .bind(host_id)
            .bind(f.kind.as_str())
            .bind(&f.path)
            .bind(&f.sha256)
            .bind(&f.namespace)
            .bind(&f.rule)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = same {
                let id: i64 = row.try_get("id")?;
                let state = state_of(&row)?;
                let gone: Option<i64> = row.try_get("gone_ms")?;
                let back =
                    crate::findings::seen_again(state, gone.is_some(), allowed_note.as_deref());
                update_sighting(
                    &mut tx,
                    self.dialect,
                    id,
                    f,
                    now_ms,
                    back.as_ref().map(|(to, _)| *to),
                )
                .await?;
                if let Some((to, note)) = back
                    && to != state
                {
                    let note =
                        note.unwrap_or_else(|| format!("seen again by sweep {}", f.sweep_id));
                    insert_history(&mut tx, id, now_ms, COLLECTOR, Some(state), to, &note).await?;
                }
                continue;
            }
            // The same content and match come back under another name: the oldest stored
            // finding of it that may come back does, moved to the new path. (The query only
            // narrows to the states `seen_again` can bring back; it decides.)
            let earlier = sqlx::query(
                "SELECT id, state, path, gone_ms FROM findings WHERE host_id = $1 AND kind = $2 \
                 AND sha256 = $3 AND namespace = $4 AND rule = $5 \
                 AND state IN ('resolved', 'false_positive') ORDER BY id",
            )
            .bind(host_id)
            .bind(f.kind.as_str())
            .bind(&f.sha256)
            .bind(&f.namespace)
            .bind(&f.rule)
            .fetch_all(&mut *tx)
            .await?;
            let mut moved = false;
            for row in &earlier {
                let state = state_of(row)?;
                let gone: Option<i64> = row.try_get("gone_ms")?;
                let Some((to, note)) =
                    crate::findings::seen_again(state, gone.is_some(), allowed_note.as_deref())
                else {
                    continue;
                };
                let id: i64 = row.try_get("id")?;
                let old_path: String = row.try_get("path")?;
                sqlx::query(
                    "UPDATE findings SET path = $1, path_raw = $2, size = $3 WHERE id = $4",
                )
                .bind(&f.path)
                .bind(&f.path_raw)
                .bind(f.size as i64)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                update_sighting(&mut tx, self.dialect, id, f, now_ms, Some(to)).await?;
                let note = note.unwrap_or_else(|| {
                    format!(
                        "seen again by sweep {} at {} (was {old_path})",
                        f.sweep_id, f.path
                    )
                });
                insert_history(&mut tx, id, now_ms, COLLECTOR, Some(state), to, &note).await?;
                moved = true;
                break;
            }
            if moved {
                continue;
            }
            let (state, note) = crate::findings::first_found(&f.sweep_id, allowed_note.as_deref());
            let id: i64 = sqlx::query(
                "INSERT INTO findings (host_id, kind, path, path_raw, sha256, size, rule, namespace, ioc_comment, \
                     state, first_seen_ms, last_seen_ms, observed_at_ms, sweep_id, state_changed_ms, \
                     rules_version, iocs_version) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) RETURNING id",
            )
            .bind(host_id)
            .bind(f.kind.as_str())
            .bind(&f.path)
            .bind(&f.path_raw)
            .bind(&f.sha256)
            .bind(f.size as i64)
            .bind(&f.rule)
            .bind(&f.namespace)
            .bind(&f.ioc_comment)
            .bind(state.as_str())
            .bind(now_ms)
            .bind(now_ms)
            .bind(f.observed_at_ms)
            .bind(&f.sweep_id)
            .bind(now_ms)
            .bind(&f.rules_version)
            .bind(&f.iocs_version)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
            insert_history(&mut tx, id, now_ms, COLLECTOR, None, state, &note).await?;
        }
        sqlx::query(&format!(
            "UPDATE hosts SET last_seen_ms = {}(last_seen_ms, $1) WHERE host_id = $2",
            self.dialect.greatest()
        ))
        .bind(now_ms)
        .bind(host_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_findings(&self, filter: &FindingFilter) -> Result<Vec<Finding>, StoreError> {
        let mut query = SqlBuilder::new(format!(
            "SELECT {FINDING_COLUMNS} FROM findings WHERE 1 = 1"
        ));
        if let Some(host) = &filter.host_id {
            query.push(" AND host_id = ").push_bind(host);
        }
        if let Some(state) = filter.state {
            query.push(" AND state = ").push_bind(state.as_str());
        }
        if let Some(kind) = filter.kind {
            query.push(" AND kind = ").push_bind(kind.as_str());
        }
        if let Some(rule) = &filter.rule {
            query.push(" AND rule = ").push_bind(rule);
        }
        if let Some(sha256) = &filter.sha256 {
            query
                .push(" AND sha256 = ")
                .push_bind(sha256.to_ascii_lowercase());
        }
        query.push(" ORDER BY id");
        let rows = query.build()?.fetch_all(&self.pool).await?;
        rows.iter().map(finding_from_row).collect()
    }

    async fn finding(&self, id: i64) -> Result<Option<Finding>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {FINDING_COLUMNS} FROM findings WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(finding_from_row).transpose()
    }

    /// Applies an admin's change to a finding, with its history and audit entries, in one
    /// transaction; a change the lifecycle does not allow is refused with the reason. A
    /// quarantine or restore acts on the file: every finding on it moves with the one named.
    async fn change_finding(
        &self,
        id: i64,
        change: &AdminChange,
        actor: &str,
        note: &str,
        now_ms: i64,
    ) -> Result<Finding, StoreError> {
        let mut tx = self.write().await?;
        let finding = finding_in(&mut tx, id)
            .await?
            .ok_or(StoreError::NoFinding(id))?;
        if finding.kind == FindingKind::BotnetIp
            && matches!(change, AdminChange::Quarantine | AdminChange::Restore)
        {
            return Err(StoreError::Refused(format!(
                "finding {id} is a botnet list match on address {}, not a file: sweep the host to find what talks to it",
                finding.path
            )));
        }
        let to = admin_transition(finding.state, change, note, finding.quarantine_id.is_some())
            .map_err(StoreError::Refused)?;
        let (action, default_note) = match change {
            AdminChange::Quarantine => ("finding.quarantine", "quarantine requested"),
            AdminChange::Restore => ("finding.restore", "restore requested"),
            AdminChange::Mark(_) => ("finding.mark", ""),
        };
        let note = if note.trim().is_empty() {
            default_note
        } else {
            note.trim()
        };
        // The findings this change moves: the one named, and for a quarantine or restore every
        // other finding on its file that the lifecycle lets move the same way.
        let mut moved = vec![(finding.clone(), to)];
        if matches!(change, AdminChange::Quarantine | AdminChange::Restore) {
            for sibling in file_findings(&mut tx, &finding).await? {
                if sibling.id == finding.id {
                    continue;
                }
                let has_copy = sibling.quarantine_id.is_some();
                if let Ok(to) = admin_transition(sibling.state, change, note, has_copy) {
                    moved.push((sibling, to));
                }
            }
        }
        for (f, to) in &moved {
            if *change == AdminChange::Restore {
                sqlx::query(
                    "UPDATE findings SET restore_requested_ms = $1, remediation_error = NULL WHERE id = $2",
                )
                .bind(now_ms)
                .bind(f.id)
                .execute(&mut *tx)
                .await?;
            } else {
                sqlx::query(
                    "UPDATE findings SET state = $1, remediation_error = NULL, \
                         state_changed_ms = CASE WHEN state = $2 THEN state_changed_ms ELSE $3 END WHERE id = $4",
                )
                .bind(to.as_str())
                .bind(to.as_str())
                .bind(now_ms)
                .bind(f.id)
                .execute(&mut *tx)
                .await?;
            }
            insert_history(&mut tx, f.id, now_ms, actor, Some(f.state), *to, note).await?;
        }
        let target = if moved.len() > 1 {
            let ids: Vec<String> = moved.iter().map(|(f, _)| f.id.to_string()).collect();
            format!(
                "findings {} on {} ({})",
                ids.join(","),
                finding.host_id,
                finding.path
            )
        } else {
            format!("finding {id} on {}", finding.host_id)
        };
        insert_audit(
            &mut tx,
            &NewAuditEntry {
                at_ms: now_ms,
                actor: actor.to_owned(),
                action: action.to_owned(),
                target,
                detail: format!("{} -> {to}: {note}", finding.state),
            },
        )
        .await?;
        let changed = finding_in(&mut tx, id)
            .await?
            .ok_or(StoreError::NoFinding(id))?;
        tx.commit().await?;
        Ok(changed)
    }

    /// A finding and every change of its state, oldest first; `None` for no such finding.
    async fn finding_history(
        &self,
        id: i64,
    ) -> Result<Option<(Finding, Vec<FindingChange>)>, StoreError> {
        let Some(finding) = self.finding(id).await? else {
            return Ok(None);
        };
        let rows = sqlx::query(
            "SELECT at_ms, actor, from_state, to_state, note FROM finding_history \
             WHERE finding_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let changes = rows
            .iter()
            .map(|row| {
                let from: String = row.try_get("from_state")?;
                let to: String = row.try_get("to_state")?;
                Ok(FindingChange {
                    at_ms: row.try_get("at_ms")?,
                    actor: row.try_get("actor")?,
                    from_state: if from.is_empty() {
                        None
                    } else {
                        Some(parse_state(&from)?)
                    },
                    to_state: parse_state(&to)?,
                    note: row.try_get("note")?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Some((finding, changes)))
    }

    /// Quarantines and restores asked for on `host_id` that its agent has not answered yet,
    /// one order per file (every finding on a file moves with the answer).
    async fn remediation_orders(&self, host_id: &str) -> Result<RemediationOrders, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {FINDING_COLUMNS} FROM findings WHERE host_id = $1 AND \
                 (state = 'quarantine_requested' OR (quarantine_id IS NOT NULL AND restore_requested_ms IS NOT NULL)) \
             ORDER BY id"
        ))
        .bind(host_id)
        .fetch_all(&self.pool)
        .await?;
        let mut orders = RemediationOrders::default();
        for row in &rows {
            let finding = finding_from_row(row)?;
            let list = if finding.state == FindingState::QuarantineRequested {
                &mut orders.quarantine
            } else {
                &mut orders.restore
            };
            if !list.iter().any(|f| crate::findings::same_file(f, &finding)) {
                list.push(finding);
            }
        }
        Ok(orders)
    }

    /// Applies what an agent reports of a quarantine or restore to every finding on the file.
    /// Only the host's own findings change; a repeated report changes nothing more.
    async fn record_remediation(
        &self,
        host_id: &str,
        report: &RemediationReport,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        use crate::findings::RemediationOutcome as Outcome;
        let mut tx = self.write().await?;
        let row = sqlx::query(&format!(
            "SELECT {FINDING_COLUMNS} FROM findings WHERE id = $1 AND host_id = $2"
        ))
        .bind(report.finding_id)
        .bind(host_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tracing::warn!(host = %host_id, finding = report.finding_id, "remediation report for a finding not of this host; ignored");
            return Ok(());
        };
        let reported = finding_from_row(&row)?;
        let outcome = match (report.action, report.ok) {
            (RemediationAction::Quarantine, true) => Outcome::Quarantined,
            (RemediationAction::Quarantine, false) => Outcome::QuarantineRefused,
            (RemediationAction::Restore, true) => Outcome::Restored,
            (RemediationAction::Restore, false) => Outcome::RestoreRefused,
        };
        for finding in file_findings(&mut tx, &reported).await? {
            // What this finding's row becomes, or nothing when the report does not concern it
            // (any more): a repeat, or a finding not waiting for this answer.
            let (quarantine_id, error, clear_restore, note) = match outcome {
                Outcome::Quarantined => {
                    if finding.quarantine_id.as_deref() == Some(report.quarantine_id.as_str()) {
                        continue;
                    }
                    let note = format!(
                        "moved {} to quarantine entry {}",
                        report.path, report.quarantine_id
                    );
                    (Some(report.quarantine_id.clone()), None, false, note)
                }
                Outcome::QuarantineRefused => {
                    if finding.state != FindingState::QuarantineRequested {
                        continue;
                    }
                    let note = format!("quarantine refused: {}", report.reason);
                    (
                        finding.quarantine_id.clone(),
                        Some(report.reason.clone()),
                        false,
                        note,
                    )
                }
                Outcome::Restored => {
                    if finding.quarantine_id.as_deref() != Some(report.quarantine_id.as_str()) {
                        continue;
                    }
                    (None, None, true, format!("restored to {}", report.path))
                }
                Outcome::RestoreRefused => {
                    if finding.restore_requested_ms.is_none() {
                        continue;
                    }
                    let note = format!("restore refused: {}", report.reason);
                    (
                        finding.quarantine_id.clone(),
                        Some(report.reason.clone()),
                        true,
                        note,
                    )
                }
            };
            let to =
                crate::findings::after_remediation(finding.state, outcome).unwrap_or(finding.state);
            sqlx::query(
                "UPDATE findings SET state = $1, quarantine_id = $2, remediation_error = $3, \
                     restore_requested_ms = CASE WHEN $4 THEN NULL ELSE restore_requested_ms END, \
                     state_changed_ms = CASE WHEN state = $5 THEN state_changed_ms ELSE $6 END WHERE id = $7",
            )
            .bind(to.as_str())
            .bind(&quarantine_id)
            .bind(&error)
            .bind(clear_restore)
            .bind(to.as_str())
            .bind(now_ms)
            .bind(finding.id)
            .execute(&mut *tx)
            .await?;
            insert_history(
                &mut tx,
                finding.id,
                now_ms,
                AGENT,
                Some(finding.state),
                to,
                &note,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl SweepStore for SqlStore {
    /// Stores a sweep's summary and, for a sweep carried out whole, resolves the host's findings
    /// it no longer found (the sweep's verdict that the cleanup worked) and makes it the
    /// host's latest complete sweep, which its status rests on.
    async fn record_sweep_report(
        &self,
        host_id: &str,
        report: &SweepReport,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        // The sweep's start on the collector's clock (its first progress report), which the
        // findings' times are on; the agent's own clock only where no progress arrived.
        let first: Option<i64> = sqlx::query_scalar(
            "SELECT first_received_ms FROM sweep_progress WHERE host_id = $1 AND sweep_id = $2",
        )
        .bind(host_id)
        .bind(&report.sweep_id)
        .fetch_optional(&mut *tx)
        .await?;
        let started_ms = first.filter(|ms| *ms > 0).unwrap_or(report.started_at_ms);
        let sets = &report.sets;
        sqlx::query(
            "INSERT INTO sweep_reports (host_id, sweep_id, started_at_ms, finished_at_ms, files, bytes, findings, \
                 errors, roots, received_ms, failures, failures_truncated, failure, rules_version, iocs_version, \
                 rule_count, ioc_count, started_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
             ON CONFLICT (host_id, sweep_id) DO UPDATE SET started_at_ms = excluded.started_at_ms, \
                 finished_at_ms = excluded.finished_at_ms, files = excluded.files, bytes = excluded.bytes, \
                 findings = excluded.findings, errors = excluded.errors, roots = excluded.roots, \
                 failures = excluded.failures, failures_truncated = excluded.failures_truncated, \
                 failure = excluded.failure, rules_version = excluded.rules_version, \
                 iocs_version = excluded.iocs_version, rule_count = excluded.rule_count, \
                 ioc_count = excluded.ioc_count, started_ms = excluded.started_ms",
        )
        .bind(host_id)
        .bind(&report.sweep_id)
        .bind(report.started_at_ms)
        .bind(report.finished_at_ms)
        .bind(report.files as i64)
        .bind(report.bytes as i64)
        .bind(report.findings as i64)
        .bind(serde_json::to_string(&report.errors).expect("a string map serializes"))
        .bind(serde_json::to_string(&report.roots).expect("strings serialize"))
        .bind(now_ms)
        .bind(serde_json::to_string(&report.failures).expect("failures serialize"))
        .bind(i64::from(report.failures_truncated))
        .bind(&report.failure)
        .bind(&sets.rules_version)
        .bind(&sets.iocs_version)
        .bind(sets.rule_count.map(|n| n as i64))
        .bind(sets.ioc_count.map(|n| n as i64))
        .bind(started_ms)
        .execute(&mut *tx)
        .await?;
        if report.failure.is_empty() {
            verify_findings(&mut tx, host_id, report, started_ms, now_ms).await?;
        }
        if sweep_is_complete(&report.failure, report.failures_truncated) {
            sqlx::query(
                "UPDATE hosts SET complete_sweep_id = $1, complete_started_ms = $2 \
                 WHERE host_id = $3 AND (complete_started_ms IS NULL OR complete_started_ms <= $4)",
            )
            .bind(&report.sweep_id)
            .bind(started_ms)
            .bind(host_id)
            .bind(started_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn record_sweep_progress(
        &self,
        host_id: &str,
        p: &SweepProgress,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        // A resent (older) report must not move progress backwards.
        sqlx::query(
            "INSERT INTO sweep_progress (host_id, sweep_id, started_at_ms, files_done, bytes_done, files_estimate, \
                 bytes_estimate, findings, errors, updated_ms, first_received_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (host_id, sweep_id) DO UPDATE SET started_at_ms = excluded.started_at_ms, \
                 files_done = excluded.files_done, bytes_done = excluded.bytes_done, \
                 files_estimate = excluded.files_estimate, bytes_estimate = excluded.bytes_estimate, \
                 findings = excluded.findings, errors = excluded.errors, updated_ms = excluded.updated_ms \
             WHERE excluded.files_done >= sweep_progress.files_done",
        )
        .bind(host_id)
        .bind(&p.sweep_id)
        .bind(p.started_at_ms)
        .bind(p.files_done as i64)
        .bind(p.bytes_done as i64)
        .bind(p.files_estimate as i64)
        .bind(p.bytes_estimate as i64)
        .bind(p.findings as i64)
        .bind(serde_json::to_string(&p.errors).expect("a string map serializes"))
        .bind(now_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores a sweep, its targets and the audit entry for it in one transaction. Hosts the
    /// collector has never seen are refused, all of them named.
    async fn create_sweep(
        &self,
        sweep: &NewSweep,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        // Looked up a chunk at a time: one query per host made a 10,000-host sweep wait for
        // 10,000 round trips.
        let mut known = std::collections::HashSet::new();
        for chunk in sweep.hosts.chunks(ROWS_PER_INSERT) {
            let mut query = SqlBuilder::new("SELECT host_id FROM hosts WHERE host_id IN ");
            query.push_list(chunk);
            for row in query.build()?.fetch_all(&mut *tx).await? {
                known.insert(row.try_get::<String, _>("host_id")?);
            }
        }
        let unknown: Vec<String> = sweep
            .hosts
            .iter()
            .filter(|h| !known.contains(*h))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(StoreError::UnknownHosts(unknown));
        }
        sqlx::query(
            "INSERT INTO sweeps (sweep_id, created_ms, created_by, \"full\", splay_seconds, deadline_ms, origin) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&sweep.id)
        .bind(sweep.created_ms)
        .bind(&sweep.created_by)
        .bind(i64::from(sweep.full))
        .bind(i64::from(sweep.splay_seconds))
        .bind(sweep.deadline_ms)
        .bind(if sweep.after_bundle { "bundle" } else { "admin" })
        .execute(&mut *tx)
        .await?;
        for chunk in sweep.hosts.chunks(ROWS_PER_INSERT) {
            let mut insert = SqlBuilder::new("INSERT INTO sweep_targets (sweep_id, host_id)");
            insert.push_values(chunk, |row, host| {
                row.push_bind(&sweep.id).push_bind(host);
            });
            insert.push(" ON CONFLICT DO NOTHING");
            insert.build()?.execute(&mut *tx).await?;
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Notes that the sweep's order was put on these hosts' streams (the first time counts).
    async fn mark_delivered(
        &self,
        sweep_id: &str,
        hosts: &[String],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        for chunk in hosts.chunks(ROWS_PER_INSERT) {
            let mut update = SqlBuilder::new("UPDATE sweep_targets SET delivered_ms = ");
            update
                .push_bind(now_ms)
                .push(" WHERE delivered_ms IS NULL AND sweep_id = ")
                .push_bind(sweep_id)
                .push(" AND host_id IN ");
            update.push_list(chunk);
            update.build()?.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// What a connecting agent is to be told: sweeps it has not reported and may still start,
    /// and cancelled sweeps it was sent and has not reported.
    async fn sweep_orders(&self, host_id: &str, now_ms: i64) -> Result<SweepOrders, StoreError> {
        let rows = sqlx::query(
            "SELECT s.sweep_id, s.\"full\", s.splay_seconds, s.deadline_ms, s.cancelled_ms, t.delivered_ms, s.origin \
             FROM sweep_targets t JOIN sweeps s ON s.sweep_id = t.sweep_id \
             WHERE t.host_id = $1 AND (s.deadline_ms = 0 OR s.deadline_ms > $2) \
               AND NOT EXISTS (SELECT 1 FROM sweep_reports r WHERE r.host_id = t.host_id AND r.sweep_id = t.sweep_id) \
             ORDER BY s.created_ms",
        )
        .bind(host_id)
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        let mut orders = SweepOrders::default();
        for row in rows {
            let sweep_id: String = row.try_get("sweep_id")?;
            let cancelled: Option<i64> = row.try_get("cancelled_ms")?;
            let delivered: Option<i64> = row.try_get("delivered_ms")?;
            let after_bundle = row.try_get::<String, _>("origin")? == "bundle";
            match (cancelled, delivered) {
                (None, _) if after_bundle => {}
                (None, _) => orders.start.push(SweepOrder {
                    sweep_id,
                    full: row.try_get::<i64, _>("full")? != 0,
                    splay_seconds: row.try_get::<i64, _>("splay_seconds")? as u32,
                    deadline_ms: row.try_get("deadline_ms")?,
                }),
                (Some(_), Some(_)) => orders.cancel.push(sweep_id),
                (Some(_), None) => {}
            }
        }
        Ok(orders)
    }

    async fn sweep(&self, sweep_id: &str) -> Result<Option<SweepRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {SWEEP_COLUMNS} FROM sweeps WHERE sweep_id = $1"
        ))
        .bind(sweep_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut sweep = sweep_from_row(&row)?;
        sweep.targets = self.sweep_targets(sweep_id).await?;
        Ok(Some(sweep))
    }

    /// Every sweep, newest first.
    async fn sweeps(&self) -> Result<Vec<SweepRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {SWEEP_COLUMNS} FROM sweeps ORDER BY created_ms DESC, sweep_id DESC"
        ))
        .fetch_all(&self.pool)
        .await?;
        let mut sweeps = Vec::with_capacity(rows.len());
        for row in rows {
            let mut sweep = sweep_from_row(&row)?;
            sweep.targets = self.sweep_targets(&sweep.id).await?;
            sweeps.push(sweep);
        }
        Ok(sweeps)
    }

    /// Marks the sweep cancelled (once: a second cancel changes nothing) with its audit entry.
    /// `false`: there is no such sweep.
    async fn cancel_sweep(
        &self,
        sweep_id: &str,
        audit: &NewAuditEntry,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let found = sqlx::query(
            "UPDATE sweeps SET cancelled_ms = coalesce(cancelled_ms, $1), \
                 cancelled_by = coalesce(cancelled_by, $2) WHERE sweep_id = $3",
        )
        .bind(audit.at_ms)
        .bind(&audit.actor)
        .bind(sweep_id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if found {
            insert_audit(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(found)
    }
}

#[async_trait]
impl InventoryStore for SqlStore {
    /// Replaces a host's package list with `packages` (a complete inventory), recording each
    /// version that appeared, changed or left in the package history. Idempotent: the same
    /// list again changes nothing.
    async fn record_packages(
        &self,
        host_id: &str,
        packages: &[InstalledPackage],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        replace_packages(&mut tx, host_id, packages, None, now_ms).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores an inventory in one transaction: the OS facts replace the host's previous ones,
    /// each complete list replaces the stored one (with its changes in the history), and a
    /// list the agent could not collect whole leaves the stored one as it was. A delta applies
    /// only onto the lists it was made against; otherwise only the OS facts are stored and the
    /// result is `false`: the agent must send a complete inventory.
    async fn record_inventory(
        &self,
        host_id: &str,
        report: &InventoryReport,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let held: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT lists_digest FROM host_inventory WHERE host_id = $1")
                .bind(host_id)
                .fetch_optional(&mut *tx)
                .await?;
        let applies = match &report.delta {
            Some(delta) => held.flatten().as_deref() == Some(delta.base_digest.as_slice()),
            None => true,
        };
        let os = &report.os;
        let gaps = serde_json::to_string(&report.gaps)
            .map_err(|e| StoreError::Corrupt(format!("{host_id}: inventory gaps: {e}")))?;
        sqlx::query(
            "INSERT INTO host_inventory (host_id, collected_ms, received_ms, family, os_id, version_id, \
                 pretty_name, kernel, arch, boot_time, last_package_change, product_name, edition, \
                 display_version, build, installation_type, partial) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
             ON CONFLICT (host_id) DO UPDATE SET collected_ms = excluded.collected_ms, \
                 received_ms = excluded.received_ms, family = excluded.family, os_id = excluded.os_id, \
                 version_id = excluded.version_id, pretty_name = excluded.pretty_name, \
                 kernel = excluded.kernel, arch = excluded.arch, boot_time = excluded.boot_time, \
                 last_package_change = excluded.last_package_change, \
                 product_name = excluded.product_name, edition = excluded.edition, \
                 display_version = excluded.display_version, build = excluded.build, \
                 installation_type = excluded.installation_type, partial = excluded.partial",
        )
        .bind(host_id)
        .bind(report.collected_ms)
        .bind(now_ms)
        .bind(&os.family)
        .bind(&os.id)
        .bind(&os.version_id)
        .bind(&os.pretty_name)
        .bind(&os.kernel)
        .bind(&os.arch)
        .bind(os.boot_time)
        .bind(os.last_package_change)
        .bind(&os.product_name)
        .bind(&os.edition)
        .bind(&os.display_version)
        .bind(&os.build)
        .bind(&os.installation_type)
        .bind(gaps)
        .execute(&mut *tx)
        .await?;
        if applies {
            let delta = report.delta.as_ref();
            if let Some(packages) = &report.packages {
                let removed = delta.map(|d| d.removed_packages.as_slice());
                replace_packages(&mut tx, host_id, packages, removed, now_ms).await?;
            }
            if let Some(hotfixes) = &report.hotfixes {
                let removed = delta.map(|d| d.removed_hotfixes.as_slice());
                replace_hotfixes(&mut tx, host_id, hotfixes, removed, now_ms).await?;
            }
            if let Some(programs) = &report.programs {
                let removed = delta.map(|d| d.removed_programs.as_slice());
                replace_programs(&mut tx, host_id, programs, removed, now_ms).await?;
            }
        }
        // Lists that did not change as the agent's digest says are of unknown digest.
        let digest = if applies { report.digest.clone() } else { None };
        sqlx::query("UPDATE host_inventory SET lists_digest = $1 WHERE host_id = $2")
            .bind(digest)
            .bind(host_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(applies)
    }

    /// Replaces the host's socket list with `report`'s, unless a newer list is stored.
    async fn record_connections(
        &self,
        host_id: &str,
        report: &ConnectionReport,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        // A resent older report must not replace a newer list.
        let newer: Option<i64> = sqlx::query_scalar(
            "SELECT collected_ms FROM connection_reports WHERE host_id = $1 AND collected_ms > $2",
        )
        .bind(host_id)
        .bind(report.collected_ms)
        .fetch_optional(&mut *tx)
        .await?;
        if newer.is_some() {
            return Ok(());
        }
        sqlx::query("DELETE FROM connections WHERE host_id = $1")
            .bind(host_id)
            .execute(&mut *tx)
            .await?;
        for chunk in report.connections.chunks(ROWS_PER_INSERT) {
            let mut insert = SqlBuilder::new(
                "INSERT INTO connections (host_id, proto, local_addr, local_port, remote_addr, \
                     remote_port, state, pid, process) ",
            );
            insert.push_values(chunk, |row, c| {
                row.push_bind(host_id)
                    .push_bind(&c.proto)
                    .push_bind(&c.local_addr)
                    .push_bind(i64::from(c.local_port))
                    .push_bind(&c.remote_addr)
                    .push_bind(i64::from(c.remote_port))
                    .push_bind(&c.state)
                    .push_bind(c.pid.map(i64::from))
                    .push_bind(&c.process);
            });
            insert.build()?.execute(&mut *tx).await?;
        }
        sqlx::query(
            "INSERT INTO connection_reports (host_id, collected_ms, received_ms, count, partial_reason) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (host_id) DO UPDATE SET \
                 collected_ms = excluded.collected_ms, received_ms = excluded.received_ms, \
                 count = excluded.count, partial_reason = excluded.partial_reason",
        )
        .bind(host_id)
        .bind(report.collected_ms)
        .bind(now_ms)
        .bind(report.connections.len() as i64)
        .bind(&report.partial_reason)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sockets of one host or of all, optionally only those whose remote address is in a
    /// network.
    async fn list_connections(
        &self,
        filter: &ConnectionFilter,
    ) -> Result<Vec<HostConnection>, StoreError> {
        let mut query = SqlBuilder::new(
            "SELECT c.host_id, c.proto, c.local_addr, c.local_port, c.remote_addr, \
                c.remote_port, c.state, c.pid, c.process, r.collected_ms \
             FROM connections c JOIN connection_reports r ON r.host_id = c.host_id",
        );
        if let Some(host) = &filter.host_id {
            query.push(" WHERE c.host_id = ").push_bind(host);
        }
        query.push(
            " ORDER BY c.host_id, c.proto, c.local_addr, c.local_port, c.remote_addr, c.remote_port",
        );
        let rows = query.build()?.fetch_all(&self.pool).await?;
        let mut out = Vec::new();
        for row in rows {
            let connection = connection_from_row(&row)?;
            if let Some(net) = &filter.remote {
                // A remote that is no address (a listening socket's `*`) never matches.
                let in_net = connection
                    .remote_addr
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| net.contains(&ip));
                if !in_net {
                    continue;
                }
            }
            out.push(HostConnection {
                host_id: row.try_get("host_id")?,
                connection,
                collected_ms: row.try_get("collected_ms")?,
            });
        }
        Ok(out)
    }

    /// A host's installed updates, by KB.
    async fn list_hotfixes(&self, host_id: &str) -> Result<Vec<Hotfix>, StoreError> {
        let rows = sqlx::query(
            "SELECT kb, title, installed_on FROM hotfixes WHERE host_id = $1 ORDER BY kb",
        )
        .bind(host_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let installed_on: String = row.try_get("installed_on")?;
                Ok(Hotfix {
                    kb: row.try_get("kb")?,
                    title: row.try_get("title")?,
                    installed_on: Some(installed_on).filter(|s| !s.is_empty()),
                })
            })
            .collect()
    }

    /// A host's installed programs, by name.
    async fn list_programs(&self, host_id: &str) -> Result<Vec<Program>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, version, publisher FROM programs WHERE host_id = $1 ORDER BY name, version",
        )
        .bind(host_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(Program {
                    name: row.try_get("name")?,
                    version: row.try_get("version")?,
                    publisher: row.try_get("publisher")?,
                })
            })
            .collect()
    }

    /// A host's installed packages, by name.
    async fn list_packages(&self, host_id: &str) -> Result<Vec<StoredPackage>, StoreError> {
        let rows = sqlx::query(
            "SELECT host_id, name, arch, version, source, installed_ms, manager FROM packages \
             WHERE host_id = $1 ORDER BY name, arch",
        )
        .bind(host_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| StoredPackage {
                host_id: row.get("host_id"),
                package: InstalledPackage {
                    name: row.get("name"),
                    version: row.get("version"),
                    arch: row.get("arch"),
                    source: row.get("source"),
                    manager: Scheme::parse(row.get("manager")),
                },
                installed_ms: row.get("installed_ms"),
            })
            .collect())
    }

    /// A host's package changes, oldest first.
    async fn package_history(&self, host_id: &str) -> Result<Vec<PackageChange>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT host_id, name, arch, old_version, new_version, changed_ms FROM package_history \
             WHERE host_id = $1 ORDER BY changed_ms, {}",
            self.dialect.insertion_order()
        ))
        .bind(host_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| PackageChange {
                host_id: row.get("host_id"),
                name: row.get("name"),
                arch: row.get("arch"),
                old_version: row.get("old_version"),
                new_version: row.get("new_version"),
                changed_ms: row.get("changed_ms"),
            })
            .collect())
    }
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn record_audit(&self, entry: &NewAuditEntry) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        insert_audit(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The audit log, oldest first.
    async fn list_audit(&self) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at_ms, actor, action, target, detail FROM audit_log ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: row.try_get("id")?,
                    at_ms: row.try_get("at_ms")?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    target: row.try_get("target")?,
                    detail: row.try_get("detail")?,
                })
            })
            .collect()
    }
}

const SWEEP_COLUMNS: &str = "sweep_id, created_ms, created_by, \"full\", splay_seconds, deadline_ms, cancelled_ms, cancelled_by";

/// A replica id: the host name and random bits (readable in `hosts` rows, unique per start).
fn new_replica_id() -> std::sync::Arc<str> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    format!("{host}-{:08x}", rand::random::<u32>()).into()
}

/// The URL sqlx's Any driver opens an SQLite file by: the absolute path, percent-encoded, and
/// created if missing.
fn sqlite_url(file: &Path) -> String {
    let mut url = String::from("sqlite://");
    for byte in file.as_os_str().as_encoded_bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'/' | b'.' | b'_' | b'-' => {
                url.push(*byte as char)
            }
            _ => url.push_str(&format!("%{byte:02X}")),
        }
    }
    url.push_str("?mode=rwc");
    url
}

/// A socket of the `connections` table (columns by name).
pub(super) fn connection_from_row(row: &AnyRow) -> Result<NetConnection, StoreError> {
    Ok(NetConnection {
        proto: row.try_get("proto")?,
        local_addr: row.try_get("local_addr")?,
        local_port: narrow(row, "local_port")?,
        remote_addr: row.try_get("remote_addr")?,
        remote_port: narrow(row, "remote_port")?,
        state: row.try_get("state")?,
        pid: row
            .try_get::<Option<i64>, _>("pid")?
            .map(|pid| {
                u32::try_from(pid)
                    .map_err(|_| StoreError::Corrupt(format!("connections.pid {pid}")))
            })
            .transpose()?,
        process: row.try_get("process")?,
    })
}

/// An integer column read into a narrower type: both engines store every integer as a 64-bit
/// one; a value out of range is corruption, never truncated.
pub(super) fn narrow<T: TryFrom<i64>>(row: &AnyRow, column: &str) -> Result<T, StoreError> {
    let value: i64 = row.try_get(column)?;
    T::try_from(value).map_err(|_| StoreError::Corrupt(format!("{column} {value} is out of range")))
}

async fn sqlite_pragmas(conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
    // WAL: readers never wait for the writer; a writer waits up to 10 s for another before it
    // fails.
    for pragma in [
        "PRAGMA journal_mode = WAL",
        "PRAGMA synchronous = NORMAL",
        "PRAGMA foreign_keys = ON",
        "PRAGMA busy_timeout = 10000",
    ] {
        sqlx::Executor::execute(&mut *conn, pragma).await?;
    }
    Ok(())
}

fn sweep_from_row(row: &AnyRow) -> Result<SweepRecord, StoreError> {
    let cancelled_ms: Option<i64> = row.try_get("cancelled_ms")?;
    let cancelled_by: Option<String> = row.try_get("cancelled_by")?;
    Ok(SweepRecord {
        id: row.try_get("sweep_id")?,
        created_ms: row.try_get("created_ms")?,
        created_by: row.try_get("created_by")?,
        full: row.try_get::<i64, _>("full")? != 0,
        splay_seconds: row.try_get::<i64, _>("splay_seconds")? as u32,
        deadline_ms: row.try_get("deadline_ms")?,
        cancelled: cancelled_ms.map(|at| (at, cancelled_by.unwrap_or_default())),
        targets: Vec::new(),
    })
}

/// The sum of a stored `{kind: count}` error object; `None` (no row) counts as none.
fn error_total(errors: Option<String>) -> Result<u64, StoreError> {
    let Some(errors) = errors else { return Ok(0) };
    let counts: std::collections::BTreeMap<String, u64> = serde_json::from_str(&errors)
        .map_err(|e| StoreError::Corrupt(format!("sweep error counts {errors:?}: {e}")))?;
    Ok(counts.values().sum())
}

async fn finding_in(tx: &mut Tx<'_>, id: i64) -> Result<Option<Finding>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {FINDING_COLUMNS} FROM findings WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(finding_from_row).transpose()
}

/// Every finding on the file `finding` is on (itself included), oldest first.
async fn file_findings(tx: &mut Tx<'_>, finding: &Finding) -> Result<Vec<Finding>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {FINDING_COLUMNS} FROM findings WHERE host_id = $1 AND path = $2 AND sha256 = $3 \
         AND kind <> 'botnet_ip' ORDER BY id"
    ))
    .bind(&finding.host_id)
    .bind(&finding.path)
    .bind(&finding.sha256)
    .fetch_all(&mut **tx)
    .await?;
    let mut found = Vec::with_capacity(rows.len());
    for row in &rows {
        let f = finding_from_row(row)?;
        if crate::findings::same_file(&f, finding) {
            found.push(f);
        }
    }
    Ok(found)
}

pub(super) async fn insert_audit(tx: &mut Tx<'_>, entry: &NewAuditEntry) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (at_ms, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(entry.at_ms)
    .bind(&entry.actor)
    .bind(&entry.action)
    .bind(&entry.target)
    .bind(&entry.detail)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Who the history names for changes the collector makes (a sweep's verdict, a sighting) and
/// for what an agent reports.
pub(super) const COLLECTOR: &str = "collector";
const AGENT: &str = "agent";

pub(super) fn parse_state(text: &str) -> Result<FindingState, StoreError> {
    FindingState::parse(text).ok_or_else(|| StoreError::Corrupt(format!("finding state {text:?}")))
}

fn state_of(row: &AnyRow) -> Result<FindingState, StoreError> {
    parse_state(&row.try_get::<String, _>("state")?)
}

/// Notes that finding `id` was seen again by a sweep; `reopen` also reopens it.
async fn update_sighting(
    tx: &mut Tx<'_>,
    dialect: Dialect,
    id: i64,
    f: &NewFinding,
    now_ms: i64,
    reopen_as: Option<FindingState>,
) -> Result<(), StoreError> {
    let greatest = dialect.greatest();
    let sql = format!(
        "UPDATE findings SET last_seen_ms = {greatest}(last_seen_ms, $1), \
             observed_at_ms = {greatest}(observed_at_ms, $2), ioc_comment = $3, sweep_id = $4, \
             gone_ms = NULL, rules_version = $5, iocs_version = $6{} WHERE id = {}",
        if reopen_as.is_some() {
            ", state = $7, quarantine_id = NULL, state_changed_ms = $8"
        } else {
            ""
        },
        if reopen_as.is_some() { "$9" } else { "$7" },
    );
    let mut query = sqlx::query(&sql)
        .bind(now_ms)
        .bind(f.observed_at_ms)
        .bind(&f.ioc_comment)
        .bind(&f.sweep_id)
        .bind(&f.rules_version)
        .bind(&f.iocs_version);
    if let Some(state) = reopen_as {
        query = query.bind(state.as_str()).bind(now_ms);
    }
    query.bind(id).execute(&mut **tx).await?;
    Ok(())
}

pub(super) async fn insert_history(
    tx: &mut Tx<'_>,
    finding_id: i64,
    at_ms: i64,
    actor: &str,
    from: Option<FindingState>,
    to: FindingState,
    note: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO finding_history (finding_id, at_ms, actor, from_state, to_state, note) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(finding_id)
    .bind(at_ms)
    .bind(actor)
    .bind(from.map_or("", FindingState::as_str))
    .bind(to.as_str())
    .bind(note)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A sweep carried out whole is the verdict on the host's findings it did not report: each one
/// under the sweep's roots, not among the paths it failed to read, and last seen (and last
/// changed) before the sweep started, is resolved; a false positive is only marked gone, so
/// that it reopens if it comes back. A sweep that could not list all its failures proves
/// nothing about the paths it left out, so it resolves nothing.
async fn verify_findings(
    tx: &mut Tx<'_>,
    host_id: &str,
    report: &SweepReport,
    started: i64,
    now_ms: i64,
) -> Result<(), StoreError> {
    if report.failures_truncated {
        return Ok(());
    }
    let failed: std::collections::HashSet<&str> =
        report.failures.iter().map(|f| f.path.as_str()).collect();
    // What the sets the sweep ran with hold, per kind, looked up once when needed.
    let mut swept_members: std::collections::HashMap<
        &str,
        Option<std::collections::HashSet<String>>,
    > = Default::default();
    let rows = sqlx::query(
        "SELECT id, state, path, last_seen_ms, state_changed_ms, kind, namespace, rule, sha256, \
             rules_version, iocs_version FROM findings \
         WHERE host_id = $1 AND sweep_id <> $2 AND gone_ms IS NULL AND kind <> 'botnet_ip' \
           AND state IN ('open', 'reopened', 'quarantine_requested', 'quarantined', 'false_positive')",
    )
    .bind(host_id)
    .bind(&report.sweep_id)
    .fetch_all(&mut **tx)
    .await?;
    // (id, state, path, sha256, whether the sweep's silence proves it gone).
    let mut candidates = Vec::new();
    for row in rows {
        let id: i64 = row.try_get("id")?;
        let state = state_of(&row)?;
        let path: String = row.try_get("path")?;
        let last_seen: i64 = row.try_get("last_seen_ms")?;
        let changed: i64 = row.try_get("state_changed_ms")?;
        if last_seen >= started
            || changed >= started
            || failed.contains(path.as_str())
            || !under_roots(&path, &report.roots)
        {
            continue;
        }
        let sha256: String = row.try_get("sha256")?;
        let hash_ioc = row.try_get::<String, _>("kind")? == FindingKind::HashIoc.as_str();
        let (found_with, swept_with, bundle_kind) = if hash_ioc {
            let found: String = row.try_get("iocs_version")?;
            (
                found,
                &report.sets.iocs_version,
                hygiene_proto::bundle::IOCS,
            )
        } else {
            let found: String = row.try_get("rules_version")?;
            (
                found,
                &report.sets.rules_version,
                hygiene_proto::bundle::RULES,
            )
        };
        let key = if hash_ioc {
            sha256.clone()
        } else {
            format!(
                "{}:{}",
                row.try_get::<String, _>("namespace")?,
                row.try_get::<String, _>("rule")?
            )
        };
        let members = if found_with.is_empty() || found_with == *swept_with {
            None
        } else {
            if !swept_members.contains_key(bundle_kind) {
                let members = super::sql_intel::bundle_members(tx, bundle_kind, swept_with).await?;
                swept_members.insert(bundle_kind, members);
            }
            swept_members[bundle_kind].as_ref()
        };
        let proven = crate::findings::silence_proves_gone(&crate::findings::SilenceCheck {
            hash_ioc,
            key: &key,
            found_with: &found_with,
            swept_with,
            swept_members: members,
        });
        candidates.push((id, state, path, sha256, proven));
    }
    // A file one finding is proven gone from (those bytes are not at that path any more)
    // takes every other finding on it along, whatever found them.
    let gone: std::collections::HashSet<(String, String)> = candidates
        .iter()
        .filter(|c| c.4)
        .map(|c| (c.2.clone(), c.3.clone()))
        .collect();
    for (id, state, path, sha256, proven) in candidates {
        let note = if proven {
            format!(
                "sweep {} (finished {}) no longer finds it",
                report.sweep_id,
                hygiene_proto::format_ms(report.finished_at_ms)
            )
        } else if gone.contains(&(path, sha256)) {
            format!(
                "sweep {} (finished {}) no longer finds the file with these bytes (its rule is not in the set the sweep ran with, but another finding on the file is gone)",
                report.sweep_id,
                hygiene_proto::format_ms(report.finished_at_ms)
            )
        } else {
            // The set that looked no longer holds what found it: its silence says nothing.
            continue;
        };
        if state == FindingState::FalsePositive {
            sqlx::query("UPDATE findings SET gone_ms = $1 WHERE id = $2")
                .bind(now_ms)
                .bind(id)
                .execute(&mut **tx)
                .await?;
            continue;
        }
        sqlx::query(
            "UPDATE findings SET state = 'resolved', state_changed_ms = $1, remediation_error = NULL, \
                 restore_requested_ms = NULL WHERE id = $2",
        )
        .bind(now_ms)
        .bind(id)
        .execute(&mut **tx)
        .await?;
        insert_history(
            tx,
            id,
            now_ms,
            COLLECTOR,
            Some(state),
            FindingState::Resolved,
            &note,
        )
        .await?;
    }
    Ok(())
}

/// Replaces a host's package list within `tx`, recording what appeared, changed or left. With
/// `removed` (a delta), `packages` are only those that appeared or changed, and only `removed`
/// (name, arch) leave.
async fn replace_packages(
    tx: &mut Tx<'_>,
    host_id: &str,
    packages: &[InstalledPackage],
    removed: Option<&[(String, String)]>,
    now_ms: i64,
) -> Result<(), StoreError> {
    let rows = sqlx::query("SELECT name, arch, version, manager FROM packages WHERE host_id = $1")
        .bind(host_id)
        .fetch_all(&mut **tx)
        .await?;
    let stored: std::collections::HashMap<(String, String), (String, String)> = rows
        .into_iter()
        .map(|row| {
            let key = (row.get("name"), row.get("arch"));
            (key, (row.get("version"), row.get("manager")))
        })
        .collect();
    let changes = crate::listdiff::diff(
        stored,
        packages,
        |p| (p.name.clone(), p.arch.clone()),
        |(version, _), p| *version == p.version,
        removed,
    );
    // (package, old version) for what appeared or changed; those whose manager only became
    // known are updated in place, without history.
    let upserts: Vec<(&InstalledPackage, Option<String>)> = changes
        .upserts
        .into_iter()
        .map(|(p, old)| (p, old.map(|(version, _)| version)))
        .collect();
    let manager_only: Vec<&InstalledPackage> = changes
        .unchanged
        .into_iter()
        .filter(|(p, (_, manager))| *manager != scheme_name(p.manager))
        .map(|(p, _)| p)
        .collect();
    let gone = changes.gone;
    // Many rows per statement: a first inventory of 5,000 packages is 5,000 rows here and as
    // many in the history, and one statement each costs most of the time.
    for chunk in upserts.chunks(ROWS_PER_INSERT) {
        let mut insert = SqlBuilder::new(
            "INSERT INTO packages (host_id, name, arch, version, source, installed_ms, manager) ",
        );
        insert.push_values(chunk, |row, (p, _)| {
            row.push_bind(host_id)
                .push_bind(&p.name)
                .push_bind(&p.arch)
                .push_bind(&p.version)
                .push_bind(&p.source)
                .push_bind(now_ms)
                .push_bind(scheme_name(p.manager));
        });
        insert.push(
            " ON CONFLICT (host_id, name, arch) DO UPDATE SET version = excluded.version, \
             source = excluded.source, installed_ms = excluded.installed_ms, \
             manager = excluded.manager",
        );
        insert.build()?.execute(&mut **tx).await?;
    }
    for p in manager_only {
        sqlx::query(
            "UPDATE packages SET manager = $1 WHERE host_id = $2 AND name = $3 AND arch = $4",
        )
        .bind(scheme_name(p.manager))
        .bind(host_id)
        .bind(&p.name)
        .bind(&p.arch)
        .execute(&mut **tx)
        .await?;
    }
    for ((name, arch), _) in &gone {
        sqlx::query("DELETE FROM packages WHERE host_id = $1 AND name = $2 AND arch = $3")
            .bind(host_id)
            .bind(name)
            .bind(arch)
            .execute(&mut **tx)
            .await?;
    }
    let history: Vec<(&str, &str, Option<&str>, Option<&str>)> = upserts
        .iter()
        .map(|(p, old)| {
            (
                p.name.as_str(),
                p.arch.as_str(),
                old.as_deref(),
                Some(p.version.as_str()),
            )
        })
        .chain(gone.iter().map(|((name, arch), (version, _))| {
            (name.as_str(), arch.as_str(), Some(version.as_str()), None)
        }))
        .collect();
    for chunk in history.chunks(ROWS_PER_INSERT) {
        let mut insert = SqlBuilder::new(
            "INSERT INTO package_history (host_id, name, arch, old_version, new_version, changed_ms) ",
        );
        insert.push_values(chunk, |row, (name, arch, old, new)| {
            row.push_bind(host_id)
                .push_bind(*name)
                .push_bind(*arch)
                .push_bind(*old)
                .push_bind(*new)
                .push_bind(now_ms);
        });
        insert.build()?.execute(&mut **tx).await?;
    }
    Ok(())
}

/// The stored manager column: the scheme's name, or '' when the agent did not say.
fn scheme_name(scheme: Option<Scheme>) -> &'static str {
    scheme.map_or("", Scheme::as_str)
}

/// Replaces a host's installed updates within `tx`, recording which KBs appeared or left. With
/// `removed` (a delta), only those KBs leave.
async fn replace_hotfixes(
    tx: &mut Tx<'_>,
    host_id: &str,
    hotfixes: &[Hotfix],
    removed: Option<&[String]>,
    now_ms: i64,
) -> Result<(), StoreError> {
    let rows = sqlx::query("SELECT kb FROM hotfixes WHERE host_id = $1")
        .bind(host_id)
        .fetch_all(&mut **tx)
        .await?;
    let stored: std::collections::HashMap<String, ()> =
        rows.into_iter().map(|row| (row.get("kb"), ())).collect();
    let changes = crate::listdiff::diff(stored, hotfixes, |h| h.kb.clone(), |_, _| true, removed);
    let history =
        "INSERT INTO hotfix_history (host_id, kb, installed, changed_ms) VALUES ($1, $2, $3, $4)";
    let appeared = changes.upserts.into_iter().map(|(h, _)| (h, true));
    let known = changes.unchanged.into_iter().map(|(h, _)| (h, false));
    for (h, new) in appeared.chain(known) {
        // Title and date may be filled in by a later source (QFE first, update history later).
        sqlx::query(
            "INSERT INTO hotfixes (host_id, kb, title, installed_on, first_seen_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (host_id, kb) DO UPDATE SET title = excluded.title, \
                 installed_on = excluded.installed_on",
        )
        .bind(host_id)
        .bind(&h.kb)
        .bind(&h.title)
        .bind(h.installed_on.as_deref().unwrap_or(""))
        .bind(now_ms)
        .execute(&mut **tx)
        .await?;
        if new {
            sqlx::query(history)
                .bind(host_id)
                .bind(&h.kb)
                .bind(1_i64)
                .bind(now_ms)
                .execute(&mut **tx)
                .await?;
        }
    }
    for (kb, ()) in changes.gone {
        sqlx::query("DELETE FROM hotfixes WHERE host_id = $1 AND kb = $2")
            .bind(host_id)
            .bind(&kb)
            .execute(&mut **tx)
            .await?;
        sqlx::query(history)
            .bind(host_id)
            .bind(&kb)
            .bind(0_i64)
            .bind(now_ms)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Replaces a host's installed programs within `tx`; a program keeps the time it was first
/// seen at its version. With `removed` (a delta), `programs` are added and `removed` leave.
async fn replace_programs(
    tx: &mut Tx<'_>,
    host_id: &str,
    programs: &[Program],
    removed: Option<&[Program]>,
    now_ms: i64,
) -> Result<(), StoreError> {
    let rows = sqlx::query("SELECT name, version, publisher FROM programs WHERE host_id = $1")
        .bind(host_id)
        .fetch_all(&mut **tx)
        .await?;
    let stored: std::collections::HashMap<Program, ()> = rows
        .into_iter()
        .map(|row| {
            let program = Program {
                name: row.get("name"),
                version: row.get("version"),
                publisher: row.get("publisher"),
            };
            (program, ())
        })
        .collect();
    // A program is its name, version and publisher together: a new version is a new program.
    let changes = crate::listdiff::diff(stored, programs, Program::clone, |_, _| true, removed);
    for (p, _) in changes.upserts {
        sqlx::query(
            "INSERT INTO programs (host_id, name, version, publisher, first_seen_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(host_id)
        .bind(&p.name)
        .bind(&p.version)
        .bind(&p.publisher)
        .bind(now_ms)
        .execute(&mut **tx)
        .await?;
    }
    for (p, ()) in &changes.gone {
        sqlx::query(
            "DELETE FROM programs WHERE host_id = $1 AND name = $2 AND version = $3 AND publisher = $4",
        )
        .bind(host_id)
        .bind(&p.name)
        .bind(&p.version)
        .bind(&p.publisher)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

fn host_from_row(row: &AnyRow) -> Result<Host, StoreError> {
    let ips: String = row.try_get("ip_addresses")?;
    Ok(Host {
        host_id: row.try_get("host_id")?,
        removed_ms: row.try_get("removed_ms")?,
        hostname: row.try_get("hostname")?,
        os_name: row.try_get("os_name")?,
        os_version: row.try_get("os_version")?,
        kernel_version: row.try_get("kernel_version")?,
        arch: row.try_get("arch")?,
        ip_addresses: serde_json::from_str(&ips)
            .map_err(|e| StoreError::Corrupt(format!("hosts.ip_addresses: {e}")))?,
        agent_version: row.try_get("agent_version")?,
        peer_address: row.try_get("peer_address")?,
        first_seen_ms: row.try_get("first_seen_ms")?,
        last_seen_ms: row.try_get("last_seen_ms")?,
        online: row.try_get::<i64, _>("connected")? != 0,
        open_findings: row.try_get::<i64, _>("open_findings")? as u64,
        botnet_matches: row.try_get::<i64, _>("botnet_matches")? as u64,
        cleanup: HostCleanup {
            open: row.try_get::<i64, _>("open_findings")? as u64,
            quarantine_requested: row.try_get::<i64, _>("requested_findings")? as u64,
            quarantined: row.try_get::<i64, _>("quarantined_findings")? as u64,
            last_complete: match row.try_get::<Option<String>, _>("complete_sweep_id")? {
                None => None,
                Some(sweep_id) => Some(CompleteSweep {
                    sweep_id,
                    started_ms: row
                        .try_get::<Option<i64>, _>("complete_started_ms")?
                        .unwrap_or(0),
                    sets: RuleSets {
                        rules_version: row
                            .try_get::<Option<String>, _>("c_rules_version")?
                            .unwrap_or_default(),
                        iocs_version: row
                            .try_get::<Option<String>, _>("c_iocs_version")?
                            .unwrap_or_default(),
                        rule_count: row
                            .try_get::<Option<i64>, _>("c_rule_count")?
                            .map(|n| n.max(0) as u64),
                        ioc_count: row
                            .try_get::<Option<i64>, _>("c_ioc_count")?
                            .map(|n| n.max(0) as u64),
                    },
                }),
            },
            // Filled in by the caller from the host's botnet matches.
            botnet: Vec::new(),
            last_seen_ms: row.try_get("last_seen_ms")?,
        },
        package_versions: Vec::new(),
    })
}

fn finding_from_row(row: &AnyRow) -> Result<Finding, StoreError> {
    let kind: String = row.try_get("kind")?;
    Ok(Finding {
        id: row.try_get("id")?,
        host_id: row.try_get("host_id")?,
        kind: FindingKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("findings.kind {kind:?}")))?,
        path: row.try_get("path")?,
        sha256: row.try_get("sha256")?,
        size: row.try_get::<i64, _>("size")? as u64,
        rule: row.try_get("rule")?,
        namespace: row.try_get("namespace")?,
        ioc_comment: row.try_get("ioc_comment")?,
        state: state_of(row)?,
        first_seen_ms: row.try_get("first_seen_ms")?,
        last_seen_ms: row.try_get("last_seen_ms")?,
        path_raw: row.try_get("path_raw")?,
        state_changed_ms: row.try_get("state_changed_ms")?,
        quarantine_id: row.try_get("quarantine_id")?,
        remediation_error: row.try_get("remediation_error")?,
        restore_requested_ms: row.try_get("restore_requested_ms")?,
        sweep_id: row.try_get("sweep_id")?,
        list_id: row.try_get("list_id")?,
        evidence: row.try_get("evidence")?,
    })
}

/// After every conformance case: each host's finding counts, kept by the database's
/// triggers, are what counting its findings gives.
#[cfg(test)]
pub(crate) async fn assert_finding_counts_kept(store: &SqlStore) {
    let rows = sqlx::query(
        "SELECT h.host_id, h.open_findings, h.botnet_matches, h.requested_findings, h.quarantined_findings, \
         (SELECT COUNT(*) FROM findings f WHERE f.host_id = h.host_id AND f.state IN ('open', 'reopened') AND f.kind <> 'botnet_ip') AS open_counted, \
         (SELECT COUNT(*) FROM findings f WHERE f.host_id = h.host_id AND f.state IN ('open', 'reopened') AND f.kind = 'botnet_ip') AS botnet_counted, \
         (SELECT COUNT(*) FROM findings f WHERE f.host_id = h.host_id AND f.state = 'quarantine_requested') AS requested_counted, \
         (SELECT COUNT(*) FROM findings f WHERE f.host_id = h.host_id AND f.state = 'quarantined') AS quarantined_counted \
         FROM hosts h",
    )
    .fetch_all(&store.pool)
    .await
    .unwrap();
    for row in rows {
        let host: String = row.try_get("host_id").unwrap();
        for (kept, counted) in [
            ("open_findings", "open_counted"),
            ("botnet_matches", "botnet_counted"),
            ("requested_findings", "requested_counted"),
            ("quarantined_findings", "quarantined_counted"),
        ] {
            let kept_n: i64 = row.try_get(kept).unwrap();
            let counted_n: i64 = row.try_get(counted).unwrap();
            assert_eq!(kept_n, counted_n, "host {host}: {kept}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SiteStore;

    fn hello(host: &str) -> HostHello {
        HostHello {
            host_id: host.into(),
            hostname: format!("{host}.example"),
            os_name: "Debian GNU/Linux".into(),
            os_version: "12".into(),
            kernel_version: "6.1.0".into(),
            arch: "x86_64".into(),
            ip_addresses: vec!["10.0.0.5".into()],
            agent_version: "0.1.0".into(),
            boot_time: 1_700_000_000,
            peer_address: Some("192.0.2.7:40000".into()),
        }
    }

    fn finding(path: &str) -> NewFinding {
        NewFinding {
            sweep_id: "s1".into(),
            kind: FindingKind::HashIoc,
            path: path.into(),
            path_raw: None,
            sha256: "ab".repeat(32),
            size: 68,
            rule: String::new(),
            namespace: String::new(),
            ioc_comment: "EICAR".into(),
            observed_at_ms: 5,
            rules_version: String::new(),
            iocs_version: "local:01".into(),
        }
    }

    async fn spool_drops_are_running_totals_that_never_go_down(store: SqlStore) {
        store.record_hello(&hello("a"), 10).await.unwrap();
        let detail = store.host_detail("a").await.unwrap().unwrap();
        assert_eq!(detail.spool_dropped, SpoolDropped::default());
        let later = SpoolDropped {
            progress: 7,
            connections: 2,
            inventories: 1,
            last_dropped_ms: Some(500),
        };
        store.record_spool_dropped("a", &later).await.unwrap();
        // An older notice, resent after a lost acknowledgement, lowers nothing.
        let older = SpoolDropped {
            progress: 3,
            connections: 2,
            inventories: 0,
            last_dropped_ms: Some(400),
        };
        store.record_spool_dropped("a", &older).await.unwrap();
        let detail = store.host_detail("a").await.unwrap().unwrap();
        assert_eq!(detail.spool_dropped, later);
    }

    async fn findings_are_idempotent_and_counted_per_host(store: SqlStore) {
        store.record_hello(&hello("a"), 10).await.unwrap();
        store.record_hello(&hello("b"), 10).await.unwrap();
        let batch = vec![finding("/tmp/eicar"), finding("/tmp/eicar2")];
        store.record_findings("a", &batch, 20).await.unwrap();
        // A resend after a lost acknowledgement changes nothing but the times.
        store.record_findings("a", &batch, 30).await.unwrap();
        let all = store
            .list_findings(&FindingFilter::default())
            .await
            .unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!((all[0].first_seen_ms, all[0].last_seen_ms), (20, 30));
        assert_eq!(all[0].state, FindingState::Open);
        let hosts = store.list_hosts(&HostFilter::default()).await.unwrap();
        assert_eq!(
            hosts.iter().map(|h| h.open_findings).collect::<Vec<_>>(),
            vec![2, 0]
        );
        assert_eq!(hosts[0].host_id, "a");
        assert_eq!(hosts[0].cleanup.open, 2);
        assert_eq!(hosts[0].ip_addresses, vec!["10.0.0.5".to_owned()]);
        let only_b = store
            .list_findings(&FindingFilter {
                host_id: Some("b".into()),
                ..FindingFilter::default()
            })
            .await
            .unwrap();
        assert!(only_b.is_empty());
    }

    async fn stale_disconnect_does_not_mark_a_reconnected_host_offline(store: SqlStore) {
        let first = store.record_hello(&hello("a"), 10).await.unwrap();
        let second = store.record_hello(&hello("a"), 20).await.unwrap();
        assert!(second > first);
        store.record_disconnect("a", first, 30).await.unwrap();
        assert!(store.list_hosts(&HostFilter::default()).await.unwrap()[0].online);
        store.record_disconnect("a", second, 40).await.unwrap();
        let host = &store.list_hosts(&HostFilter::default()).await.unwrap()[0];
        assert!(!host.online);
        assert_eq!((host.first_seen_ms, host.last_seen_ms), (10, 40));
        store.record_hello(&hello("a"), 50).await.unwrap();
        // A replica that stops leaves its hosts offline.
        store.replica_gone().await.unwrap();
        assert!(!store.list_hosts(&HostFilter::default()).await.unwrap()[0].online);
    }

    async fn replicas_share_events_liveness_and_leases(store: SqlStore) {
        // Two replicas of one site: the second opens the same database.
        let other = SqlStore {
            replica: "other-replica".into(),
            ..store.clone()
        };
        store.replica_seen("a:1", 100, 0).await.unwrap();
        other.replica_seen("b:1", 100, 0).await.unwrap();
        store.record_hello(&hello("on-a"), 100).await.unwrap();
        other.record_hello(&hello("on-b"), 100).await.unwrap();

        // Events come back in order, after any id, with their origin.
        assert_eq!(store.last_event_id().await.unwrap(), 0);
        let first = store.publish_event("{\"n\":1}", 110).await.unwrap();
        let second = other.publish_event("{\"n\":2}", 120).await.unwrap();
        assert!(second > first);
        let events = other.events_after(0).await.unwrap();
        assert_eq!(
            events
                .iter()
                .map(|e| (e.origin.as_str(), e.body.as_str()))
                .collect::<Vec<_>>(),
            [
                (store.replica_id(), "{\"n\":1}"),
                ("other-replica", "{\"n\":2}")
            ]
        );
        assert_eq!(store.events_after(first).await.unwrap().len(), 1);
        assert_eq!(store.last_event_id().await.unwrap(), second);
        assert_eq!(store.prune_events(115).await.unwrap(), 1);
        assert_eq!(store.events_after(0).await.unwrap().len(), 1);

        // One holder per lease until it runs out; the holder renews.
        assert!(store.take_lease("job", 200, 300).await.unwrap());
        assert!(!other.take_lease("job", 250, 350).await.unwrap());
        assert!(store.take_lease("job", 260, 360).await.unwrap());
        assert!(other.take_lease("job", 361, 460).await.unwrap());
        assert!(!store.take_lease("job", 362, 460).await.unwrap());

        // A replica that stops noting itself loses its hosts; the live one keeps its own.
        store.replica_seen("a:1", 500, 150).await.unwrap();
        let online = |hosts: Vec<Host>| {
            hosts
                .into_iter()
                .filter(|h| h.online)
                .map(|h| h.host_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            online(store.list_hosts(&HostFilter::default()).await.unwrap()),
            ["on-a"]
        );
    }

    async fn findings_for_an_unknown_host_are_refused(store: SqlStore) {
        assert!(
            store
                .record_findings("ghost", &[finding("/x")], 1)
                .await
                .is_err()
        );
    }

    async fn sweep_reports_upsert(store: SqlStore) {
        store.record_hello(&hello("a"), 10).await.unwrap();
        let mut report = SweepReport {
            sweep_id: "s1".into(),
            started_at_ms: 1,
            finished_at_ms: 2,
            files: 3,
            bytes: 4,
            findings: 0,
            errors: [("permission_denied".to_owned(), 2)].into(),
            roots: vec!["/".into()],
            failures: vec![crate::model::FailedPath {
                path: "/root/secret".into(),
                kind: "permission_denied".into(),
                message: "Permission denied (os error 13)".into(),
            }],
            failures_truncated: false,
            failure: String::new(),
            sets: RuleSets::default(),
        };
        store.record_sweep_report("a", &report, 5).await.unwrap();
        report.files = 9;
        store.record_sweep_report("a", &report, 6).await.unwrap();
        let count: i64 = sqlx::query_scalar("SELECT files FROM sweep_reports")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(count, 9);
        let failures: String = sqlx::query_scalar("SELECT failures FROM sweep_reports")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert!(failures.contains("/root/secret"), "{failures}");
    }

    async fn progress_never_moves_backwards(store: SqlStore) {
        store.record_hello(&hello("a"), 10).await.unwrap();
        let mut p = SweepProgress {
            sweep_id: "s1".into(),
            started_at_ms: 1,
            files_done: 100,
            bytes_done: 1000,
            files_estimate: 500,
            bytes_estimate: 5000,
            findings: 1,
            errors: Default::default(),
        };
        store.record_sweep_progress("a", &p, 20).await.unwrap();
        p.files_done = 50;
        store.record_sweep_progress("a", &p, 30).await.unwrap();
        let done: i64 = sqlx::query_scalar("SELECT files_done FROM sweep_progress")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(done, 100);
        p.files_done = 200;
        store.record_sweep_progress("a", &p, 40).await.unwrap();
        let done: i64 = sqlx::query_scalar("SELECT files_done FROM sweep_progress")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(done, 200);
    }

    async fn package_lists_replace_and_leave_a_history(store: SqlStore) {
        store.record_hello(&hello("h1"), 1).await.unwrap();
        let pkg = |name: &str, version: &str| InstalledPackage {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            source: None,
            manager: Some(Scheme::Dpkg),
        };
        let first = [pkg("openssl", "3.0.11-1"), pkg("bash", "5.2-1")];
        store.record_packages("h1", &first, 10).await.unwrap();
        // The same list again (a resent message) changes nothing.
        store.record_packages("h1", &first, 15).await.unwrap();
        store
            .record_packages("h1", &[pkg("openssl", "3.0.13-1"), pkg("curl", "7.88")], 20)
            .await
            .unwrap();
        let now: Vec<(String, String, i64)> = store
            .list_packages("h1")
            .await
            .unwrap()
            .into_iter()
            .map(|p| (p.package.name, p.package.version, p.installed_ms))
            .collect();
        assert_eq!(
            now,
            vec![
                ("curl".to_owned(), "7.88".to_owned(), 20),
                ("openssl".to_owned(), "3.0.13-1".to_owned(), 20)
            ]
        );
        let history: Vec<(String, Option<String>, Option<String>, i64)> = store
            .package_history("h1")
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.name, c.old_version, c.new_version, c.changed_ms))
            .collect();
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            history,
            vec![
                ("openssl".to_owned(), None, s("3.0.11-1"), 10),
                ("bash".to_owned(), None, s("5.2-1"), 10),
                ("openssl".to_owned(), s("3.0.11-1"), s("3.0.13-1"), 20),
                ("curl".to_owned(), None, s("7.88"), 20),
                ("bash".to_owned(), s("5.2-1"), None, 20),
            ]
        );
        assert!(store.list_packages("nobody").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn unopenable_database_names_its_url() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "x").unwrap();
        let url = format!("{}/sub/c.db", blocker.display());
        let err = SqlStore::open(&url).await.err().unwrap().to_string();
        assert!(err.contains("file/sub"), "{err}");
    }

    fn windows_inventory(hotfixes: Option<&[&str]>, collected_ms: i64) -> InventoryReport {
        InventoryReport {
            collected_ms,
            os: OsFacts {
                family: "windows".into(),
                arch: "x86_64".into(),
                product_name: "Windows 10 Pro".into(),
                display_version: "22H2".into(),
                build: "10.0.19045.3930".into(),
                installation_type: "client".into(),
                ..OsFacts::default()
            },
            packages: Some(Vec::new()),
            hotfixes: hotfixes.map(|kbs| {
                kbs.iter()
                    .map(|kb| Hotfix {
                        kb: (*kb).into(),
                        title: format!("update {kb}"),
                        installed_on: None,
                    })
                    .collect()
            }),
            programs: Some(vec![Program {
                name: "Microsoft Edge".into(),
                version: "120.0.2210.91".into(),
                publisher: "Microsoft Corporation".into(),
            }]),
            gaps: if hotfixes.is_none() {
                vec![crate::model::InventoryGap {
                    source: "hotfixes".into(),
                    reason: "WMI timed out".into(),
                }]
            } else {
                Vec::new()
            },
            digest: None,
            delta: None,
        }
    }

    async fn inventories_keep_lists_they_could_not_replace_whole(store: SqlStore) {
        store.record_hello(&hello("w1"), 1).await.unwrap();
        store
            .record_inventory("w1", &windows_inventory(Some(&["KB1", "KB2"]), 5), 10)
            .await
            .unwrap();
        // A partial update list leaves the stored one; the OS facts still move on.
        let mut partial = windows_inventory(None, 6);
        partial.os.build = "10.0.19045.4046".into();
        store.record_inventory("w1", &partial, 20).await.unwrap();
        let kbs: Vec<String> = store
            .list_hotfixes("w1")
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.kb)
            .collect();
        assert_eq!(kbs, vec!["KB1", "KB2"]);
        let detail = store.host_detail("w1").await.unwrap().unwrap();
        let inventory = detail.inventory.unwrap();
        assert_eq!(inventory.os.build, "10.0.19045.4046");
        assert_eq!(inventory.gaps.len(), 1);
        assert_eq!((detail.hotfix_count, detail.program_count), (2, 1));
        assert_eq!(detail.last_change_seen_ms, Some(10));
        // A complete list replaces it and the history says what came and went.
        store
            .record_inventory("w1", &windows_inventory(Some(&["KB2", "KB3"]), 7), 30)
            .await
            .unwrap();
        let history: Vec<(String, i64, i64)> = sqlx::query_as(&format!(
            "SELECT kb, installed, changed_ms FROM hotfix_history WHERE host_id = 'w1' ORDER BY {}",
            store.dialect.insertion_order()
        ))
        .fetch_all(&store.pool)
        .await
        .unwrap();
        assert_eq!(
            history,
            vec![
                ("KB1".into(), 1, 10),
                ("KB2".into(), 1, 10),
                ("KB3".into(), 1, 30),
                ("KB1".into(), 0, 30),
            ]
        );
        assert!(store.host_detail("nope").await.unwrap().is_none());
    }

    async fn hosts_are_found_by_package_version_and_missing_update(store: SqlStore) {
        for host in ["deb", "rhel", "win", "win-partial"] {
            store.record_hello(&hello(host), 1).await.unwrap();
        }
        let pkg = |name: &str, version: &str, manager| InstalledPackage {
            name: name.into(),
            version: version.into(),
            arch: "x86_64".into(),
            source: None,
            manager: Some(manager),
        };
        // Under dpkg, 1.0~rc1 sorts before 1.0; RPM's tilde agrees; 1:0.9 is above 2.0 in both.
        store
            .record_packages(
                "deb",
                &[pkg("openssl", "3.0.11-1~deb12u2", Scheme::Dpkg)],
                2,
            )
            .await
            .unwrap();
        store
            .record_packages("rhel", &[pkg("openssl", "1:3.0.7-25.el9", Scheme::Rpm)], 2)
            .await
            .unwrap();
        store
            .record_inventory("win", &windows_inventory(Some(&["KB5034441"]), 3), 3)
            .await
            .unwrap();
        store
            .record_inventory("win-partial", &windows_inventory(None, 3), 3)
            .await
            .unwrap();
        let below = |version: &str| HostFilter {
            package_below: Some(("openssl".into(), version.into())),
            ..HostFilter::default()
        };
        let missing = |kb: &str| HostFilter {
            missing_kb: Some(kb.into()),
            ..HostFilter::default()
        };
        let cases: [(HostFilter, &[&str]); 7] = [
            (
                HostFilter {
                    has_package: Some("openssl".into()),
                    ..HostFilter::default()
                },
                &["deb", "rhel"],
            ),
            (below("3.0.11-1"), &["deb"]),
            (below("3.0.11-1~deb12u1"), &[]),
            // Epoch 1 is above any version without one: the Debian host is below it too.
            (below("1:3.0.7-26.el9"), &["deb", "rhel"]),
            (below("1:3.0.7-25.el9"), &["deb"]),
            // Linux hosts and hosts whose update list is incomplete are never "missing" a KB.
            (missing("KB5034441"), &[]),
            (missing("KB5034439"), &["win"]),
        ];
        for (filter, expected) in cases {
            let listed: Vec<String> = store
                .list_hosts(&filter)
                .await
                .unwrap()
                .into_iter()
                .map(|h| h.host_id)
                .collect();
            assert_eq!(listed, expected, "{filter:?}");
        }
    }

    async fn connection_lists_replace_whole_and_filter_by_network(store: SqlStore) {
        store.record_hello(&hello("h1"), 1).await.unwrap();
        store.record_hello(&hello("h2"), 1).await.unwrap();
        let conn = |remote: &str, port: u16| NetConnection {
            proto: "tcp".into(),
            local_addr: "10.0.0.5".into(),
            local_port: 50000,
            remote_addr: remote.into(),
            remote_port: port,
            state: "established".into(),
            pid: Some(42),
            process: Some("curl".into()),
        };
        let report = |collected_ms, connections| ConnectionReport {
            collected_ms,
            connections,
            partial_reason: None,
        };
        store
            .record_connections("h1", &report(100, vec![conn("203.0.113.9", 443)]), 1)
            .await
            .unwrap();
        store
            .record_connections(
                "h2",
                &report(
                    100,
                    vec![conn("198.51.100.1", 80), conn("2001:db8::1", 443)],
                ),
                1,
            )
            .await
            .unwrap();
        // Newer list replaces; a late resend of an older one does not.
        store
            .record_connections("h1", &report(200, vec![conn("203.0.113.10", 443)]), 2)
            .await
            .unwrap();
        store
            .record_connections("h1", &report(150, vec![conn("192.0.2.1", 22)]), 3)
            .await
            .unwrap();
        let list = |host: Option<&str>, remote: Option<&str>| {
            let store = store.clone();
            let filter = ConnectionFilter {
                host_id: host.map(str::to_owned),
                remote: remote.map(|r| r.parse().unwrap()),
            };
            async move {
                store
                    .list_connections(&filter)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|c| format!("{}>{}", c.host_id, c.connection.remote_addr))
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(list(Some("h1"), None).await, vec!["h1>203.0.113.10"]);
        assert_eq!(
            list(None, Some("203.0.113.0/24")).await,
            vec!["h1>203.0.113.10"]
        );
        assert_eq!(
            list(None, Some("2001:db8::/32")).await,
            vec!["h2>2001:db8::1"]
        );
        assert_eq!(
            list(Some("h2"), Some("10.0.0.0/8")).await,
            Vec::<String>::new()
        );
        let detail = store.host_detail("h1").await.unwrap().unwrap();
        assert_eq!(
            (detail.connection_count, detail.connections_collected_ms),
            (1, Some(200))
        );
    }

    async fn a_delta_applies_only_onto_the_lists_it_was_made_against(store: SqlStore) {
        store.record_hello(&hello("h1"), 1).await.unwrap();
        let pkg = |name: &str, version: &str| InstalledPackage {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            source: None,
            manager: Some(Scheme::Dpkg),
        };
        let mut full = windows_inventory(Some(&["KB1", "KB2"]), 5);
        full.os.family = "linux".into();
        full.packages = Some(vec![pkg("a", "1"), pkg("b", "1"), pkg("c", "1")]);
        full.digest = Some(vec![1; 32]);
        assert!(store.record_inventory("h1", &full, 10).await.unwrap());
        let delta = |base: u8, next: u8| InventoryReport {
            packages: Some(vec![pkg("b", "2"), pkg("d", "1")]),
            hotfixes: Some(vec![Hotfix {
                kb: "KB3".into(),
                title: String::new(),
                installed_on: None,
            }]),
            programs: Some(Vec::new()),
            digest: Some(vec![next; 32]),
            delta: Some(crate::model::InventoryDelta {
                base_digest: vec![base; 32],
                removed_packages: vec![("c".into(), "amd64".into())],
                removed_hotfixes: vec!["KB1".into()],
                removed_programs: Vec::new(),
            }),
            ..full.clone()
        };
        // Against another base: nothing of it is applied, and the caller is told.
        assert!(
            !store
                .record_inventory("h1", &delta(9, 2), 20)
                .await
                .unwrap()
        );
        let versions = |store: SqlStore| async move {
            store
                .list_packages("h1")
                .await
                .unwrap()
                .into_iter()
                .map(|p| format!("{}={}", p.package.name, p.package.version))
                .collect::<Vec<_>>()
        };
        assert_eq!(versions(store.clone()).await, vec!["a=1", "b=1", "c=1"]);
        // The mismatch leaves the digest unknown, so even the right base no longer fits until a
        // complete inventory comes.
        assert!(
            !store
                .record_inventory("h1", &delta(1, 2), 30)
                .await
                .unwrap()
        );
        assert!(store.record_inventory("h1", &full, 40).await.unwrap());
        assert!(
            store
                .record_inventory("h1", &delta(1, 2), 50)
                .await
                .unwrap()
        );
        assert_eq!(versions(store.clone()).await, vec!["a=1", "b=2", "d=1"]);
        let kbs: Vec<String> = store
            .list_hotfixes("h1")
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.kb)
            .collect();
        assert_eq!(kbs, vec!["KB2", "KB3"]);
        assert_eq!(store.list_programs("h1").await.unwrap().len(), 1);
    }

    fn summary(sweep_id: &str, started: i64, roots: &[&str]) -> SweepReport {
        SweepReport {
            sweep_id: sweep_id.into(),
            started_at_ms: started,
            finished_at_ms: started + 5,
            files: 1,
            bytes: 1,
            findings: 0,
            errors: Default::default(),
            roots: roots.iter().map(|r| (*r).to_owned()).collect(),
            failures: Vec::new(),
            failures_truncated: false,
            failure: String::new(),
            // The sets `finding` was made with.
            sets: RuleSets {
                iocs_version: "local:01".into(),
                rule_count: Some(1),
                ..RuleSets::default()
            },
        }
    }

    fn at(path: &str, sweep_id: &str, sha: &str) -> NewFinding {
        NewFinding {
            sweep_id: sweep_id.into(),
            path: path.into(),
            sha256: sha.repeat(32),
            ..finding(path)
        }
    }

    async fn state(store: &SqlStore, path: &str) -> FindingState {
        store
            .list_findings(&FindingFilter::default())
            .await
            .unwrap()
            .into_iter()
            .find(|f| f.path == path)
            .unwrap()
            .state
    }

    async fn a_sweep_resolves_only_what_it_covered_and_no_longer_found(store: SqlStore) {
        store.record_hello(&hello("a"), 1).await.unwrap();
        let found = [
            at("/srv/gone", "s1", "ab"),
            at("/srv/still", "s1", "cd"),
            at("/srv/unreadable", "s1", "ef"),
            at("/elsewhere/x", "s1", "01"),
        ];
        store.record_findings("a", &found, 10).await.unwrap();
        // Sweep s2 starts at 20 (its first progress), sees /srv/still again, fails to read
        // /srv/unreadable, and walks /srv only.
        let progress = SweepProgress {
            sweep_id: "s2".into(),
            started_at_ms: 20,
            files_done: 0,
            bytes_done: 0,
            files_estimate: 0,
            bytes_estimate: 0,
            findings: 0,
            errors: Default::default(),
        };
        store
            .record_sweep_progress("a", &progress, 20)
            .await
            .unwrap();
        store
            .record_findings("a", &[at("/srv/still", "s2", "cd")], 25)
            .await
            .unwrap();
        let mut report = summary("s2", 20, &["/srv"]);
        report.failures.push(crate::model::FailedPath {
            path: "/srv/unreadable".into(),
            kind: "permission_denied".into(),
            message: "denied".into(),
        });
        store.record_sweep_report("a", &report, 30).await.unwrap();
        assert_eq!(state(&store, "/srv/gone").await, FindingState::Resolved);
        assert_eq!(state(&store, "/srv/still").await, FindingState::Open);
        assert_eq!(state(&store, "/srv/unreadable").await, FindingState::Open);
        assert_eq!(state(&store, "/elsewhere/x").await, FindingState::Open);
        let gone = store
            .list_findings(&FindingFilter::default())
            .await
            .unwrap()[0]
            .clone();
        let (_, history) = store.finding_history(gone.id).await.unwrap().unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(history[1].actor, "collector");
        assert!(history[1].note.contains("sweep s2"), "{}", history[1].note);

        // A sweep that could not list all its failures proves nothing.
        let mut truncated = summary("s3", 40, &["/"]);
        truncated.failures_truncated = true;
        store
            .record_sweep_report("a", &truncated, 45)
            .await
            .unwrap();
        assert_eq!(state(&store, "/elsewhere/x").await, FindingState::Open);
        // Nor one that failed.
        let mut failed = summary("s4", 50, &["/"]);
        failed.failure = "crashed".into();
        store.record_sweep_report("a", &failed, 55).await.unwrap();
        assert_eq!(state(&store, "/elsewhere/x").await, FindingState::Open);

        // The same content under a new name reopens the resolved finding there.
        store
            .record_findings("a", &[at("/srv/renamed", "s5", "ab")], 60)
            .await
            .unwrap();
        assert_eq!(state(&store, "/srv/renamed").await, FindingState::Reopened);
        assert_eq!(
            store
                .list_findings(&FindingFilter::default())
                .await
                .unwrap()
                .len(),
            4
        );
    }

    async fn remediation_moves_findings_and_repeats_change_nothing(store: SqlStore) {
        store.record_hello(&hello("a"), 1).await.unwrap();
        store.record_hello(&hello("b"), 1).await.unwrap();
        store
            .record_findings("a", &[at("/x", "s1", "ab")], 10)
            .await
            .unwrap();
        let id = store
            .list_findings(&FindingFilter::default())
            .await
            .unwrap()[0]
            .id;
        let changed = store
            .change_finding(id, &AdminChange::Quarantine, "alice", "", 20)
            .await
            .unwrap();
        assert_eq!(changed.state, FindingState::QuarantineRequested);
        assert_eq!(
            store
                .remediation_orders("a")
                .await
                .unwrap()
                .quarantine
                .len(),
            1
        );
        let done = RemediationReport {
            finding_id: id,
            action: RemediationAction::Quarantine,
            ok: true,
            reason: String::new(),
            quarantine_id: "q1".into(),
            path: "/x".into(),
        };
        // Another host cannot report on this host's finding.
        store.record_remediation("b", &done, 25).await.unwrap();
        assert_eq!(state(&store, "/x").await, FindingState::QuarantineRequested);
        store.record_remediation("a", &done, 30).await.unwrap();
        store.record_remediation("a", &done, 31).await.unwrap();
        let finding = store.finding(id).await.unwrap().unwrap();
        assert_eq!(finding.state, FindingState::Quarantined);
        assert_eq!(finding.quarantine_id.as_deref(), Some("q1"));
        assert!(
            store
                .remediation_orders("a")
                .await
                .unwrap()
                .quarantine
                .is_empty()
        );
        let (_, history) = store.finding_history(id).await.unwrap().unwrap();
        let actors: Vec<&str> = history.iter().map(|c| c.actor.as_str()).collect();
        assert_eq!(actors, ["collector", "alice", "agent"]);

        // A refused restore keeps it quarantined, with the reason.
        store
            .change_finding(id, &AdminChange::Restore, "alice", "", 40)
            .await
            .unwrap();
        assert_eq!(
            store.remediation_orders("a").await.unwrap().restore.len(),
            1
        );
        let refused = RemediationReport {
            action: RemediationAction::Restore,
            ok: false,
            reason: "something else is there now".into(),
            ..done.clone()
        };
        store.record_remediation("a", &refused, 41).await.unwrap();
        let finding = store.finding(id).await.unwrap().unwrap();
        assert_eq!(finding.state, FindingState::Quarantined);
        assert_eq!(
            finding.remediation_error.as_deref(),
            Some("something else is there now")
        );
        assert!(
            store
                .remediation_orders("a")
                .await
                .unwrap()
                .restore
                .is_empty()
        );
        // Changes the lifecycle forbids are refused, and nothing is written.
        let err = store
            .change_finding(id, &AdminChange::Quarantine, "alice", "", 50)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Refused(_)), "{err}");
        assert!(matches!(
            store
                .change_finding(999, &AdminChange::Quarantine, "alice", "", 50)
                .await,
            Err(StoreError::NoFinding(999))
        ));
        let audit = store.list_audit().await.unwrap();
        assert_eq!(audit.len(), 2);
        assert_eq!(audit[0].action, "finding.quarantine");
        assert_eq!(audit[0].actor, "alice");
    }

    async fn every_table_of_the_schema_is_copied(store: SqlStore) {
        let catalogue = match store.dialect {
            Dialect::Sqlite => {
                "SELECT name FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' ORDER BY name"
            }
            Dialect::Postgres => {
                "SELECT CAST(table_name AS TEXT) FROM information_schema.tables WHERE table_schema = current_schema() \
                 AND table_name <> '_sqlx_migrations' ORDER BY table_name"
            }
        };
        let tables: Vec<String> = sqlx::query_scalar(catalogue)
            .fetch_all(&store.pool)
            .await
            .unwrap();
        let mut listed: Vec<&str> = crate::store::TABLES.to_vec();
        listed.extend(crate::store::EPHEMERAL_TABLES);
        listed.sort_unstable();
        assert_eq!(tables, listed);
    }

    async fn a_site_moves_to_another_database_whole(store: SqlStore) {
        store.record_hello(&hello("a"), 1).await.unwrap();
        store.record_hello(&hello("w1"), 1).await.unwrap();
        store
            .record_findings("a", &[at("/x", "s1", "ab"), at("/y", "s1", "cd")], 10)
            .await
            .unwrap();
        let id = store
            .list_findings(&FindingFilter::default())
            .await
            .unwrap()[0]
            .id;
        store
            .change_finding(id, &AdminChange::Quarantine, "alice", "", 20)
            .await
            .unwrap();
        store
            .record_sweep_report("a", &summary("s1", 5, &["/"]), 30)
            .await
            .unwrap();
        for (kbs, at_ms) in [(["KB1", "KB2"], 5), (["KB2", "KB3"], 7)] {
            store
                .record_inventory("w1", &windows_inventory(Some(&kbs), at_ms), at_ms * 10)
                .await
                .unwrap();
        }
        store
            .record_audit(&NewAuditEntry {
                at_ms: 40,
                actor: "alice".into(),
                action: "sweep.start".into(),
                target: "all".into(),
                detail: "Tiếng Việt, 'quoted' \"text\"".into(),
            })
            .await
            .unwrap();

        // SQLite into PostgreSQL when a server is configured, PostgreSQL into SQLite in the
        // suite's other run.
        let dir = tempfile::tempdir().unwrap();
        let postgres = match store.dialect {
            Dialect::Sqlite => crate::store::test_db::TestDatabase::create().await,
            Dialect::Postgres => None,
        };
        let target = match &postgres {
            Some(db) => SqlStore::open(&db.url()).await.unwrap(),
            None => SqlStore::open(&format!("sqlite://{}", dir.path().join("to.db").display()))
                .await
                .unwrap(),
        };
        let copied = store.copy_into(&target).await.unwrap();
        assert!(copied.iter().all(|t| t.complete()), "{copied:?}");
        let rows = |table: &str| {
            copied
                .iter()
                .find(|t| t.table == table)
                .unwrap()
                .source_rows
        };
        assert_eq!(rows("hosts"), 2);
        assert_eq!(rows("findings"), 2);
        assert_eq!(rows("hotfix_history"), 4);

        // What the collector reads back is the same on both.
        let hosts = HostFilter::default();
        let all = FindingFilter::default();
        assert_eq!(
            format!("{:?}", store.list_hosts(&hosts).await.unwrap()),
            format!("{:?}", target.list_hosts(&hosts).await.unwrap())
        );
        assert_eq!(
            format!("{:?}", store.list_findings(&all).await.unwrap()),
            format!("{:?}", target.list_findings(&all).await.unwrap())
        );
        assert_eq!(
            format!("{:?}", store.finding_history(id).await.unwrap()),
            format!("{:?}", target.finding_history(id).await.unwrap())
        );
        assert_eq!(
            format!("{:?}", store.list_audit().await.unwrap()),
            format!("{:?}", target.list_audit().await.unwrap())
        );
        assert_eq!(
            format!("{:?}", store.host_detail("w1").await.unwrap()),
            format!("{:?}", target.host_detail("w1").await.unwrap())
        );
        // New rows get ids past the copied ones.
        target
            .record_findings("a", &[at("/z", "s2", "ef")], 50)
            .await
            .unwrap();
        let ids: Vec<i64> = target
            .list_findings(&all)
            .await
            .unwrap()
            .iter()
            .map(|f| f.id)
            .collect();
        assert_eq!(ids.len(), 3);
        assert!(ids[2] > ids[1], "{ids:?}");

        // A target that holds rows is refused, and says why.
        let refused = store.copy_into(&target).await.unwrap_err().to_string();
        assert!(refused.contains("already holds data"), "{refused}");
    }

    on_both_backends!(
        spool_drops_are_running_totals_that_never_go_down,
        findings_are_idempotent_and_counted_per_host,
        stale_disconnect_does_not_mark_a_reconnected_host_offline,
        findings_for_an_unknown_host_are_refused,
        sweep_reports_upsert,
        progress_never_moves_backwards,
        package_lists_replace_and_leave_a_history,
        inventories_keep_lists_they_could_not_replace_whole,
        hosts_are_found_by_package_version_and_missing_update,
        connection_lists_replace_whole_and_filter_by_network,
        a_delta_applies_only_onto_the_lists_it_was_made_against,
        a_sweep_resolves_only_what_it_covered_and_no_longer_found,
        remediation_moves_findings_and_repeats_change_nothing,
        every_table_of_the_schema_is_copied,
        replicas_share_events_liveness_and_leases,
        a_site_moves_to_another_database_whole,
    );
}
