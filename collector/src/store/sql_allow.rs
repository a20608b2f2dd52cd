//! The SQLite backend's allowlist: entries, and the findings they make false positives.

use sqlx::Row;

use super::sql::{SqlStore, Tx, insert_audit, insert_history, parse_state};
use super::{AllowStore, StoreError, async_trait};
use crate::allowlist::{AllowEntry, AllowMatch, FileFinding};
use crate::findings::FindingState;
use crate::model::NewAuditEntry;

const ENTRY_COLUMNS: &str =
    "id, kind, value, host_id, note, created_ms, created_by, expires_ms, removed_ms, removed_by";

fn entry_from_row(row: &sqlx::any::AnyRow) -> Result<AllowEntry, StoreError> {
    let kind: String = row.try_get("kind")?;
    let value: String = row.try_get("value")?;
    let removed_ms: Option<i64> = row.try_get("removed_ms")?;
    let removed_by: Option<String> = row.try_get("removed_by")?;
    Ok(AllowEntry {
        id: row.try_get("id")?,
        matcher: AllowMatch::parse(&kind, &value)
            .map_err(|e| StoreError::Corrupt(format!("allowlist entry: {e}")))?,
        host_id: row.try_get("host_id")?,
        note: row.try_get("note")?,
        created_ms: row.try_get("created_ms")?,
        created_by: row.try_get("created_by")?,
        expires_ms: row.try_get("expires_ms")?,
        removed: removed_ms.map(|at| (at, removed_by.unwrap_or_default())),
    })
}

/// The entries in force at `now_ms`, within `tx`.
pub(super) async fn active_entries(
    tx: &mut Tx<'_>,
    now_ms: i64,
) -> Result<Vec<AllowEntry>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {ENTRY_COLUMNS} FROM allowlist WHERE removed_ms IS NULL \
         AND (expires_ms IS NULL OR expires_ms > $1) ORDER BY id"
    ))
    .bind(now_ms)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter().map(entry_from_row).collect()
}

#[async_trait]
impl AllowStore for SqlStore {
    /// Adds an entry and makes every finding it matches now (open, quarantine asked for or
    /// done) a false positive, naming it in their history; audited. Returns the entry and the
    /// findings it changed.
    async fn add_allow(
        &self,
        entry: &AllowEntry,
        now_ms: i64,
    ) -> Result<(AllowEntry, Vec<i64>), StoreError> {
        let mut tx = self.write().await?;
        if let Some(host) = &entry.host_id {
            let known = sqlx::query("SELECT 1 FROM hosts WHERE host_id = $1")
                .bind(host)
                .fetch_optional(&mut *tx)
                .await?;
            if known.is_none() {
                return Err(StoreError::UnknownHosts(vec![host.clone()]));
            }
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO allowlist (kind, value, host_id, note, created_ms, created_by, expires_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(entry.matcher.kind())
        .bind(entry.matcher.value())
        .bind(&entry.host_id)
        .bind(&entry.note)
        .bind(entry.created_ms)
        .bind(&entry.created_by)
        .bind(entry.expires_ms)
        .fetch_one(&mut *tx)
        .await?;
        let stored = AllowEntry {
            id,
            ..entry.clone()
        };
        let rows = sqlx::query(
            "SELECT id, host_id, path, sha256, namespace, rule, state FROM findings \
             WHERE kind <> 'botnet_ip' \
               AND state IN ('open', 'reopened', 'quarantine_requested', 'quarantined')",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut changed = Vec::new();
        for row in rows {
            let (host_id, path, sha256, namespace, rule): (String, String, String, String, String) = (
                row.try_get("host_id")?,
                row.try_get("path")?,
                row.try_get("sha256")?,
                row.try_get("namespace")?,
                row.try_get("rule")?,
            );
            let finding = FileFinding {
                host_id: &host_id,
                path: &path,
                sha256: &sha256,
                namespace: &namespace,
                rule: &rule,
            };
            if !stored.matches(&finding, now_ms) {
                continue;
            }
            let finding_id: i64 = row.try_get("id")?;
            let from = parse_state(&row.try_get::<String, _>("state")?)?;
            sqlx::query(
                "UPDATE findings SET state = 'false_positive', state_changed_ms = $1, \
                     remediation_error = NULL WHERE id = $2",
            )
            .bind(now_ms)
            .bind(finding_id)
            .execute(&mut *tx)
            .await?;
            insert_history(
                &mut tx,
                finding_id,
                now_ms,
                &entry.created_by,
                Some(from),
                FindingState::FalsePositive,
                &stored.history_note(),
            )
            .await?;
            changed.push(finding_id);
        }
        insert_audit(
            &mut tx,
            &NewAuditEntry {
                at_ms: now_ms,
                actor: entry.created_by.clone(),
                action: "allow.add".into(),
                target: format!("allowlist entry {id}"),
                detail: format!(
                    "{} on {}{}: {}; {} finding(s) now false positives",
                    stored.matcher,
                    stored.host_id.as_deref().unwrap_or("every host"),
                    stored
                        .expires_ms
                        .map(|at| format!(", until {}", hygiene_proto::format_ms(at)))
                        .unwrap_or_default(),
                    stored.note,
                    changed.len()
                ),
            },
        )
        .await?;
        tx.commit().await?;
        Ok((stored, changed))
    }

    /// Every entry, the removed and expired ones too, oldest first.
    async fn allow_entries(&self) -> Result<Vec<AllowEntry>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM allowlist ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// Takes an entry out of force (its findings stay false positives; `findings mark ID
    /// --state open` takes one back); audited. `false`: no such entry in force.
    async fn remove_allow(&self, id: i64, actor: &str, now_ms: i64) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "UPDATE allowlist SET removed_ms = $1, removed_by = $2 WHERE id = $3 AND removed_ms IS NULL",
        )
        .bind(now_ms)
        .bind(actor)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if done {
            insert_audit(
                &mut tx,
                &NewAuditEntry {
                    at_ms: now_ms,
                    actor: actor.to_owned(),
                    action: "allow.remove".into(),
                    target: format!("allowlist entry {id}"),
                    detail: String::new(),
                },
            )
            .await?;
        }
        tx.commit().await?;
        Ok(done)
    }
}
