//! The SQLite backend's Microsoft advisories, and the software facts the assessment reads.

use std::collections::HashMap;

use sqlx::Row;

use super::sql::{SqlStore, insert_audit};
use super::{StoreError, VulnStore, async_trait};
use crate::model::NewAuditEntry;
use crate::vuln::product::HostOs;
use crate::vuln::{Advisory, HostSoftware, StoredAdvisory};

impl SqlStore {
    /// Runs `sql`, binding `host_id` as `?1` when there is one.
    async fn fetch_for(
        &self,
        sql: &str,
        host_id: Option<&str>,
    ) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
        let mut query = sqlx::query(sql);
        if let Some(id) = host_id {
            query = query.bind(id);
        }
        Ok(query.fetch_all(&self.pool).await?)
    }
}

#[async_trait]
impl VulnStore for SqlStore {
    /// The stored month `id`, without its body.
    async fn advisory(&self, id: &str) -> Result<Option<StoredAdvisory>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT id, title, revision, current_release, file_name, format, sha256, imported_ms, \
                 imported_by, cves, products, fixes FROM advisories WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        Ok(Some(StoredAdvisory {
            id: row.try_get("id")?,
            title: row.try_get("title")?,
            revision: row.try_get("revision")?,
            current_release: row.try_get("current_release")?,
            file_name: row.try_get("file_name")?,
            format: row.try_get("format")?,
            sha256: row.try_get("sha256")?,
            imported_ms: row.try_get("imported_ms")?,
            imported_by: row.try_get("imported_by")?,
            cves: row.try_get::<i64, _>("cves")? as u64,
            products: row.try_get::<i64, _>("products")? as u64,
            fixes: row.try_get::<i64, _>("fixes")? as u64,
        }))
    }

    /// Stores a month (replacing an earlier revision of it), with an audit entry.
    async fn save_advisory(
        &self,
        record: &StoredAdvisory,
        advisory: &Advisory,
    ) -> Result<(), StoreError> {
        let body = serde_json::to_string(advisory)
            .map_err(|e| StoreError::Corrupt(format!("advisory {}: {e}", advisory.id)))?;
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO advisories (id, title, revision, current_release, file_name, \
                 format, sha256, imported_ms, imported_by, cves, products, fixes, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (id) DO UPDATE SET title = excluded.title, revision = excluded.revision, \
                 current_release = excluded.current_release, file_name = excluded.file_name, \
                 format = excluded.format, sha256 = excluded.sha256, \
                 imported_ms = excluded.imported_ms, imported_by = excluded.imported_by, \
                 cves = excluded.cves, products = excluded.products, fixes = excluded.fixes, \
                 body = excluded.body",
        )
        .bind(&record.id)
        .bind(&record.title)
        .bind(&record.revision)
        .bind(&record.current_release)
        .bind(&record.file_name)
        .bind(&record.format)
        .bind(&record.sha256)
        .bind(record.imported_ms)
        .bind(&record.imported_by)
        .bind(record.cves as i64)
        .bind(record.products as i64)
        .bind(record.fixes as i64)
        .bind(&body)
        .execute(&mut *tx)
        .await?;
        insert_audit(
            &mut tx,
            &NewAuditEntry {
                at_ms: record.imported_ms,
                actor: record.imported_by.clone(),
                action: "vuln.import".into(),
                target: format!("advisory {}", record.id),
                detail: format!(
                    "{} revision {} of {} ({} CVEs, {} fixes; {} sha256 {})",
                    record.title,
                    record.revision,
                    record.current_release,
                    record.cves,
                    record.fixes,
                    record.file_name,
                    record.sha256
                ),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every stored month, as the assessment reads them.
    async fn advisories(&self) -> Result<Vec<Advisory>, StoreError> {
        let rows = sqlx::query("SELECT id, body FROM advisories ORDER BY current_release")
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                let body: String = row.try_get("body")?;
                serde_json::from_str(&body)
                    .map_err(|e| StoreError::Corrupt(format!("advisory {id}: {e}")))
            })
            .collect()
    }

    /// OS facts, installed updates and programs of one host, or of every host (in host order).
    async fn host_software(&self, host_id: Option<&str>) -> Result<Vec<HostSoftware>, StoreError> {
        let only = if host_id.is_some() {
            "WHERE h.host_id = $1"
        } else {
            "WHERE h.removed_ms IS NULL"
        };
        let sql = format!(
            "SELECT h.host_id, h.hostname, i.family, i.product_name, i.display_version, i.build, \
                 i.arch, i.installation_type, CASE WHEN i.host_id IS NULL THEN 0 ELSE 1 END AS has_inventory \
             FROM hosts h LEFT JOIN host_inventory i ON i.host_id = h.host_id {only} \
             ORDER BY h.host_id"
        );
        let hosts = self.fetch_for(&sql, host_id).await?;
        let mut out = Vec::with_capacity(hosts.len());
        let mut index = HashMap::with_capacity(hosts.len());
        for row in hosts {
            let host_id: String = row.try_get("host_id")?;
            let os = if row.try_get::<i64, _>("has_inventory")? != 0 {
                Some(HostOs {
                    family: row.try_get("family")?,
                    product_name: row.try_get("product_name")?,
                    display_version: row.try_get("display_version")?,
                    build: row.try_get("build")?,
                    arch: row.try_get("arch")?,
                    installation_type: row.try_get("installation_type")?,
                })
            } else {
                None
            };
            index.insert(host_id.clone(), out.len());
            out.push(HostSoftware {
                host_id,
                hostname: row.try_get("hostname")?,
                os,
                hotfixes: Vec::new(),
                programs: Vec::new(),
            });
        }
        let only = if host_id.is_some() {
            "WHERE host_id = $1"
        } else {
            ""
        };
        let sql = format!("SELECT host_id, kb FROM hotfixes {only}");
        let hotfixes = self.fetch_for(&sql, host_id).await?;
        for row in hotfixes {
            let host: String = row.try_get("host_id")?;
            if let Some(&i) = index.get(&host) {
                out[i].hotfixes.push(row.try_get("kb")?);
            }
        }
        let sql = format!("SELECT host_id, name, version, publisher FROM programs {only}");
        let programs = self.fetch_for(&sql, host_id).await?;
        for row in programs {
            let host: String = row.try_get("host_id")?;
            if let Some(&i) = index.get(&host) {
                out[i].programs.push((
                    row.try_get("name")?,
                    row.try_get("version")?,
                    row.try_get("publisher")?,
                ));
            }
        }
        Ok(out)
    }
}
