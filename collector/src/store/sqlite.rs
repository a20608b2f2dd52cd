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
    Finding, FindingFilter, FindingKind, Host, HostFilter, HostHello, InstalledPackage, NewFinding,
    PackageChange, StoredPackage, SweepProgress, SweepReport,
};

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
        let rows = sqlx::query("SELECT name, arch, version FROM packages WHERE host_id = ?")
            .bind(host_id)
            .fetch_all(&mut *tx)
            .await?;
        let mut before: std::collections::HashMap<(String, String), String> = rows
            .into_iter()
            .map(|row| ((row.get("name"), row.get("arch")), row.get("version")))
            .collect();
        let history = "INSERT INTO package_history (host_id, name, arch, old_version, new_version, changed_ms) \
                       VALUES (?, ?, ?, ?, ?, ?)";
        for p in packages {
            let old = before.remove(&(p.name.clone(), p.arch.clone()));
            if old.as_deref() == Some(p.version.as_str()) {
                continue;
            }
            sqlx::query(
                "INSERT INTO packages (host_id, name, arch, version, source, installed_ms) VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (host_id, name, arch) DO UPDATE SET version = excluded.version, \
                     source = excluded.source, installed_ms = excluded.installed_ms",
            )
            .bind(host_id)
            .bind(&p.name)
            .bind(&p.arch)
            .bind(&p.version)
            .bind(&p.source)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            sqlx::query(history)
                .bind(host_id)
                .bind(&p.name)
                .bind(&p.arch)
                .bind(old)
                .bind(&p.version)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
        }
        for ((name, arch), version) in before {
            sqlx::query("DELETE FROM packages WHERE host_id = ? AND name = ? AND arch = ?")
                .bind(host_id)
                .bind(&name)
                .bind(&arch)
                .execute(&mut *tx)
                .await?;
            sqlx::query(history)
                .bind(host_id)
                .bind(&name)
                .bind(&arch)
                .bind(Some(version))
                .bind(None::<String>)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A host's installed packages, by name.
    pub async fn list_packages(&self, host_id: &str) -> Result<Vec<StoredPackage>, StoreError> {
        let rows = sqlx::query(
            "SELECT host_id, name, arch, version, source, installed_ms FROM packages \
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
        let mut sql = format!("SELECT {HOST_COLUMNS} FROM hosts h");
        if filter.infected_only {
            sql.push_str(" WHERE EXISTS (SELECT 1 FROM findings f WHERE f.host_id = h.host_id AND f.state = 'open')");
        }
        sql.push_str(" ORDER BY h.host_id");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(host_from_row).collect()
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
}
