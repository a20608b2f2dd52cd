//! The SQLite backend's enrollment tokens (see [`crate::enroll`]).

use sqlx::Row;

use super::sql::{SqlStore, insert_audit};
use super::{EnrollStore, StoreError, async_trait};
use crate::enroll::EnrollToken;
use crate::model::NewAuditEntry;

const COLUMNS: &str = "id, label, uses_allowed, uses, expires_ms, group_name, created_ms, \
                       created_by, revoked_ms, revoked_by";

fn token_from_row(row: &sqlx::any::AnyRow) -> Result<EnrollToken, StoreError> {
    let revoked_ms: Option<i64> = row.try_get("revoked_ms")?;
    let revoked_by: Option<String> = row.try_get("revoked_by")?;
    let count = |v: Option<i64>| v.map(|v| u64::try_from(v).unwrap_or(0));
    Ok(EnrollToken {
        id: row.try_get("id")?,
        label: row.try_get("label")?,
        uses_allowed: count(row.try_get("uses_allowed")?),
        uses: count(Some(row.try_get("uses")?)).unwrap_or(0),
        expires_ms: row.try_get("expires_ms")?,
        group: row.try_get("group_name")?,
        created_ms: row.try_get("created_ms")?,
        created_by: row.try_get("created_by")?,
        revoked: revoked_ms.map(|at| (at, revoked_by.unwrap_or_default())),
    })
}

#[async_trait]
impl EnrollStore for SqlStore {
    /// Stores a new token (`token` with its id unset, `token_sha256` what is kept of it) and
    /// the audit entry; its id.
    async fn create_enroll_token(
        &self,
        token: &EnrollToken,
        token_sha256: &str,
        audit: &NewAuditEntry,
    ) -> Result<i64, StoreError> {
        let mut tx = self.write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO enroll_tokens (label, token_sha256, uses_allowed, expires_ms, group_name, \
                 created_ms, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(&token.label)
        .bind(token_sha256)
        .bind(
            token
                .uses_allowed
                .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
        )
        .bind(token.expires_ms)
        .bind(&token.group)
        .bind(token.created_ms)
        .bind(&token.created_by)
        .fetch_one(&mut *tx)
        .await?;
        let audit = NewAuditEntry {
            target: format!("token {id}"),
            ..audit.clone()
        };
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Takes one use of the token whose SHA-256 is `token_sha256` for `host_id`, with the
    /// audit entry, if the token is active at `now_ms`; otherwise its state (`None`: no
    /// such token).
    async fn consume_enroll_token(
        &self,
        token_sha256: &str,
        host_id: &str,
        now_ms: i64,
    ) -> Result<Result<EnrollToken, Option<crate::enroll::TokenState>>, StoreError> {
        let mut tx = self.write().await?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM enroll_tokens WHERE token_sha256 = $1"
        ))
        .bind(token_sha256)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(Err(None));
        };
        let mut token = token_from_row(&row)?;
        let state = token.state(now_ms);
        if state != crate::enroll::TokenState::Active {
            return Ok(Err(Some(state)));
        }
        sqlx::query("UPDATE enroll_tokens SET uses = uses + 1 WHERE id = $1")
            .bind(token.id)
            .execute(&mut *tx)
            .await?;
        token.uses += 1;
        insert_audit(
            &mut tx,
            &NewAuditEntry {
                at_ms: now_ms,
                actor: format!("token {} ({})", token.id, token.label),
                action: "enroll.host".into(),
                target: host_id.to_owned(),
                detail: format!(
                    "use {} of {}",
                    token.uses,
                    token.uses_allowed.map_or("any".into(), |n| n.to_string())
                ),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(Ok(token))
    }

    /// Every token, oldest first.
    async fn list_enroll_tokens(&self) -> Result<Vec<EnrollToken>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM enroll_tokens ORDER BY id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// Revokes token `id` with the audit entry; `false` if there is no such token or it was
    /// revoked already.
    async fn revoke_enroll_token(
        &self,
        id: i64,
        audit: &NewAuditEntry,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let changed = sqlx::query(
            "UPDATE enroll_tokens SET revoked_ms = $1, revoked_by = $2 \
             WHERE id = $3 AND revoked_ms IS NULL",
        )
        .bind(audit.at_ms)
        .bind(&audit.actor)
        .bind(id)
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
}
