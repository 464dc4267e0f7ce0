//! Limit-increase requests: an integrator asks for more with the facts providers
//! ask for (the seeds' lists), the gateway attaches what it measured of the key,
//! and an admin approves (which applies the increments) or declines with a reason.
//!
//! Integrators submit on the client listener, authenticated by their API key:
//! `POST /_tollgate/limit-increase-requests`. Admins decide on the admin API.

mod db;
pub(crate) mod handlers;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use db::LimitRequest;

/// What an integrator submits.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Application {
    /// The last five characters of the key the increase is for.
    pub key_last5: String,
    /// The client company.
    pub company: String,
    /// The industry (education, property management, …).
    pub industry: String,
    /// The application scenario (chat room, tenancy sync, …).
    pub scenario: String,
    /// How often the integration imports data (e.g. `every 5 minutes`).
    pub import_frequency: String,
    /// The storage layer (database type, caching system).
    pub storage_layer: String,
    /// How long a full import takes (e.g. `40 minutes`).
    pub full_sync_duration: String,
    /// Peak concurrent requests (or channels, or users), if relevant.
    #[serde(default)]
    pub peak_concurrency: Option<u64>,
    /// The integration catches `429`, waits `Retry-After` and resumes.
    pub handles_429: bool,
    /// How many increments are asked for (each adds the configured step).
    #[serde(default = "one")]
    pub increments_wanted: u32,
    /// Anything else.
    #[serde(default)]
    pub notes: Option<String>,
}

fn one() -> u32 {
    1
}

impl Application {
    /// Checks the form against the key that submits it; the error says what
    /// to fix.
    pub fn check(&self, key_last5: &str) -> Result<(), String> {
        if !self.handles_429 {
            return Err("increases are only considered for integrations that handle 429: catch it, wait Retry-After (60 s if absent), resume, then set `handles_429` to true".into());
        }
        if self.key_last5 != key_last5 {
            return Err(format!(
                "`key_last5` is `{}` but the key sending this request ends in `{key_last5}`: send the request with the key you want raised",
                self.key_last5
            ));
        }
        let required = [
            ("company", &self.company),
            ("industry", &self.industry),
            ("scenario", &self.scenario),
            ("import_frequency", &self.import_frequency),
            ("storage_layer", &self.storage_layer),
            ("full_sync_duration", &self.full_sync_duration),
        ];
        if let Some((field, _)) = required.iter().find(|(_, v)| v.trim().is_empty()) {
            return Err(format!(
                "`{field}` is empty: every field of the form is needed to judge the request"
            ));
        }
        if self.increments_wanted == 0 || self.increments_wanted > 1_000 {
            return Err("`increments_wanted` must be between 1 and 1000".into());
        }
        Ok(())
    }
}

/// The evidence attached to a request, as JSON.
pub(crate) fn evidence(record: &crate::ledger::KeyRecord, since: &str, increments: u32) -> Value {
    serde_json::json!({
        "measured_since": since,
        "current_increments": increments,
        "rejected_429": record.rejected,
        "strikes": record.strikes,
        "blocks": record.blocks,
        "refused_while_blocked": record.refused_while_blocked,
        "peak_usage_per_day": record.peaks,
    })
}
