//! The configuration file as written, with the position of every value, so that
//! a mistake can be reported at its line.

use serde::Deserialize;
use toml::Spanned;

/// `gateway.toml`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub listen: Spanned<String>,
    /// Worker threads; one per core when left out.
    #[serde(default)]
    pub workers: Option<Spanned<u32>>,
    /// How long a worker serves before giving others a turn, or `off`.
    #[serde(default)]
    pub yield_after: Option<Spanned<String>>,
    #[serde(default)]
    pub database: Option<Spanned<String>>,
    #[serde(default)]
    pub api_key: RawApiKey,
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub escalation: RawEscalation,
    #[serde(default)]
    pub tier: RawTier,
    #[serde(default)]
    pub requests: RawRequests,
    #[serde(default)]
    pub redis: Option<RawRedis>,
    #[serde(default)]
    pub upstreams: Vec<RawUpstream>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub limits: Vec<RawLimit>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApiKey {
    pub header: Option<Spanned<String>>,
    pub scheme: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub listen: Spanned<String>,
    pub token_env: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEscalation {
    pub strikes: Option<Spanned<u32>>,
    pub strike_window: Option<Spanned<String>>,
    pub first_block: Option<Spanned<String>>,
    pub max_block: Option<Spanned<String>>,
    pub forget_after: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTier {
    pub step: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRequests {
    pub max_body: Option<Spanned<String>>,
    pub header_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    pub name: Spanned<String>,
    pub url: Spanned<String>,
    pub timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub name: Spanned<String>,
    pub method: Option<Spanned<String>>,
    pub path: Spanned<String>,
    pub upstream: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimit {
    pub name: Spanned<String>,
    pub scope: Option<Spanned<String>>,
    pub rate: Spanned<String>,
    pub algorithm: Option<Spanned<String>>,
    pub burst: Option<Spanned<u32>>,
    pub routes: Option<Spanned<Vec<String>>>,
    pub tiered: Option<Spanned<bool>>,
    /// While Redis is unreachable, for this limit: `open` or `closed`.
    pub fail: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRedis {
    pub url: Spanned<String>,
    pub fail: Option<Spanned<String>>,
    pub instances: Option<Spanned<u32>>,
    pub prefix: Option<String>,
    /// `url` is one node of a Redis Cluster.
    pub cluster: Option<bool>,
}
