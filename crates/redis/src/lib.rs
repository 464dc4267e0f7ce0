//! tollgate's limit state in Redis: the same decisions as the in-memory store,
//! shared by every gateway and sync process that uses one server.
//!
//! [`RedisStore`] implements [`tollgate_core::Store`]. A request's charges (every
//! limit it matches) are decided by one Lua script in one round trip: it reads
//! each limit's state, decides with exactly the algorithms of
//! [`MemoryStore`](tollgate_core::MemoryStore) (`rolling`, `fixed`, `gcra`,
//! `sliding-counter`), and charges them all only if all admit. Redis runs a script
//! alone, so concurrent requests from many processes never over-admit.
//!
//! ```no_run
//! use tollgate_core::{Charge, LimitId, Quota, Store};
//! use tollgate_redis::RedisStore;
//!
//! # async fn example() -> Result<(), tollgate_core::StoreError> {
//! let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
//! let quota = Quota::rolling("50/60s".parse().unwrap());
//! let charge = Charge { limit: LimitId(0), key: "key-12345", quota };
//! let decision = store.decide(&[charge]).await?;
//! assert!(decision.is_admitted());
//! # Ok(())
//! # }
//! ```
//!
//! # Inside Redis
//!
//! * Keys: `tollgate:{<api key>}:<limit>`, one string per limit and key; the hash
//!   tag keeps one API key's limits in one Redis Cluster slot (see [`RedisKey`]).
//!   Each key expires [`TTL_GRACE`] after its state stops mattering.
//! * `rolling` keeps the instants of the admitted requests still in the window,
//!   packed as an 8-byte base and 2 bytes per slot at the core's resolution,
//!   after a 13-byte signature: 121 bytes for a full log at `50/60s`, 216 bytes
//!   per key in `MEMORY USAGE` (key name and Redis's overhead included);
//!   `fixed`, `gcra` and `sliding-counter` keep 16 to 24 bytes after the
//!   signature, 136 bytes per key in `MEMORY USAGE`.
//! * Time is Redis's `TIME`, in microseconds, so processes with skewed clocks
//!   agree; [`RedisStore::decide_at`] injects a time instead, for tests.
//! * Lua numbers are doubles, exact for integers below 2⁵³: instants are whole
//!   microseconds (exact until the year 2255), windows are rounded up to whole
//!   microseconds, and GCRA keeps its nanoseconds apart. Decisions are identical
//!   to `MemoryStore`'s for times on a microsecond grid, GCRA bursts spanning less
//!   than 104 days and sliding-counter windows up to 38 hours.
//!
//! # Why redis-rs
//!
//! The `redis` crate is the de-facto Rust client, maintained by the redis-rs
//! organisation; its [`ConnectionManager`](redis::aio::ConnectionManager) is one
//! multiplexed connection that reconnects by itself, and its
//! [`Script`](redis::Script) sends `EVALSHA` and loads the script on `NOSCRIPT`.
//! Version 0.32 is the newest that builds with the workspace's Rust 1.85.
//!
//! # Redis Cluster
//!
//! [`RedisStore::connect_cluster`] talks to a cluster. Keys are cluster-safe:
//! all of one API key's limits share its hash slot, so a request that matches
//! only per-key limits is still one script. A request whose charges span slots
//! (a per-endpoint limit shared by all API keys, beside the per-key ones) is
//! decided slot by slot: each reserves, and a later rejection undoes the earlier
//! reservations exactly. It never over-admits, and may briefly under-admit while
//! a reservation awaits its undo; see [`RedisStore`].
//!
//! # When Redis is down
//!
//! [`ResilientStore`] wraps a store with a short timeout per decision and a
//! circuit breaker, and either decides locally (fail-open: a
//! [`MemoryStore`](tollgate_core::MemoryStore) with each limit divided by the
//! number of instances) or fails at once (fail-closed: an error the gateway
//! answers with 503), per store or per limit. It reports the degraded state and
//! recovers by itself when Redis answers again.
//!
//! # A client budget shared by several processes
//!
//! [`SharedSlots`] is the client side of the same idea: several `tollgate sync`
//! processes calling one provider with one key share its budget. A provider
//! counts a request somewhere between its send and its answer, so each slot is
//! held from the send until one window after the answer, a `429` pauses every
//! process until its retry instant, and the sends of all processes are spaced
//! evenly; one small script per send, on the same connection as the store.
//!
//! # Not for
//!
//! Not a cache nor a queue: it only keeps limit state.

mod keys;
mod resilient;
mod script;
mod slots;
mod store;

pub use keys::{RedisKey, escape};
pub use resilient::{FailMode, ResilienceStats, ResilientConfig, ResilientStore};
pub use slots::{SharedLimit, SharedSlots};
pub use store::{RedisStore, SplitStats, TTL_GRACE};
