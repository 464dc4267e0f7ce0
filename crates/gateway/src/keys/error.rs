//! What can go wrong with the key registry, and what to do about it.

use std::path::PathBuf;

/// An error of the key registry. None of them contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// No key has this id.
    #[error("no API key has id {0}: list the keys to see the existing ids")]
    UnknownKey(u32),
    /// The key is revoked, so its tier can no longer change.
    #[error("API key {0} is revoked: create a new key instead of changing this one")]
    Revoked(u32),
    /// A chosen secret is too short to resist guessing.
    #[error(
        "the secret has {chars} characters, at least {min} are needed: \
         choose a longer one, or let the gateway generate one"
    )]
    WeakSecret {
        /// Characters in the rejected secret.
        chars: usize,
        /// The fewest characters accepted.
        min: usize,
    },
    /// A chosen secret has a character that an HTTP header would mangle.
    #[error(
        "the secret contains a space, a control or a non-ASCII character: \
         keys travel in an HTTP header, use letters, digits and punctuation only"
    )]
    SecretNotHeaderSafe,
    /// Another key already has this secret.
    #[error("another API key already has the secret ending in `{last5}`: choose another secret")]
    DuplicateSecret {
        /// The last five characters of the rejected secret.
        last5: String,
    },
    /// A change was requested without saying who makes it.
    #[error("no actor given: every change records who made it (a user name, `cli`, `admin-api`…)")]
    MissingActor,
    /// The folder for the database file could not be created.
    #[error(
        "cannot create the folder {} for the key database: {source}; \
         check the `keys` path in the config and that the gateway may write there",
        dir.display()
    )]
    CreateDir {
        /// The folder that could not be created.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The database file could not be opened or created.
    #[error(
        "cannot open the key database {}: {source}; \
         check the path in the config, that the file is a SQLite database and is writable",
        path.display()
    )]
    Open {
        /// The database file.
        path: PathBuf,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// The database schema could not be brought up to date.
    #[error(
        "cannot migrate the key database schema: {0}; if the file was written by a newer \
         tollgate, upgrade this one or restore a backup"
    )]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error(
        "key database query failed: {0}; check the file is writable and the disk not full \
         (if another process holds a lock, retry)"
    )]
    Database(#[from] sqlx::Error),
    /// A row holds a value tollgate never writes (the file was edited by hand).
    #[error("the key database holds {0}: it was changed outside tollgate; restore a backup")]
    Corrupt(String),
}

impl KeyError {
    /// Whether retrying the same call may succeed: the database was busy or
    /// locked by another connection, or the pool had no free connection in time.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Database(sqlx::Error::PoolTimedOut) => true,
            Self::Database(sqlx::Error::Database(e)) => {
                // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes.
                let primary = e
                    .code()
                    .and_then(|c| c.parse::<i32>().ok())
                    .map(|c| c & 0xff);
                matches!(primary, Some(5 | 6))
            }
            _ => false,
        }
    }
}
