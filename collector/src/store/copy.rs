//! `hygiene-collector db migrate`: every row of one database copied into another, either
//! engine to either, checked table by table.

use sqlx::Row;
use tokio_stream::StreamExt as _;

use super::StoreError;
use super::query::SqlBuilder;
use super::sql::{Dialect, ROWS_PER_INSERT, SqlStore};

/// Tables in an order that satisfies their foreign keys; every table of the schema is here
/// (a test checks it against both engines' catalogues).
pub const TABLES: &[&str] = &[
    "hosts",
    "sweeps",
    "ip_lists",
    "ip_list_data",
    "findings",
    "finding_history",
    "sweep_targets",
    "sweep_reports",
    "sweep_progress",
    "packages",
    "package_history",
    "hotfixes",
    "hotfix_history",
    "programs",
    "host_inventory",
    "connections",
    "connection_reports",
    "host_bundles",
    "bundles",
    "advisories",
    "allowlist",
    "audit_log",
    "enroll_tokens",
    "host_certs",
    "status_snapshots",
];

/// Tables of the site's replicas while they run (events, liveness, leases): not copied, a
/// site starts on its new database with none.
pub const EPHEMERAL_TABLES: &[&str] = &["site_events", "replicas", "leases"];

/// Columns the database's triggers keep (each host's finding counts).
const TRIGGER_KEPT: &[(&str, &str)] = &[
    ("hosts", "open_findings"),
    ("hosts", "botnet_matches"),
    ("hosts", "requested_findings"),
    ("hosts", "quarantined_findings"),
];

/// One table's rows on each side after a copy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableCopy {
    pub table: String,
    pub source_rows: u64,
    pub target_rows: u64,
}

impl TableCopy {
    pub fn complete(&self) -> bool {
        self.source_rows == self.target_rows
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ColumnType {
    Integer,
    Real,
    Text,
    Blob,
}

impl SqlStore {
    /// Copies every row into `target`, which must hold none, table by table from one
    /// consistent read of this database; then counts both sides. Stop the collectors that
    /// write to this database first: rows written during the copy are not moved.
    pub async fn copy_into(&self, target: &SqlStore) -> Result<Vec<TableCopy>, StoreError> {
        for table in TABLES {
            if target.count(table).await? > 0 {
                return Err(StoreError::Refused(format!(
                    "the target database already holds data (table {table}); migrate into an empty one"
                )));
            }
        }
        // One read transaction: a consistent snapshot of the source (WAL on SQLite, MVCC on
        // PostgreSQL).
        let mut source = self.pool.begin().await?;
        let mut copied = Vec::new();
        for table in TABLES {
            let columns = target.columns(table).await?;
            let source_columns = self.columns(table).await?;
            // Columns only one side has (PostgreSQL's insertion-order `seq`) are left to their
            // defaults; rows go in the order they were inserted, so that order survives.
            // Counts the target's triggers keep are not copied: they count the findings as
            // those arrive.
            let columns: Vec<(String, ColumnType)> = columns
                .into_iter()
                .filter(|(name, _)| source_columns.iter().any(|(n, _)| n == name))
                .filter(|(name, _)| !TRIGGER_KEPT.contains(&(*table, name.as_str())))
                .collect();
            let names = columns
                .iter()
                .map(|(name, _)| quote(name))
                .collect::<Vec<_>>()
                .join(", ");
            let has = |column: &str| source_columns.iter().any(|(n, _)| n == column);
            let order = if has("id") {
                " ORDER BY id"
            } else if has("seq") {
                " ORDER BY seq"
            } else if self.dialect == Dialect::Sqlite {
                " ORDER BY rowid"
            } else {
                ""
            };
            let select = format!("SELECT {names} FROM {table}{order}");
            let mut rows = sqlx::query(&select).fetch(&mut *source);
            let mut batch = Vec::with_capacity(ROWS_PER_INSERT);
            let mut tx = target.write().await?;
            let mut source_rows = 0_u64;
            while let Some(row) = rows.next().await {
                let row = row?;
                source_rows += 1;
                batch.push(row);
                if batch.len() == ROWS_PER_INSERT {
                    insert(&mut tx, table, &names, &columns, &batch).await?;
                    batch.clear();
                }
            }
            if !batch.is_empty() {
                insert(&mut tx, table, &names, &columns, &batch).await?;
            }
            drop(rows);
            tx.commit().await?;
            copied.push(TableCopy {
                table: (*table).to_owned(),
                source_rows,
                target_rows: 0,
            });
        }
        source.commit().await?;
        target.restart_identities().await?;
        for copy in &mut copied {
            copy.target_rows = target.count(&copy.table).await?;
        }
        Ok(copied)
    }

    async fn count(&self, table: &str) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&self.pool)
            .await?;
        Ok(n.max(0) as u64)
    }

