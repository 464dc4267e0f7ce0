//! `sync.toml` as written, with the position of every value.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub store: Option<Spanned<String>>,
    pub listen: Option<Spanned<String>>,
    pub redis: Option<Spanned<String>>,
    pub redis_cluster: Option<Spanned<bool>>,
    #[serde(default)]
    pub sources: Vec<RawSource>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    pub name: Spanned<String>,
    pub base_url: Spanned<String>,
    pub key: Spanned<RawKey>,
    /// `["50/60s", "20/s"]` or `"discover"`.
    pub limits: Spanned<RawLimits>,
    pub timeout: Option<Spanned<String>>,
    pub concurrency: Option<Spanned<u32>>,
    /// `[sources.submit]`: how the outbox delivers submissions.
    pub submit: Option<RawSubmit>,
    #[serde(default)]
    pub resources: Vec<RawResource>,
    /// `[sources.events]`: the provider's push notifications.
    pub events: Option<Spanned<RawEvents>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawLimits {
    Known(Vec<String>),
    Word(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSubmit {
    pub idempotency_header: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKey {
    pub header: Option<Spanned<String>>,
    pub scheme: Option<Spanned<String>>,
    pub env: Option<Spanned<String>>,
    pub file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResource {
    pub name: Spanned<String>,
    pub path: Spanned<String>,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    pub records: Option<Spanned<String>>,
    pub id: Option<Spanned<String>>,
    pub pagination: Option<RawPagination>,
    pub incremental: Option<RawIncremental>,
    pub every: Spanned<String>,
    pub limit: Option<Spanned<String>>,
    pub for_each: Option<RawForEach>,
    /// A bulk read that replaces a fan-out's per-parent requests.
    pub bulk: Option<Spanned<RawBulk>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBulk {
    pub path: Spanned<String>,
    pub param: Spanned<String>,
    pub max: Spanned<i64>,
    pub records: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPagination {
    pub style: Spanned<String>,
    pub param: Option<String>,
    pub size_param: Option<String>,
    pub size: Option<u32>,
    pub start: Option<u64>,
    pub next: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIncremental {
    pub field: String,
    pub param: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawForEach {
    pub resource: Spanned<String>,
    /// Path placeholder → field of the parent record.
    pub fields: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvents {
    /// `{ env = "…" }` or `{ file = "…" }`: never the secret itself.
    pub secret: Spanned<RawSecret>,
    pub signature_header: Option<Spanned<String>>,
    pub timestamp_header: Option<Spanned<String>>,
    pub tolerance: Option<Spanned<String>>,
    pub id: Option<Spanned<String>>,
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    pub poll_every_with_events: Option<Spanned<String>>,
    #[serde(default)]
    pub map: Vec<RawEventMap>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSecret {
    pub env: Option<Spanned<String>>,
    pub file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEventMap {
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    pub resource: Spanned<String>,
    pub action: Spanned<String>,
    pub record: Option<Spanned<String>>,
    pub id: Option<Spanned<String>>,
}
