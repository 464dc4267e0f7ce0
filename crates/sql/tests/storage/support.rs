//! Where each test's database comes from, and its cleanup.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sqlx::{Connection as _, PgConnection};
use tollgate_sql::{Backend, Record, Storage};

/// The server the PostgreSQL tests create their databases on.
const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A test's own database: connect to it as often as the test needs (a
/// reconnection is what a restarted daemon does).
pub struct TestDb {
    url: String,
    backend: Backend,
}

impl TestDb {
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn connect(&self) -> Storage {
        let storage = Storage::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test database: {e}"));
        assert_eq!(storage.backend(), self.backend);
        storage
    }
}

/// Runs `test` on a SQLite file in a fresh temporary folder, removed after.
pub async fn on_sqlite<F, Fut>(test: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = std::env::temp_dir().join(format!("tollgate-sql-{}", unique()));
    // A folder that does not exist yet: `connect` creates it.
    let url = format!("sqlite://{}", dir.join("sync.db").display());
    let outcome = tokio::spawn(test(TestDb {
        url,
        backend: Backend::Sqlite,
    }))
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Runs `test` on a fresh PostgreSQL database, dropped after (even if the
/// test fails). Fails, saying how to start PostgreSQL, if it is unreachable.
pub async fn on_postgres<F, Fut>(test: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let server =
        std::env::var("TOLLGATE_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_POSTGRES.to_owned());
    let mut admin = PgConnection::connect(&server).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at {server}: {e}\n\
             Start it: `scripts/test` installs and starts it on 127.0.0.1:5432 (trust auth for \
             user postgres), or `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) \
             main start`; or set TOLLGATE_TEST_POSTGRES to a server where the user may CREATE \
             DATABASE."
        )
    });
    let name = format!("tollgate_test_{}", unique());
    create_database(&mut admin, &name).await;
    let url = with_database(&server, &name);
    let outcome = tokio::spawn(test(TestDb {
        url,
        backend: Backend::Postgres,
    }))
    .await;
    execute(
        &mut admin,
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )
    .await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Creates database `name` with a collation that does not sort by bytes
/// (ICU `en-US`: `a A b B`), so the tests show that the order of ids does not
/// depend on the database's locale; a server without ICU gets its default.
async fn create_database(admin: &mut PgConnection, name: &str) {
    let icu =
        format!("CREATE DATABASE {name} LOCALE_PROVIDER icu ICU_LOCALE 'en-US' TEMPLATE template0");
    if let Err(e) = sqlx::query(&icu).execute(&mut *admin).await {
        eprintln!("no ICU collation ({e}): the test database gets the server's default");
        execute(admin, &format!("CREATE DATABASE {name}")).await;
    }
}

async fn execute(admin: &mut PgConnection, sql: &str) {
    sqlx::query(sql)
        .execute(admin)
        .await
        .unwrap_or_else(|e| panic!("`{sql}` failed: {e}"));
}

/// `server` (a `postgres://` URL) pointing at database `name`.
fn with_database(server: &str, name: &str) -> String {
    let (scheme, rest) = server.split_once("://").expect("a postgres:// URL");
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match rest[authority_end..].split_once('?') {
        Some((_, query)) => format!("{scheme}://{authority}/{name}?{query}"),
        None => format!("{scheme}://{authority}/{name}"),
    }
}

/// Lowercase, unique among concurrent tests and test runs.
fn unique() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A record fetched at `fetched_at_ms`.
pub fn record(id: &str, body: Value, fetched_at_ms: i64) -> Record {
    Record::new(id, body, fetched_at_ms)
}

/// Records `first..first + n` of a numbered page, ids zero-padded so they
/// sort as numbers.
pub fn page(first: u32, n: u32, fetched_at_ms: i64) -> Vec<Record> {
    (first..first + n)
        .map(|i| {
            let body = serde_json::json!({"n": i, "name": format!("record {i}")});
            Record::new(format!("{i:06}"), body, fetched_at_ms)
        })
        .collect()
}
