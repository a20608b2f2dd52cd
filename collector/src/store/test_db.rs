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
        let admin_url = format!("{}/postgres", self.server);
        let drop_sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = block_on(async move {
            let mut admin = PgConnection::connect(&admin_url).await?;
            sqlx::query(&drop_sql).execute(&mut admin).await
        });
        if dropped.is_err() {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// The database URL of an end-to-end test site in `dir` when `HYGIENE_TEST_BACKEND=postgres`
/// (with `HYGIENE_TEST_POSTGRES` naming the server): created on first use and kept for the
/// rest of the process, since tests restart collectors on the same site. Databases of
/// earlier runs whose process is gone are dropped on the first call.
///
/// # Panics
/// When the server cannot be reached or the database cannot be made (a setup failure).
pub fn site_url(dir: &std::path::Path) -> String {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static SITES: Mutex<Option<HashMap<std::path::PathBuf, String>>> = Mutex::new(None);
    let server = std::env::var(SERVER_VAR)
        .unwrap_or_else(|_| panic!("HYGIENE_TEST_BACKEND=postgres needs {SERVER_VAR}"));
    let server = server.trim_end_matches('/').to_owned();
    let mut sites = SITES.lock().unwrap_or_else(|e| e.into_inner());
    let first = sites.is_none();
    let sites = sites.get_or_insert_with(HashMap::new);
    if let Some(url) = sites.get(dir) {
        return url.clone();
    }
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let pid = std::process::id();
    let name = format!(
        "hygiene_site_{pid}_{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let admin_url = format!("{server}/postgres");
    let create_sql = format!("CREATE DATABASE {name}");
    let created = block_on(async move {
        let mut admin = PgConnection::connect(&admin_url).await?;
        if first {
            let names: Vec<String> = sqlx::query_scalar(
                "SELECT datname FROM pg_database WHERE datname LIKE 'hygiene\\_site\\_%' \
                 OR datname LIKE 'hygiene\\_test\\_%'",
            )
            .fetch_all(&mut admin)
            .await?;
            for stale in names {
                let owner = stale.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
                let alive =
                    owner.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
                if !alive {
                    sqlx::query(&format!("DROP DATABASE IF EXISTS {stale} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await?;
                }
            }
        }
        sqlx::query(&create_sql).execute(&mut admin).await?;
        Ok::<_, sqlx::Error>(())
    });
    if let Err(e) = created {
        panic!("{server}: cannot create database {name}: {e}");
    }
    let url = format!("{server}/{name}");
    sites.insert(dir.to_path_buf(), url.clone());
    url
}

/// Runs a future to completion on a thread of its own: callers may be inside a runtime (or
/// in `Drop`, outside any).
fn block_on<T: Send + 'static>(future: impl std::future::Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime")
            .block_on(future)
    })
    .join()
    .expect("the database thread")
}
