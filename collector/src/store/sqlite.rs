//! The embedded SQLite backend: one file, WAL journal, migrations from `migrations/sqlite`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

use super::StoreError;
use crate::model::{
    ConnectionFilter, ConnectionReport, Finding, FindingFilter, FindingKind, Host, HostConnection,
    HostDetail, HostFilter, HostHello, Hotfix, InstalledPackage, InventoryReport, NetConnection,
    NewFinding, OsFacts, PackageChange, Program, StoredInventory, StoredPackage, SweepProgress,
    SweepReport,
};
use crate::version::Scheme;

type Tx<'c> = sqlx::Transaction<'c, sqlx::Sqlite>;

/// Rows per multi-row INSERT: at up to 9 values a row, far below SQLite's limit of 32,766
/// bound parameters.
const ROWS_PER_INSERT: usize = 500;

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

const HOST_COLUMNS: &str = "h.host_id, h.hostname, h.os_name, h.os_version, h.kernel_version, h.arch, \
     h.ip_addresses, h.agent_version, h.peer_address, h.first_seen_ms, h.last_seen_ms, h.connected, \
     (SELECT COUNT(*) FROM findings f WHERE f.host_id = h.host_id AND f.state = 'open') AS open_findings";

const FINDING_COLUMNS: &str = "id, host_id, kind, path, sha256, size, rule, namespace, ioc_comment, state, first_seen_ms, last_seen_ms";

