//! The consumer side of tollgate: imports data from rate-limited APIs into your
//! storage layer, on an even schedule inside each provider's budget, waiting out
//! every `429` so a key is never blocked.

pub mod api;
pub mod config;
pub mod daemon;
pub mod events;
pub mod import;
pub mod outbox;
pub mod pacer;
pub mod report;
pub mod runner;
pub mod schedule;