    /// A table's columns and their types, from the engine's catalogue.
    async fn columns(&self, table: &str) -> Result<Vec<(String, ColumnType)>, StoreError> {
        let sql = match self.dialect {
            Dialect::Sqlite => "SELECT name, type FROM pragma_table_info($1) ORDER BY cid",
            Dialect::Postgres => {
                "SELECT CAST(column_name AS TEXT), CAST(data_type AS TEXT) FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position"
            }
        };
        let rows = sqlx::query(sql).bind(table).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let name: String = row.try_get(0)?;
                let declared: String = row.try_get(1)?;
                let upper = declared.to_ascii_uppercase();
                let kind = if upper.contains("INT") {
                    ColumnType::Integer
                } else if upper.contains("BLOB") || upper.contains("BYTEA") {
                    ColumnType::Blob
                } else if upper.contains("REAL")
                    || upper.contains("DOUBLE")
                    || upper.contains("FLOAT")
                {
                    ColumnType::Real
                } else {
                    ColumnType::Text
                };
                Ok((name, kind))
            })
            .collect()
    }

    /// After rows were inserted with their ids, PostgreSQL's identity sequences are moved past
    /// them (SQLite keeps its AUTOINCREMENT counters itself).
    async fn restart_identities(&self) -> Result<(), StoreError> {
        if self.dialect != Dialect::Postgres {
            return Ok(());
        }
        let rows = sqlx::query(
            "SELECT CAST(table_name AS TEXT), CAST(column_name AS TEXT) FROM information_schema.columns \
             WHERE table_schema = current_schema() AND is_identity = 'YES'",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let table: String = row.try_get(0)?;
            let column: String = row.try_get(1)?;
            sqlx::query(&format!(
                "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
                     COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
            ))
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }
}

async fn insert(
    tx: &mut super::sql::Tx<'_>,
    table: &str,
    names: &str,
    columns: &[(String, ColumnType)],
    rows: &[sqlx::any::AnyRow],
) -> Result<(), StoreError> {
    let mut insert = SqlBuilder::new(format!("INSERT INTO {table} ({names})"));
    let mut error = None;
    insert.push_values(rows, |tuple, row| {
        for (i, (name, kind)) in columns.iter().enumerate() {
            let bound = match kind {
                ColumnType::Integer => row.try_get::<Option<i64>, _>(i).map(|v| {
                    tuple.push_bind(v);
                }),
                ColumnType::Real => row.try_get::<Option<f64>, _>(i).map(|v| {
                    tuple.push_bind(v);
                }),
                ColumnType::Text => row.try_get::<Option<String>, _>(i).map(|v| {
                    tuple.push_bind(v);
                }),
                ColumnType::Blob => row.try_get::<Option<Vec<u8>>, _>(i).map(|v| {
                    tuple.push_bind(v);
                }),
            };
            if let Err(e) = bound {
                error.get_or_insert_with(|| format!("{table}.{name}: {e}"));
                tuple.push_bind(None::<i64>);
            }
        }
    });
    if let Some(error) = error {
        return Err(StoreError::Corrupt(error));
    }
    insert.build()?.execute(&mut **tx).await?;
    Ok(())
}

/// `full` is a keyword in PostgreSQL.
fn quote(column: &str) -> String {
    format!("\"{column}\"")
}
