//! [`Storage::connect`]: the URL, the pool and the migrations.

use std::str::FromStr as _;
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

use crate::StorageError;
use crate::storage::{Pools, Storage};

/// The schemas, embedded at build time (paths relative to the crate's Cargo.toml).
static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// SQLite file connections: one writer at a time whatever the number (WAL),
/// the others serve reads, which never wait for the writer.
const SQLITE_CONNECTIONS: u32 = 4;

/// PostgreSQL connections: importers write concurrently, the read API reads.
const POSTGRES_CONNECTIONS: u32 = 10;

/// How long a SQLite statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a call waits for a pooled connection (or a new one to be made)
/// before failing with a transient error.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

impl Storage {
    /// Connects and brings the schema up to date.
    ///
    /// `sqlite://path/to/file.db` (created with its folder if missing, WAL
    /// mode), `sqlite::memory:` (private, lives as long as this `Storage`), or
    /// `postgres://user:password@host:port/database`.
    pub async fn connect(url: &str) -> Result<Self, StorageError> {
        let storage = if url.starts_with("sqlite:") {
            Self::connect_sqlite(url).await?
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::connect_postgres(url).await?
        } else {
            return Err(StorageError::UnsupportedUrl { url: redact(url) });
        };
        let backend = storage.backend();
        let migrated = match &storage.pool {
            Pools::Sqlite(pool) => SQLITE_MIGRATOR.run(pool).await,
            Pools::Postgres(pool) => POSTGRES_MIGRATOR.run(pool).await,
        };
        migrated.map_err(|source| StorageError::Migrate { backend, source })?;
        Ok(storage)
    }

    async fn connect_sqlite(url: &str) -> Result<Self, StorageError> {
        let open_error = |path: &str| {
            let path = path.to_owned();
            move |source| StorageError::OpenSqlite { path, source }
        };
        let options = SqliteConnectOptions::from_str(url).map_err(open_error(url))?;
        let rest = url
            .trim_start_matches("sqlite://")
            .trim_start_matches("sqlite:");
        let file = rest.split('?').next().unwrap_or_default();
        if file == ":memory:" || rest.contains("mode=memory") {
            // One connection, never closed for idleness or age: the database
            // lives as long as it does.
            let pool = SqlitePoolOptions::new()
                .min_connections(1)
                .max_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options)
                .await
                .map_err(open_error(url))?;
            return Ok(Self {
                pool: Pools::Sqlite(pool),
            });
        }
        if file.is_empty() {
            return Err(StorageError::UnsupportedUrl {
                url: url.to_owned(),
            });
        }
        let path = options.get_filename().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StorageError::CreateDir {
                dir: dir.to_path_buf(),
                source,
            })?;
        }
        // `synchronous` stays at sqlx's default, FULL: a commit is on disk
        // when `save_page` returns, power cut or not (one fsync per page).
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(SQLITE_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(open_error(&path.display().to_string()))?;
        Ok(Self {
            pool: Pools::Sqlite(pool),
        })
    }

    async fn connect_postgres(url: &str) -> Result<Self, StorageError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|_| StorageError::UnsupportedUrl { url: redact(url) })?;
        let server = format!(
            "{}@{}:{}/{}",
            options.get_username(),
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or(options.get_username()),
        );
        let error = |server: &str| {
            let server = server.to_owned();
            move |source| StorageError::ConnectPostgres { server, source }
        };
        // One connection first, outside the pool: the pool retries a refused
        // connection until its acquire timeout and then reports only that it
        // timed out, when the reason is what the operator needs.
        PgConnection::connect_with(&options)
            .await
            .map_err(error(&server))?
            .close()
            .await
            .map_err(error(&server))?;
        let pool = PgPoolOptions::new()
            .max_connections(POSTGRES_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(error(&server))?;
        Ok(Self {
            pool: Pools::Postgres(pool),
        })
    }
}

/// `url` with the password of its user part, if any, masked.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Backend;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            redact("mysql://u:secret@h:3306/db"),
            "mysql://u:***@h:3306/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("redis://h:6379"), "redis://h:6379");
    }

    #[tokio::test]
    async fn other_databases_are_refused_with_the_urls_to_write() {
        let error = Storage::connect("mysql://u:secret@h:3306/db")
            .await
            .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("u:***@h"), "{message}");
        assert!(!message.contains("secret"), "{message}");
        assert!(message.contains("sqlite://path/to/file.db"), "{message}");
        assert!(!error.is_transient());
    }

    #[tokio::test]
    async fn an_unwritable_sqlite_folder_says_so() {
        let error = Storage::connect("sqlite:///proc/no/such/dir/x.db")
            .await
            .unwrap_err();
        assert!(matches!(error, StorageError::CreateDir { .. }), "{error}");
        assert!(
            error.to_string().contains("tollgate may write there"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_postgres_says_what_to_check() {
        // Port 1 on loopback: nothing listens, the refusal is immediate.
        let error = Storage::connect("postgres://tollgate:pw@127.0.0.1:1/db")
            .await
            .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("tollgate@127.0.0.1:1/db"), "{message}");
        assert!(message.contains("pg_isready"), "{message}");
        assert!(!message.contains("pw"), "{message}");
        assert!(
            error.is_transient(),
            "a refused connection may succeed later: {error}"
        );
    }

    #[test]
    fn backends_name_themselves() {
        assert_eq!(Backend::Postgres.to_string(), "PostgreSQL");
    }
}
