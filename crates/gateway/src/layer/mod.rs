//! Enforcement as a `tower` layer: put [`RateLimitLayer`] in front of any
//! service (the gateway's proxy, or an axum app) and every request is
//! authenticated, checked against every limit it matches, and either passed on
//! with RateLimit headers or answered `401`/`403`/`429` with a problem body.

mod builder;
mod enforcement;
mod service;

pub use builder::LayerBuilder;
pub use enforcement::{Admitted, Enforcement, KeyResolver, ResolvedKey};
pub use service::{RateLimitLayer, RateLimitService};
