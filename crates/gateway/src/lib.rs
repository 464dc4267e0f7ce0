//! The provider side of tollgate: a gateway that enforces call-frequency limits
//! in front of an HTTP API.

pub mod admin;
pub mod config;
mod front;
mod gateway;
pub mod headers;
pub mod increase;
pub mod keys;
pub mod layer;
pub mod ledger;
pub mod metrics;
pub mod problem;
pub mod proxy;
pub mod routes;
pub mod server;
pub mod store;
mod turns;
pub mod upstream;
pub mod workers;

pub use gateway::{Gateway, StartError, bind, connect_redis};
