//! The SQLite backend's agent certificates: which host presented which serial, and which are
//! revoked (see [`crate::certs`]).

use sqlx::Row;

use super::sql::{SqlStore, insert_audit};
use super::{CertStore, StoreError, async_trait};
use crate::certs::HostCert;
use crate::model::NewAuditEntry;

#[async_trait]
impl CertStore for SqlStore {
    /// Every certificate `host_id` has presented.
    async fn host_certs(&self, host_id: &str) -> Result<Vec<HostCert>, StoreError> {
        let rows = sqlx::query(
            "SELECT serial, not_before_ms, revoked_ms FROM host_certs WHERE host_id = $1 ORDER BY not_before_ms",
        )
        .bind(host_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(HostCert {
                    serial: row.try_get("serial")?,
                    not_before_ms: row.try_get("not_before_ms")?,
                    revoked: row.try_get::<Option<i64>, _>("revoked_ms")?.is_some(),
                })
            })
            .collect()
    }

    /// Notes that `host_id` presented `cert` (first or again).
    async fn record_host_cert(
        &self,
        host_id: &str,
        cert: &HostCert,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO host_certs (serial, host_id, not_before_ms, first_seen_ms, last_seen_ms) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (serial) DO UPDATE SET last_seen_ms = excluded.last_seen_ms",
        )
        .bind(&cert.serial)
        .bind(host_id)
        .bind(cert.not_before_ms)
        .bind(now_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Revokes `serials` of `host_id` (those not revoked already), or with `None` every
    /// certificate of the host issued until now, seen or not; with the audit entry when an
    /// admin asked. The serials revoked now.
    async fn revoke_certs(
        &self,
        host_id: &str,
        serials: Option<&[String]>,
        by: &str,
        note: &str,
        now_ms: i64,
        audit: Option<&NewAuditEntry>,
    ) -> Result<Vec<String>, StoreError> {
        let mut tx = self.write().await?;
        let candidates: Vec<String> = sqlx::query_scalar(
            "SELECT serial FROM host_certs WHERE host_id = $1 AND revoked_ms IS NULL",
        )
        .bind(host_id)
        .fetch_all(&mut *tx)
        .await?;
        let revoked: Vec<String> = candidates
            .into_iter()
            .filter(|s| serials.is_none_or(|wanted| wanted.contains(s)))
            .collect();
        for serial in &revoked {
            sqlx::query(
                "UPDATE host_certs SET revoked_ms = $1, revoked_by = $2, revoke_note = $3 WHERE serial = $4",
            )
            .bind(now_ms)
            .bind(by)
            .bind(note)
            .bind(serial)
            .execute(&mut *tx)
            .await?;
        }
        if serials.is_none() {
            sqlx::query("UPDATE hosts SET certs_revoked_before_ms = $1 WHERE host_id = $2")
                .bind(crate::certs::revoked_before(now_ms))
                .bind(host_id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(audit) = audit {
            insert_audit(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(revoked)
    }

    /// Every revoked serial.
    async fn revoked_serials(&self) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT serial FROM host_certs WHERE revoked_ms IS NOT NULL")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Before when `hosts revoke` revoked the host's certificates, if it did.
    async fn certs_revoked_before(&self, host_id: &str) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar::<_, Option<i64>>(
            "SELECT certs_revoked_before_ms FROM hosts WHERE host_id = $1",
        )
        .bind(host_id)
        .fetch_optional(&self.pool)
        .await?
        .flatten())
    }

    /// Decommissions `host_id` with the audit entry; `false` if it was already.
    async fn remove_host(&self, host_id: &str, audit: &NewAuditEntry) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let changed = sqlx::query(
            "UPDATE hosts SET removed_ms = $1, removed_by = $2, remove_note = $3, connected = 0 \
             WHERE host_id = $4 AND removed_ms IS NULL",
        )
        .bind(audit.at_ms)
        .bind(&audit.actor)
        .bind(&audit.detail)
        .bind(host_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Whether the collector knows `host_id`.
    async fn host_exists(&self, host_id: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query("SELECT 1 FROM hosts WHERE host_id = $1")
            .bind(host_id)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }
}
