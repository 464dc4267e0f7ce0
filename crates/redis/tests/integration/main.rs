//! `RedisStore` against a real redis-server on 127.0.0.1:6379 (or
//! `TOLLGATE_REDIS_URL`): the same decisions as `MemoryStore`, exact across
//! clients, one round trip, and a few hundred bytes a key.
//!
//! Every test works under a random key prefix, so tests run in parallel, and
//! deletes its keys when done. Without a server the tests fail, saying how to
//! start one; they never skip. The cluster tests start a Redis Cluster of their
//! own (three redis-server processes on free loopback ports), and fail if they
//! cannot.

mod behaviour;
mod cluster;
mod concurrency;
mod conformance;
mod memory;
mod round_trip;
mod shared;
mod support;
