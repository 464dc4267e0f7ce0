//! What can go wrong with the storage layer, and what to do about it.

use std::path::PathBuf;

use crate::Backend;
use crate::name::MAX_RESOURCE_NAME;
use crate::types::MAX_LIST_LIMIT;

/// An error of the storage layer. None of them contains a password.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The URL names no database this crate can use.
    #[error(
        "`{url}` is not a database URL tollgate can use: write `sqlite://path/to/file.db`, \
         `sqlite::memory:` or `postgres://user@host:5432/database`"
    )]
    UnsupportedUrl {
        /// The URL, its password masked.
        url: String,
    },
    /// The folder of the SQLite file could not be created.
    #[error(
        "cannot create the folder {} for the SQLite database: {source}; \
         check the path in the database URL and that tollgate may write there",
        dir.display()
    )]
    CreateDir {
        /// The folder that could not be created.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The SQLite file could not be opened or created.
    #[error(
        "cannot open the SQLite database `{path}`: {source}; check the path in the URL, \
         that its folder is writable and that the file is a SQLite database"
    )]
    OpenSqlite {
        /// The file (or the URL, if it could not be parsed).
        path: String,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// No connection to the PostgreSQL server could be made.
    #[error(
        "cannot connect to PostgreSQL at {server}: {source}; check that the server runs and \
         is reachable from here (`pg_isready -h HOST -p PORT`), that the user and password in \
         the URL are right and that the database exists"
    )]
    ConnectPostgres {
        /// `user@host:port/database`, without the password.
        server: String,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// The schema could not be brought up to date.
    #[error(
        "cannot bring the {backend} schema up to date: {source}; if the database was written \
         by a newer tollgate, upgrade this one or restore a backup"
    )]
    Migrate {
        /// The database.
        backend: Backend,
        /// Why.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A resource name that cannot name a table.
    #[error(
        "resource name `{name}` cannot name a table: {reason}; write it with lowercase ASCII \
         letters, digits and `_`, starting with a letter, at most {MAX_RESOURCE_NAME} \
         characters, like `channel_users`"
    )]
    InvalidResource {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The resource has no records table yet.
    #[error(
        "resource `{resource}` has no records table in the {backend} database: call \
         `ensure_resource` first (the sync daemon does for every resource of its config)"
    )]
    UnknownResource {
        /// The resource.
        resource: String,
        /// The database.
        backend: Backend,
    },
    /// A list filter on a field name this crate cannot put in a JSON path.
    #[error(
        "cannot filter on field `{field}`: name a top-level JSON field with 1 to 64 ASCII \
         letters, digits, `_` or `-` (nested fields are not supported)"
    )]
    InvalidFilterField {
        /// The rejected field name.
        field: String,
    },
    /// A list limit of 0 or over [`MAX_LIST_LIMIT`].
    #[error(
        "cannot list {limit} records at once: ask for 1 to {MAX_LIST_LIMIT} and page with \
         `after` (the last id of the previous page)"
    )]
    InvalidLimit {
        /// The rejected limit.
        limit: u32,
    },
    /// A count too large for a `BIGINT` column.
    #[error("{what} = {value} does not fit in a BIGINT column (at most 9223372036854775807)")]
    OutOfRange {
        /// Which value.
        what: &'static str,
        /// The value.
        value: u64,
    },
    /// A statement failed.
    #[error("{backend} query failed: {source}; {}", query_hint(*backend))]
    Query {
        /// The database.
        backend: Backend,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// A row holds a value tollgate never writes.
    #[error(
        "the {backend} database holds {what}: it was changed outside tollgate; \
         fix or delete that row, or restore a backup"
    )]
    Corrupt {
        /// The database.
        backend: Backend,
        /// What was found, and where.
        what: String,
    },
}

fn query_hint(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => {
            "check that the file is writable and the disk not full; \
             if another process held a lock, retry"
        }
        Backend::Postgres => {
            "if the connection was lost or a lock conflicted, retry; \
             otherwise check the server's log"
        }
    }
}

impl StorageError {
    /// Whether the same call may succeed if retried later: a lost connection,
    /// a lock held too long, a server restarting. Mistakes (a bad URL, a bad
    /// resource name, a wrong password) and corruption are not transient.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::OpenSqlite { source, .. } => transient(Backend::Sqlite, source),
            Self::ConnectPostgres { source, .. } => transient(Backend::Postgres, source),
            Self::Migrate {
                backend,
                source: sqlx::migrate::MigrateError::Execute(source),
            } => transient(*backend, source),
            Self::Query { backend, source } => transient(*backend, source),
            _ => false,
        }
    }

    pub(crate) fn query(backend: Backend) -> impl Fn(sqlx::Error) -> Self {
        move |source| Self::Query { backend, source }
    }

    /// Like [`query`](Self::query), but a missing records table becomes
    /// [`UnknownResource`](Self::UnknownResource).
    pub(crate) fn on_resource(backend: Backend, resource: &str) -> impl Fn(sqlx::Error) -> Self {
        move |source| {
            if is_missing_table(backend, &source) {
                Self::UnknownResource {
                    resource: resource.to_owned(),
                    backend,
                }
            } else {
                Self::Query { backend, source }
            }
        }
    }
}

fn is_missing_table(backend: Backend, error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = error else {
        return false;
    };
    match backend {
        Backend::Sqlite => db.message().starts_with("no such table"),
        Backend::Postgres => db.code().as_deref() == Some("42P01"),
    }
}

fn transient(backend: Backend, error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| transient_code(backend, &code)),
        _ => false,
    }
}

/// SQLite: `SQLITE_BUSY` and `SQLITE_LOCKED` with their extended codes.
/// PostgreSQL: serialization failure, deadlock, connection exceptions (class
/// 08), insufficient resources (class 53) and shutdown or startup (57P01–57P03).
fn transient_code(backend: Backend, code: &str) -> bool {
    match backend {
        Backend::Sqlite => code
            .parse::<u32>()
            .is_ok_and(|code| matches!(code & 0xff, 5 | 6)),
        Backend::Postgres => {
            matches!(code, "40001" | "40P01" | "57P01" | "57P02" | "57P03")
                || code.starts_with("08")
                || code.starts_with("53")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_and_connection_codes_are_transient() {
        assert!(transient_code(Backend::Sqlite, "5"));
        assert!(transient_code(Backend::Sqlite, "517")); // SQLITE_BUSY_SNAPSHOT
        assert!(!transient_code(Backend::Sqlite, "19")); // constraint
        assert!(transient_code(Backend::Postgres, "40001"));
        assert!(transient_code(Backend::Postgres, "08006"));
        assert!(!transient_code(Backend::Postgres, "28P01")); // bad password
        assert!(!transient_code(Backend::Postgres, "23505"));
    }
}