impl SqliteStore {
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let open_error = |source| StoreError::Open {
            url: url.to_owned(),
            source,
        };
        let options = if url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url).map_err(open_error)?
        } else {
            SqliteConnectOptions::new().filename(url)
        };
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        if let Some(parent) = Path::new(options.get_filename())
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Directory {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(open_error)?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                url: url.to_owned(),
                source,
            })?;
        Ok(SqliteStore { pool })
    }

    pub async fn reset_connections(&self) -> Result<(), StoreError> {
        sqlx::query("UPDATE hosts SET connected = 0 WHERE connected <> 0")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn record_hello(&self, hello: &HostHello, now_ms: i64) -> Result<i64, StoreError> {
        let ips = serde_json::to_string(&hello.ip_addresses).expect("strings serialize");
        let row = sqlx::query(
            "INSERT INTO hosts (host_id, hostname, os_name, os_version, kernel_version, arch, ip_addresses, \
                 agent_version, boot_time, peer_address, first_seen_ms, last_seen_ms, connected, connection_id) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 1) \
             ON CONFLICT (host_id) DO UPDATE SET hostname = excluded.hostname, os_name = excluded.os_name, \
                 os_version = excluded.os_version, kernel_version = excluded.kernel_version, arch = excluded.arch, \
                 ip_addresses = excluded.ip_addresses, agent_version = excluded.agent_version, \
                 boot_time = excluded.boot_time, peer_address = excluded.peer_address, \
                 last_seen_ms = excluded.last_seen_ms, connected = 1, connection_id = hosts.connection_id + 1 \
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
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get(0)?)
    }

    pub async fn record_disconnect(
        &self,
        host_id: &str,
        connection_id: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE hosts SET connected = 0, last_seen_ms = max(last_seen_ms, ?) WHERE host_id = ? AND connection_id = ?")
            .bind(now_ms)
            .bind(host_id)
            .bind(connection_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn touch(&self, host_id: &str, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE hosts SET last_seen_ms = max(last_seen_ms, ?) WHERE host_id = ?")
            .bind(now_ms)
            .bind(host_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn record_findings(
        &self,
        host_id: &str,
        findings: &[NewFinding],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for f in findings {
            sqlx::query(
                "INSERT INTO findings (host_id, kind, path, path_raw, sha256, size, rule, namespace, ioc_comment, \
                     state, first_seen_ms, last_seen_ms, observed_at_ms, sweep_id) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?, ?, ?) \
                 ON CONFLICT (host_id, kind, path, sha256, namespace, rule) DO UPDATE SET \
                     last_seen_ms = max(last_seen_ms, excluded.last_seen_ms), \
                     observed_at_ms = max(observed_at_ms, excluded.observed_at_ms), \
                     ioc_comment = excluded.ioc_comment, sweep_id = excluded.sweep_id",
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
            .bind(now_ms)
            .bind(now_ms)
            .bind(f.observed_at_ms)
            .bind(&f.sweep_id)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE hosts SET last_seen_ms = max(last_seen_ms, ?) WHERE host_id = ?")
            .bind(now_ms)
            .bind(host_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn record_sweep_report(
        &self,
        host_id: &str,
        report: &SweepReport,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sweep_reports (host_id, sweep_id, started_at_ms, finished_at_ms, files, bytes, findings, \
                 errors, roots, received_ms, failures, failures_truncated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (host_id, sweep_id) DO UPDATE SET started_at_ms = excluded.started_at_ms, \
                 finished_at_ms = excluded.finished_at_ms, files = excluded.files, bytes = excluded.bytes, \
                 findings = excluded.findings, errors = excluded.errors, roots = excluded.roots, \
                 failures = excluded.failures, failures_truncated = excluded.failures_truncated",
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
        .bind(report.failures_truncated)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn record_sweep_progress(
        &self,
        host_id: &str,
        p: &SweepProgress,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        // A resent (older) report must not move progress backwards.
        sqlx::query(
            "INSERT INTO sweep_progress (host_id, sweep_id, started_at_ms, files_done, bytes_done, files_estimate, \
                 bytes_estimate, findings, errors, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Replaces a host's package list with `packages` (a complete inventory), recording each
    /// version that appeared, changed or left in the package history. Idempotent: the same
    /// list again changes nothing.
    pub async fn record_packages(
        &self,
        host_id: &str,
        packages: &[InstalledPackage],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        replace_packages(&mut tx, host_id, packages, None, now_ms).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores an inventory in one transaction: the OS facts replace the host's previous ones,
    /// each complete list replaces the stored one (with its changes in the history), and a
    /// list the agent could not collect whole leaves the stored one as it was. A delta applies
    /// only onto the lists it was made against; otherwise only the OS facts are stored and the
    /// result is `false`: the agent must send a complete inventory.
    pub async fn record_inventory(
        &self,
        host_id: &str,
        report: &InventoryReport,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let held: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT lists_digest FROM host_inventory WHERE host_id = ?")
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
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
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
        sqlx::query("UPDATE host_inventory SET lists_digest = ? WHERE host_id = ?")
            .bind(digest)
            .bind(host_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(applies)
    }

    /// Replaces the host's socket list with `report`'s, unless a newer list is stored.
    pub async fn record_connections(
        &self,
        host_id: &str,
        report: &ConnectionReport,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        // A resent older report must not replace a newer list.
        let newer: Option<i64> = sqlx::query_scalar(
            "SELECT collected_ms FROM connection_reports WHERE host_id = ? AND collected_ms > ?",
        )
        .bind(host_id)
        .bind(report.collected_ms)
        .fetch_optional(&mut *tx)
        .await?;
        if newer.is_some() {
            return Ok(());
        }
        sqlx::query("DELETE FROM connections WHERE host_id = ?")
            .bind(host_id)
            .execute(&mut *tx)
            .await?;
        for chunk in report.connections.chunks(ROWS_PER_INSERT) {
            let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO connections (host_id, proto, local_addr, local_port, remote_addr, \
                     remote_port, state, pid, process) ",
            );
            insert.push_values(chunk, |mut row, c| {
                row.push_bind(host_id)
                    .push_bind(&c.proto)
                    .push_bind(&c.local_addr)
                    .push_bind(c.local_port)
                    .push_bind(&c.remote_addr)
                    .push_bind(c.remote_port)
                    .push_bind(&c.state)
                    .push_bind(c.pid)
                    .push_bind(&c.process);
            });
            insert.build().execute(&mut *tx).await?;
        }
        sqlx::query(
            "INSERT INTO connection_reports (host_id, collected_ms, received_ms, count, partial_reason) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (host_id) DO UPDATE SET \
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
    pub async fn list_connections(
        &self,
        filter: &ConnectionFilter,
    ) -> Result<Vec<HostConnection>, StoreError> {
        let mut sql = "SELECT c.host_id, c.proto, c.local_addr, c.local_port, c.remote_addr, \
                c.remote_port, c.state, c.pid, c.process, r.collected_ms \
             FROM connections c JOIN connection_reports r ON r.host_id = c.host_id"
            .to_owned();
        if filter.host_id.is_some() {
            sql.push_str(" WHERE c.host_id = ?");
        }
        sql.push_str(
            " ORDER BY c.host_id, c.proto, c.local_addr, c.local_port, c.remote_addr, c.remote_port",
        );
        let mut query = sqlx::query(&sql);
        if let Some(host) = &filter.host_id {
            query = query.bind(host);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let mut out = Vec::new();
        for row in rows {
            let connection = NetConnection {
                proto: row.try_get("proto")?,
                local_addr: row.try_get("local_addr")?,
                local_port: row.try_get("local_port")?,
                remote_addr: row.try_get("remote_addr")?,
                remote_port: row.try_get("remote_port")?,
                state: row.try_get("state")?,
                pid: row.try_get("pid")?,
                process: row.try_get("process")?,
            };
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
    pub async fn list_hotfixes(&self, host_id: &str) -> Result<Vec<Hotfix>, StoreError> {
        let rows = sqlx::query(
            "SELECT kb, title, installed_on FROM hotfixes WHERE host_id = ? ORDER BY kb",
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
    pub async fn list_programs(&self, host_id: &str) -> Result<Vec<Program>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, version, publisher FROM programs WHERE host_id = ? ORDER BY name, version",
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

    /// Everything known about one host; `None` for a host the collector has never seen.
    pub async fn host_detail(&self, host_id: &str) -> Result<Option<HostDetail>, StoreError> {
        let Some(row) = sqlx::query(&format!(
            "SELECT {HOST_COLUMNS} FROM hosts h WHERE h.host_id = ?"
        ))
        .bind(host_id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let host = host_from_row(&row)?;
        let inventory = match sqlx::query("SELECT * FROM host_inventory WHERE host_id = ?")
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
                sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table} WHERE host_id = ?"))
                    .bind(host_id)
                    .fetch_one(&self.pool)
                    .await?;
            counts.push(count as u64);
        }
        let last_change_seen_ms: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(t) FROM (SELECT MAX(changed_ms) AS t FROM package_history WHERE host_id = ?1 \
             UNION ALL SELECT MAX(changed_ms) FROM hotfix_history WHERE host_id = ?1)",
        )
        .bind(host_id)
        .fetch_one(&self.pool)
        .await?;
        let report = sqlx::query(
            "SELECT collected_ms, count, partial_reason FROM connection_reports WHERE host_id = ?",
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
        }))
    }

    /// A host's installed packages, by name.
    pub async fn list_packages(&self, host_id: &str) -> Result<Vec<StoredPackage>, StoreError> {
        let rows = sqlx::query(
            "SELECT host_id, name, arch, version, source, installed_ms, manager FROM packages \
             WHERE host_id = ? ORDER BY name, arch",
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
    pub async fn package_history(&self, host_id: &str) -> Result<Vec<PackageChange>, StoreError> {
        let rows = sqlx::query(
            "SELECT host_id, name, arch, old_version, new_version, changed_ms FROM package_history \
             WHERE host_id = ? ORDER BY changed_ms, rowid",
        )
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

    pub async fn list_hosts(&self, filter: &HostFilter) -> Result<Vec<Host>, StoreError> {
        let mut conditions = Vec::new();
        if filter.infected_only {
            conditions.push("EXISTS (SELECT 1 FROM findings f WHERE f.host_id = h.host_id AND f.state = 'open')");
        }
        if filter.has_package.is_some() {
            conditions.push(
                "EXISTS (SELECT 1 FROM packages p WHERE p.host_id = h.host_id AND p.name = ?)",
            );
        }
        if filter.missing_kb.is_some() {
            // Only Windows hosts whose update list is complete can be said to miss a KB.
            conditions.push(
                "EXISTS (SELECT 1 FROM host_inventory i WHERE i.host_id = h.host_id \
                     AND i.family = 'windows' AND NOT EXISTS (SELECT 1 FROM json_each(i.partial) g \
                         WHERE json_extract(g.value, '$.source') = 'hotfixes')) \
                 AND NOT EXISTS (SELECT 1 FROM hotfixes x WHERE x.host_id = h.host_id AND x.kb = ?)",
            );
        }
        let mut sql = format!("SELECT {HOST_COLUMNS} FROM hosts h");
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        sql.push_str(" ORDER BY h.host_id");
        let mut query = sqlx::query(&sql);
        if let Some(name) = &filter.has_package {
            query = query.bind(name);
        }
        if let Some(kb) = &filter.missing_kb {
            query = query.bind(kb.to_ascii_uppercase());
        }
        let rows = query.fetch_all(&self.pool).await?;
        let mut hosts: Vec<Host> = rows.iter().map(host_from_row).collect::<Result<_, _>>()?;
        if let Some((name, below)) = &filter.package_below {
            let below_on = self.hosts_with_package_below(name, below).await?;
            hosts.retain(|h| below_on.contains(&h.host_id));
        }
        Ok(hosts)
    }

    /// Hosts with package `name` installed at a version below `version`, each compared in the
    /// ordering of the package manager that installed it.
    async fn hosts_with_package_below(
        &self,
        name: &str,
        version: &str,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let rows = sqlx::query("SELECT host_id, version, manager FROM packages WHERE name = ?")
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

    pub async fn list_findings(&self, filter: &FindingFilter) -> Result<Vec<Finding>, StoreError> {
        let rows = match &filter.host_id {
            Some(host) => {
                sqlx::query(&format!(
                    "SELECT {FINDING_COLUMNS} FROM findings WHERE host_id = ? ORDER BY id"
                ))
                .bind(host)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {FINDING_COLUMNS} FROM findings ORDER BY id"
                ))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(finding_from_row).collect()
    }
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
    let rows = sqlx::query("SELECT name, arch, version, manager FROM packages WHERE host_id = ?")
        .bind(host_id)
        .fetch_all(&mut **tx)
        .await?;
    let mut before: std::collections::HashMap<(String, String), (String, String)> = rows
        .into_iter()
        .map(|row| {
            let key = (row.get("name"), row.get("arch"));
            (key, (row.get("version"), row.get("manager")))
        })
        .collect();
    // (package, old version) for what appeared or changed; names of those whose manager only
    // became known.
    let mut upserts: Vec<(&InstalledPackage, Option<String>)> = Vec::new();
    let mut manager_only: Vec<&InstalledPackage> = Vec::new();
    for p in packages {
        match before.remove(&(p.name.clone(), p.arch.clone())) {
            Some((version, manager)) if version == p.version => {
                if manager != scheme_name(p.manager) {
                    manager_only.push(p);
                }
            }
            old => upserts.push((p, old.map(|(version, _)| version))),
        }
    }
    if let Some(removed) = removed {
        before.retain(|key, _| removed.contains(key));
    }
    // Many rows per statement: a first inventory of 5,000 packages is 5,000 rows here and as
    // many in the history, and one statement each costs most of the time.
    for chunk in upserts.chunks(ROWS_PER_INSERT) {
        let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO packages (host_id, name, arch, version, source, installed_ms, manager) ",
        );
        insert.push_values(chunk, |mut row, (p, _)| {
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
        insert.build().execute(&mut **tx).await?;
    }
    for p in manager_only {
        sqlx::query("UPDATE packages SET manager = ? WHERE host_id = ? AND name = ? AND arch = ?")
            .bind(scheme_name(p.manager))
            .bind(host_id)
            .bind(&p.name)
            .bind(&p.arch)
            .execute(&mut **tx)
            .await?;
    }
    for (name, arch) in before.keys() {
        sqlx::query("DELETE FROM packages WHERE host_id = ? AND name = ? AND arch = ?")
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
        .chain(before.iter().map(|((name, arch), (version, _))| {
            (name.as_str(), arch.as_str(), Some(version.as_str()), None)
        }))
        .collect();
    for chunk in history.chunks(ROWS_PER_INSERT) {
        let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO package_history (host_id, name, arch, old_version, new_version, changed_ms) ",
        );
        insert.push_values(chunk, |mut row, (name, arch, old, new)| {
            row.push_bind(host_id)
                .push_bind(*name)
                .push_bind(*arch)
                .push_bind(*old)
                .push_bind(*new)
                .push_bind(now_ms);
        });
        insert.build().execute(&mut **tx).await?;
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
    let rows = sqlx::query("SELECT kb FROM hotfixes WHERE host_id = ?")
        .bind(host_id)
        .fetch_all(&mut **tx)
        .await?;
    let mut before: std::collections::HashSet<String> =
        rows.into_iter().map(|row| row.get("kb")).collect();
    let history =
        "INSERT INTO hotfix_history (host_id, kb, installed, changed_ms) VALUES (?, ?, ?, ?)";
    for h in hotfixes {
        let known = before.remove(&h.kb);
        // Title and date may be filled in by a later source (QFE first, update history later).
        sqlx::query(
            "INSERT INTO hotfixes (host_id, kb, title, installed_on, first_seen_ms) VALUES (?, ?, ?, ?, ?) \
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
        if !known {
            sqlx::query(history)
                .bind(host_id)
                .bind(&h.kb)
                .bind(1)
                .bind(now_ms)
                .execute(&mut **tx)
                .await?;
        }
    }
    if let Some(removed) = removed {
        before.retain(|kb| removed.contains(kb));
    }
    for kb in before {
        sqlx::query("DELETE FROM hotfixes WHERE host_id = ? AND kb = ?")
            .bind(host_id)
            .bind(&kb)
            .execute(&mut **tx)
            .await?;
        sqlx::query(history)
            .bind(host_id)
            .bind(&kb)
            .bind(0)
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
    // What leaves: the delta's list, or else every stored program not reported now.
    let gone: Vec<Program> = match removed {
        Some(removed) => removed.to_vec(),
        None => {
            let rows =
                sqlx::query("SELECT name, version, publisher FROM programs WHERE host_id = ?")
                    .bind(host_id)
                    .fetch_all(&mut **tx)
                    .await?;
            rows.into_iter()
                .map(|row| Program {
                    name: row.get("name"),
                    version: row.get("version"),
                    publisher: row.get("publisher"),
                })
                .filter(|stored| !programs.contains(stored))
                .collect()
        }
    };
    for p in programs {
        sqlx::query(
            "INSERT INTO programs (host_id, name, version, publisher, first_seen_ms) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(host_id)
        .bind(&p.name)
        .bind(&p.version)
        .bind(&p.publisher)
        .bind(now_ms)
        .execute(&mut **tx)
        .await?;
    }
    for p in &gone {
        sqlx::query(
            "DELETE FROM programs WHERE host_id = ? AND name = ? AND version = ? AND publisher = ?",
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

fn host_from_row(row: &SqliteRow) -> Result<Host, StoreError> {
    let ips: String = row.try_get("ip_addresses")?;
    Ok(Host {
        host_id: row.try_get("host_id")?,
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
    })
}

fn finding_from_row(row: &SqliteRow) -> Result<Finding, StoreError> {
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
        state: row.try_get("state")?,
        first_seen_ms: row.try_get("first_seen_ms")?,
        last_seen_ms: row.try_get("last_seen_ms")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        }
    }

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("sub/c.db").display());
        let store = SqliteStore::open(&url).await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn findings_are_idempotent_and_counted_per_host() {
        let (_dir, store) = store().await;
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
        assert_eq!(all[0].state, "open");
        let hosts = store.list_hosts(&HostFilter::default()).await.unwrap();
        assert_eq!(
            hosts.iter().map(|h| h.open_findings).collect::<Vec<_>>(),
            vec![2, 0]
        );
        let infected = store
            .list_hosts(&HostFilter {
                infected_only: true,
                ..HostFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(infected.len(), 1);
        assert_eq!(infected[0].host_id, "a");
        assert_eq!(infected[0].ip_addresses, vec!["10.0.0.5".to_owned()]);
        let only_b = store
            .list_findings(&FindingFilter {
                host_id: Some("b".into()),
            })
            .await
            .unwrap();
        assert!(only_b.is_empty());
    }

    #[tokio::test]
    async fn stale_disconnect_does_not_mark_a_reconnected_host_offline() {
        let (_dir, store) = store().await;
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
        store.reset_connections().await.unwrap();
        assert!(!store.list_hosts(&HostFilter::default()).await.unwrap()[0].online);
    }

    #[tokio::test]
    async fn findings_for_an_unknown_host_are_refused() {
        let (_dir, store) = store().await;
        assert!(
            store
                .record_findings("ghost", &[finding("/x")], 1)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn sweep_reports_upsert() {
        let (_dir, store) = store().await;
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

    #[tokio::test]
    async fn progress_never_moves_backwards() {
        let (_dir, store) = store().await;
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

    #[tokio::test]
    async fn package_lists_replace_and_leave_a_history() {
        let (_dir, store) = store().await;
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
        let err = SqliteStore::open(&url).await.err().unwrap().to_string();
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

    #[tokio::test]
    async fn inventories_keep_lists_they_could_not_replace_whole() {
        let (_dir, store) = store().await;
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
        let history: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT kb, installed, changed_ms FROM hotfix_history WHERE host_id = 'w1' ORDER BY rowid",
        )
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

    #[tokio::test]
    async fn hosts_are_found_by_package_version_and_missing_update() {
        let (_dir, store) = store().await;
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
        let ids = |hosts: Vec<Host>| hosts.into_iter().map(|h| h.host_id).collect::<Vec<_>>();
        let filter = |f: HostFilter| {
            let store = store.clone();
            async move { ids(store.list_hosts(&f).await.unwrap()) }
        };
        assert_eq!(
            filter(HostFilter {
                has_package: Some("openssl".into()),
                ..HostFilter::default()
            })
            .await,
            vec!["deb", "rhel"]
        );
        assert_eq!(
            filter(HostFilter {
                package_below: Some(("openssl".into(), "3.0.11-1".into())),
                ..HostFilter::default()
            })
            .await,
            vec!["deb"]
        );
        assert_eq!(
            filter(HostFilter {
                package_below: Some(("openssl".into(), "3.0.11-1~deb12u1".into())),
                ..HostFilter::default()
            })
            .await,
            Vec::<String>::new()
        );
        assert_eq!(
            filter(HostFilter {
                package_below: Some(("openssl".into(), "1:3.0.7-26.el9".into())),
                ..HostFilter::default()
            })
            .await,
            // Epoch 1 is above any version without one: the Debian host is below it too.
            vec!["deb", "rhel"]
        );
        assert_eq!(
            filter(HostFilter {
                package_below: Some(("openssl".into(), "1:3.0.7-25.el9".into())),
                ..HostFilter::default()
            })
            .await,
            vec!["deb"]
        );
        // Linux hosts and hosts whose update list is incomplete are never "missing" a KB.
        assert_eq!(
            filter(HostFilter {
                missing_kb: Some("KB5034441".into()),
                ..HostFilter::default()
            })
            .await,
            Vec::<String>::new()
        );
        assert_eq!(
            filter(HostFilter {
                missing_kb: Some("KB5034439".into()),
                ..HostFilter::default()
            })
            .await,
            vec!["win"]
        );
    }

    #[tokio::test]
    async fn connection_lists_replace_whole_and_filter_by_network() {
        let (_dir, store) = store().await;
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

    #[tokio::test]
    async fn a_delta_applies_only_onto_the_lists_it_was_made_against() {
        let (_dir, store) = store().await;
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
        let versions = |store: SqliteStore| async move {
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
}
