//! [`Storage`]: a pool on one of the two backends.

use std::future::Future;

use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};

use crate::Backend;

/// The sync daemon's storage: records, checkpoints, resource state and the
/// `429` log, in SQLite or PostgreSQL.
///
/// Cheap to clone (a handle on one connection pool) and `Send + Sync`: clone
/// it into every task.
#[derive(Clone, Debug)]
pub struct Storage {
    pub(crate) pool: Pools,
}

/// The pool of either backend; code that is the same on both dispatches with
/// `on_pool!`.
#[derive(Clone, Debug)]
pub(crate) enum Pools {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Storage {
    /// Which database this is, for the report.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pools::Sqlite(_) => Backend::Sqlite,
            Pools::Postgres(_) => Backend::Postgres,
        }
    }

    /// Closes every connection, waiting for those in use to be returned.
    /// Dropping the last clone closes them too, without waiting.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }
}

/// What differs between the two pools beyond the SQL text.
pub(crate) trait Engine {
    type Db: sqlx::Database;

    /// A transaction that will write. On SQLite it takes the write lock at
    /// once: a read-then-write transaction that upgraded later could fail with
    /// `SQLITE_BUSY` when another connection wrote in between.
    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<Transaction<'static, Self::Db>, sqlx::Error>> + Send;
}

impl Engine for SqlitePool {
    type Db = Sqlite;

    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<Transaction<'static, Sqlite>, sqlx::Error>> + Send {
        self.begin_with("BEGIN IMMEDIATE")
    }
}

impl Engine for PgPool {
    type Db = Postgres;

    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<Transaction<'static, Postgres>, sqlx::Error>> + Send {
        self.begin()
    }
}
