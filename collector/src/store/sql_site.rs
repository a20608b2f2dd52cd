//! The site's replicas: events, liveness, leases (see `crate::site`).

use sqlx::Row;

use super::sql::{Dialect, SqlStore};
use super::{SiteStore, StoreError, async_trait};
use crate::site::{ReplicaRecord, StoredEvent};

/// The PostgreSQL channel that wakes replicas when an event is written.
const CHANNEL: &str = "hygiene_site_events";

#[async_trait]
impl SiteStore for SqlStore {
    fn replica_id(&self) -> &str {
        &self.replica
    }

    async fn publish_event(&self, body: &str, now_ms: i64) -> Result<i64, StoreError> {
        // Written under the store's write lock, so ids commit in order and a reader that has
        // seen id N has seen every id below it.
        let mut tx = self.write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO site_events (at_ms, origin, body) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(now_ms)
        .bind(&*self.replica)
        .bind(body)
        .fetch_one(&mut *tx)
        .await?;
        if self.dialect == Dialect::Postgres {
            sqlx::query(&format!("NOTIFY {CHANNEL}"))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    async fn events_after(&self, after: i64) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at_ms, origin, body FROM site_events WHERE id > $1 ORDER BY id LIMIT 1000",
        )
        .bind(after)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredEvent {
                    id: row.try_get("id")?,
                    at_ms: row.try_get("at_ms")?,
                    origin: row.try_get("origin")?,
                    body: row.try_get("body")?,
                })
            })
            .collect()
    }

    async fn last_event_id(&self) -> Result<i64, StoreError> {
        let id: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM site_events")
            .fetch_one(&self.pool)
            .await?;
        Ok(id.unwrap_or(0))
    }

    async fn prune_events(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.write().await?;
        let pruned = sqlx::query("DELETE FROM site_events WHERE at_ms < $1")
            .bind(before_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(pruned)
    }

    async fn replica_seen(
        &self,
        listen: &str,
        now_ms: i64,
        dead_before_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO replicas (id, listen, started_ms, seen_ms) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (id) DO UPDATE SET seen_ms = excluded.seen_ms, listen = excluded.listen",
        )
        .bind(&*self.replica)
        .bind(listen)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        // The hosts of a replica that stopped noting itself are no longer connected.
        sqlx::query(
            "UPDATE hosts SET connected = 0 WHERE connected = 1 AND (replica IS NULL \
             OR replica NOT IN (SELECT id FROM replicas WHERE seen_ms >= $1))",
        )
        .bind(dead_before_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM replicas WHERE seen_ms < $1")
            .bind(dead_before_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn replica_gone(&self) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM replicas WHERE id = $1")
            .bind(&*self.replica)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE hosts SET connected = 0 WHERE replica = $1")
            .bind(&*self.replica)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn replicas(&self) -> Result<Vec<ReplicaRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.id, r.listen, r.started_ms, r.seen_ms, \
             (SELECT COUNT(*) FROM hosts h WHERE h.replica = r.id AND h.connected = 1) AS hosts \
             FROM replicas r ORDER BY r.listen, r.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ReplicaRecord {
                    id: row.try_get("id")?,
                    listen: row.try_get("listen")?,
                    started_ms: row.try_get("started_ms")?,
                    seen_ms: row.try_get("seen_ms")?,
                    connected_hosts: row.try_get::<i64, _>("hosts")? as u64,
                })
            })
            .collect()
    }

    async fn take_lease(&self, name: &str, now_ms: i64, until_ms: i64) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let held: Option<String> = sqlx::query_scalar(
            "INSERT INTO leases (name, holder, until_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms \
             WHERE leases.holder = excluded.holder OR leases.until_ms < $4 \
             RETURNING holder",
        )
        .bind(name)
        .bind(&*self.replica)
        .bind(until_ms)
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(held.is_some())
    }

    async fn event_cues(&self) -> Option<tokio::sync::mpsc::Receiver<()>> {
        if self.dialect != Dialect::Postgres {
            return None;
        }
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let url = self.url.clone();
        tokio::spawn(async move {
            // Reconnects on its own; while it is down the events are still read every second.
            loop {
                match sqlx::postgres::PgListener::connect(&url).await {
                    Ok(mut listener) => {
                        if let Err(err) = listener.listen(CHANNEL).await {
                            tracing::warn!("cannot listen for site events: {err}");
                        } else {
                            loop {
                                match listener.recv().await {
                                    Ok(_) => {
                                        if tx.is_closed() {
                                            return;
                                        }
                                        let _ = tx.try_send(());
                                    }
                                    Err(err) => {
                                        tracing::warn!("site event notifications: {err}");
                                        break;
                                    }
                                }
                            }
                        }
                    }
                    Err(err) => tracing::warn!("cannot listen for site events: {err}"),
                }
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            }
        });
        Some(rx)
    }
}
