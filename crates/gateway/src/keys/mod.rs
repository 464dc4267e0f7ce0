//! The API-key registry: which keys exist, their limit tier, and who changed it when.
//!
//! Keys live in an embedded SQLite database that stores only the SHA-256 hash of
//! each secret and its last five characters (the only part ever logged or shown).
//! The request hot path never touches the database: [`Keys::authenticate`] reads
//! an in-memory snapshot that every write through [`Keys`] replaces, so a change
//! takes effect on the next request without a restart.
//!
//! Not for: per-request counting (that is the limiter's job) or sharing keys
//! between gateways (each gateway has its own file; see [`Keys::reload`] for a
//! file changed by another process).

mod db;
mod error;
mod ring;
mod secret;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::Serialize;
use sqlx::SqlitePool;
use tokio::sync::Mutex;
use tollgate_core::{Clock, SystemClock};

use crate::ledger::{KeyActivity, Ledger};

pub use error::KeyError;
use ring::KeyRing;
pub use secret::{MIN_SECRET_CHARS, SECRET_PREFIX, Secret, last5};

/// What the gateway knows about a key; never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// Stable id, never reused.
    pub id: u32,
    /// Who or what the key is for, as given on creation.
    pub name: String,
    /// The last five characters of the secret, to recognise it in logs.
    pub last5: String,
    /// Limit increments granted above the base tier (0 on creation).
    pub increments: u32,
    /// Creation time, unix milliseconds.
    pub created_at: i64,
    /// Whether the key was revoked; a revoked key never authenticates.
    pub revoked: bool,
}

/// A key just created, with its secret: the only time the secret is available.
#[derive(Debug)]
pub struct NewKey {
    /// The stored key.
    pub info: KeyInfo,
    /// The secret to hand to the key's owner.
    pub secret: Secret,
}

/// One change of a key's increments, as recorded for billing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TierChange {
    /// The key changed.
    pub key_id: u32,
    /// Increments before the change.
    pub from: u32,
    /// Increments after the change.
    pub to: u32,
    /// Who made the change.
    pub actor: String,
    /// Why, if said.
    pub reason: Option<String>,
    /// When, unix milliseconds.
    pub at: i64,
}

/// The key registry: the database and the snapshot the hot path reads.
///
/// Share it behind an `Arc`; every method takes `&self`.
pub struct Keys {
    pool: SqlitePool,
    /// Active keys by secret hash; read lock-free per request, swapped whole after a write.
    ring: ArcSwap<KeyRing>,
    /// Serialises snapshot rebuilds: without it a rebuild that read the database
    /// before a write could be stored after the rebuild that read it after,
    /// and the write would be lost from the snapshot until the next one.
    reload_lock: Mutex<()>,
    /// Stamps creations, revocations and tier changes.
    clock: Arc<dyn Clock>,
}

impl Keys {
    /// Opens the database file at `path` (creating it and its folder if
    /// missing), brings its schema up to date and loads the snapshot.
    pub async fn open(path: &Path) -> Result<Self, KeyError> {
        Self::with_pool(db::connect_file(path).await?).await
    }

    /// A registry on a private in-memory database, for tests and demos.
    pub async fn open_in_memory() -> Result<Self, KeyError> {
        Self::with_pool(db::connect_memory().await?).await
    }

    async fn with_pool(pool: SqlitePool) -> Result<Self, KeyError> {
        db::migrate(&pool).await?;
        let keys = Self {
            pool,
            ring: ArcSwap::from_pointee(KeyRing::default()),
            reload_lock: Mutex::new(()),
            clock: Arc::new(SystemClock::new()),
        };
        keys.reload().await?;
        Ok(keys)
    }

    /// Uses `clock` instead of the system clock to stamp the records (tests, demos).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The active key whose secret is `presented`, or `None` if it is unknown
    /// or revoked. No I/O: one SHA-256, one map lookup, one constant-time compare.
    pub fn authenticate(&self, presented: &str) -> Option<Arc<KeyInfo>> {
        self.ring.load().find(&secret::hash(presented))
    }

    /// The id and increments of the key `presented` is the secret of, if it
    /// is active: [`authenticate`](Self::authenticate) without the `Arc`.
    pub(crate) fn authenticate_id(&self, presented: &str) -> Option<(u32, u32)> {
        self.ring.load().find_id(&secret::hash(presented))
    }

