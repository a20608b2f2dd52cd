//! Throwaway PostgreSQL databases for tests: the conformance suite runs every store test on
//! SQLite and, when `HYGIENE_TEST_POSTGRES` names a server (`postgres://user@host:port`), on a
//! fresh PostgreSQL database each; `.ci/run` sets it. Without it the PostgreSQL cases say they
//! were skipped, unless `HYGIENE_REQUIRE_POSTGRES=1` makes that a failure.

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

pub const SERVER_VAR: &str = "HYGIENE_TEST_POSTGRES";
pub const REQUIRE_VAR: &str = "HYGIENE_REQUIRE_POSTGRES";

/// A database created for one test and dropped when it is dropped.
pub struct TestDatabase {
    server: String,
    name: String,
}

impl TestDatabase {
    /// A new empty database, or `None` when no server is configured.
    ///
    /// # Panics
    /// When the server is configured but refuses (a test setup failure, said loudly), or when
    /// none is configured and `HYGIENE_REQUIRE_POSTGRES=1`.
    pub async fn create() -> Option<TestDatabase> {
        let Ok(server) = std::env::var(SERVER_VAR) else {
            if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
                panic!("{REQUIRE_VAR}=1 but {SERVER_VAR} names no PostgreSQL server");
            }
            eprintln!("PostgreSQL case skipped: set {SERVER_VAR}=postgres://user@host:port");
            return None;
        };
        let server = server.trim_end_matches('/').to_owned();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "hygiene_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        let mut admin = PgConnection::connect(&format!("{server}/postgres"))
            .await
            .unwrap_or_else(|e| panic!("{SERVER_VAR}={server}: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("{server}: cannot create database {name}: {e}"));
        Some(TestDatabase { server, name })
    }

    /// The URL the store opens.
    pub fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs outside any runtime's reach: a thread of its own with a small runtime.
        let server = self.server.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&format!("{server}/postgres"))
                    .await
                    .ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}