    /// [`authenticate_id`](Self::authenticate_id) with the key's record in
    /// `ledger`, kept beside the key after its first request, so that later
    /// requests reach it without the ledger's lookup.
    pub(crate) fn authenticate_in(
        &self,
        presented: &str,
        ledger: &Arc<Ledger>,
    ) -> Option<(u32, u32, Arc<KeyActivity>)> {
        self.ring.load().find_in(&secret::hash(presented), ledger)
    }

    /// How many keys [`authenticate`](Self::authenticate) currently accepts.
    pub fn active_count(&self) -> usize {
        self.ring.load().len()
    }

    /// Creates a key with a generated secret, returned this once.
    pub async fn create(&self, name: &str, actor: &str) -> Result<NewKey, KeyError> {
        let secret = Secret::generate();
        let info = self.insert(name, secret.expose(), actor).await?;
        Ok(NewKey { info, secret })
    }

    /// Creates a key with a chosen secret (demos, tests, migrating keys from
    /// elsewhere). Rejects secrets under [`MIN_SECRET_CHARS`] characters or with
    /// characters an HTTP header would mangle.
    pub async fn create_with_secret(
        &self,
        name: &str,
        secret: &str,
        actor: &str,
    ) -> Result<KeyInfo, KeyError> {
        secret::validate(secret)?;
        self.insert(name, secret, actor).await
    }

    async fn insert(&self, name: &str, secret: &str, actor: &str) -> Result<KeyInfo, KeyError> {
        require_actor(actor)?;
        let last5 = last5(secret);
        let info = db::insert(
            &self.pool,
            name,
            &secret::hash(secret),
            last5,
            actor,
            self.now_ms(),
        )
        .await?;
        tracing::info!(
            key.id = info.id,
            key.last5 = last5,
            actor,
            "API key created"
        );
        self.reload().await?;
        Ok(info)
    }

    /// Revokes the key: it stops authenticating on the next request. `false`
    /// if it was already revoked.
    pub async fn revoke(&self, id: u32, actor: &str) -> Result<bool, KeyError> {
        require_actor(actor)?;
        let revoked = db::revoke(&self.pool, id, actor, self.now_ms()).await?;
        if revoked {
            tracing::info!(key.id = id, actor, "API key revoked");
        }
        // Also when it already was: a retry after a failed reload repairs the snapshot.
        self.reload().await?;
        Ok(revoked)
    }

    /// Every key, revoked ones included, by id.
    pub async fn list(&self) -> Result<Vec<KeyInfo>, KeyError> {
        db::all(&self.pool).await
    }

    /// The key with this id, revoked or not.
    pub async fn get(&self, id: u32) -> Result<Option<KeyInfo>, KeyError> {
        db::one(&self.pool, id).await
    }

    /// Sets the key's increments (its limit tier), records the change with
    /// `actor`, `reason` and the time, and applies it from the next request.
    pub async fn set_increments(
        &self,
        id: u32,
        increments: u32,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<TierChange, KeyError> {
        require_actor(actor)?;
        let change =
            db::set_increments(&self.pool, id, increments, actor, reason, || self.now_ms()).await?;
        tracing::info!(
            key.id = id,
            from = change.from,
            to = change.to,
            actor,
            reason,
            "tier changed"
        );
        self.reload().await?;
        Ok(change)
    }

    /// The key's tier changes in the order they were made.
    pub async fn tier_history(&self, id: u32) -> Result<Vec<TierChange>, KeyError> {
        if db::one(&self.pool, id).await?.is_none() {
            return Err(KeyError::UnknownKey(id));
        }
        db::history(&self.pool, id).await
    }

    /// Rebuilds the snapshot from the database. Writes through `self` already
    /// do this; call it when another process (the CLI) changed the file.
    pub async fn reload(&self) -> Result<(), KeyError> {
        let _rebuilding = self.reload_lock.lock().await;
        let ring = KeyRing::new(db::active(&self.pool).await?);
        self.ring.store(Arc::new(ring));
        Ok(())
    }

    /// The time for the records, unix milliseconds.
    /// The database, for other records kept beside the keys (limit-increase
    /// requests).
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub(crate) fn now_ms(&self) -> i64 {
        i64::try_from(self.clock.now().as_millis()).unwrap_or(i64::MAX)
    }

    /// Closes the database connections (waits for running queries).
    /// Later calls that need the database fail; `authenticate` keeps working.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn require_actor(actor: &str) -> Result<(), KeyError> {
    if actor.trim().is_empty() {
        return Err(KeyError::MissingActor);
    }
    Ok(())
}
