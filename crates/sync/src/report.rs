//! `tollgate report`: what a limit-increase request asks for, from what was
//! measured — import frequency, storage layer, how long a full sync takes, the
//! budget used against the budget allowed, and every `429` with whether it was
//! honoured.

use serde::Serialize;
use tollgate_sql::Storage;

use crate::config::Source;
use crate::schedule::schedule;

/// The facts for one source.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The source.
    pub source: String,
    /// The last five characters of its key.
    pub key_last5: Option<String>,
    /// `SQLite` or `PostgreSQL`.
    pub storage_layer: String,
    /// Per resource: how often it is imported, and how the last import went.
    pub resources: Vec<ResourceFacts>,
    /// The provider's limits for the key (or `discover`).
    pub budget: Vec<String>,
    /// What the schedule plans, in words.
    pub plan: String,
    /// How long the last full import took: from the start of the earliest to
    /// the end of the latest last import of the source's resources (fan-outs
    /// included).
    pub full_sync_ms: Option<u64>,
    /// Every `429` received.
    pub rejections: Vec<Rejection>,
    /// True when every `429` was waited out (no request before its retry instant).
    pub all_honoured: bool,
}

/// One resource's facts.
#[derive(Clone, Debug, Serialize)]
pub struct ResourceFacts {
    /// The resource.
    pub resource: String,
    /// How often it is imported (after planning), in seconds.
    pub every_s: f64,
    /// The last import's duration.
    pub last_duration_ms: Option<u64>,
    /// Records the last import stored.
    pub last_records: Option<u64>,
    /// Records stored in all.
    pub stored: u64,
}

/// One `429`.
#[derive(Clone, Debug, Serialize)]
pub struct Rejection {
    /// When it came (Unix ms).
    pub at_ms: i64,
    /// The retry instant it named (Unix ms).
    pub retry_at_ms: i64,
    /// When the next request went (Unix ms).
    pub next_call_ms: Option<i64>,
    /// Whether the next request waited until the retry instant.
    pub honoured: Option<bool>,
}

/// Gathers the report of `source` from the storage layer.
pub async fn report(
    source: &Source,
    storage: &Storage,
) -> Result<Report, tollgate_sql::StorageError> {
    let plan = schedule(source, storage).await;
    let mut resources = Vec::new();
    let names: Vec<&str> = source.resources.iter().map(|r| r.name.as_str()).collect();
    let states = storage.resource_states().await?;
    let spans: Vec<(i64, i64)> = states
        .iter()
        .filter(|s| names.contains(&s.resource.as_str()))
        .filter_map(|s| {
            let end = s.last_success_ms?;
            Some((end - i64::try_from(s.last_duration_ms?).unwrap_or(0), end))
        })
        .collect();
    let full_sync_ms = match (
        spans.iter().map(|s| s.0).min(),
        spans.iter().map(|s| s.1).max(),
    ) {
        (Some(start), Some(end)) => u64::try_from(end - start).ok(),
        _ => None,
    };
    for (resource, (_, every)) in source.resources.iter().zip(&plan.periods) {
        storage.ensure_resource(&resource.name).await?;
        // A fan-out's last import is its children's: their records summed,
        // from the first one's start to the last one's end. A bulk read
        // records one run for the whole resource.
        let per_child = resource.for_each.as_ref().is_some_and(|f| f.bulk.is_none());
        let finished: Vec<_> = states
            .iter()
            .filter(|s| s.resource == resource.name)
            .filter(|s| per_child != s.scope.is_empty())
            .filter_map(|s| {
                let end = s.last_success_ms?;
                let start = end - i64::try_from(s.last_duration_ms.unwrap_or(0)).unwrap_or(0);
                Some((start, end, s.last_records.unwrap_or(0)))
            })
            .collect();
        let start = finished.iter().map(|f| f.0).min();
        let end = finished.iter().map(|f| f.1).max();
        resources.push(ResourceFacts {
            resource: resource.name.clone(),
            every_s: every.as_secs_f64(),
            last_duration_ms: start.zip(end).and_then(|(s, e)| u64::try_from(e - s).ok()),
            last_records: (!finished.is_empty()).then(|| finished.iter().map(|f| f.2).sum()),
            stored: storage.count(&resource.name).await?,
        });
    }
    let rejections: Vec<Rejection> = storage
        .rate_limit_log(&source.name)
        .await?
        .into_iter()
        .map(|e| Rejection {
            at_ms: e.at_ms,
            retry_at_ms: e.retry_at_ms,
            next_call_ms: e.next_call_ms,
            honoured: e.honoured,
        })
        .collect();
    Ok(Report {
        source: source.name.clone(),
        key_last5: source.key.read_secret().ok().map(|k| {
            k.chars()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect()
        }),
        storage_layer: storage.backend().to_string(),
        budget: match &source.limits {
            Some(limits) => limits.iter().map(ToString::to_string).collect(),
            None => vec!["discover".into()],
        },
        plan: plan.verdict,
        full_sync_ms,
        all_honoured: rejections.iter().all(|r| r.honoured != Some(false)),
        resources,
        rejections,
    })
}

impl Report {
    /// The report as text, in the order the seeds' providers ask.
    pub fn to_text(&self) -> String {
        let mut out = format!("Limit-increase facts for source `{}`\n", self.source);
        let line = |out: &mut String, label: &str, value: String| {
            out.push_str(&format!("  {label:<24} {value}\n"))
        };
        line(
            &mut out,
            "Key (last 5):",
            self.key_last5
                .clone()
                .unwrap_or_else(|| "(key not readable here)".into()),
        );
        line(&mut out, "Storage layer:", self.storage_layer.clone());
        line(&mut out, "Budget:", self.budget.join(", "));
        let frequency: Vec<String> = self
            .resources
            .iter()
            .map(|r| {
                let every = crate::api::page::duration((r.every_s * 1000.0).round() as u64);
                format!("{} every {every}", r.resource)
            })
            .collect();
        line(&mut out, "Import frequency:", frequency.join("; "));
        line(
            &mut out,
            "Full sync takes:",
            self.full_sync_ms
                .map_or("(no import finished yet)".into(), |ms| {
                    format!(
                        "{:.1} s (the last full import, every resource)",
                        ms as f64 / 1000.0
                    )
                }),
        );
        for r in &self.resources {
            line(
                &mut out,
                &format!("  {}:", r.resource),
                format!(
                    "{} stored; last import {} records in {}",
                    r.stored,
                    r.last_records.map_or("-".into(), |n| n.to_string()),
                    r.last_duration_ms
                        .map_or("-".into(), crate::api::page::duration)
                ),
            );
        }
        let honoured = self
            .rejections
            .iter()
            .filter(|r| r.honoured == Some(true))
            .count();
        let pending = self
            .rejections
            .iter()
            .filter(|r| r.honoured.is_none())
            .count();
        line(
            &mut out,
            "429s received:",
            format!(
                "{} ({honoured} honoured, {pending} with no request since)",
                self.rejections.len()
            ),
        );
        line(
            &mut out,
            "Handles 429:",
            if self.all_honoured {
                "yes: every 429 was caught, waited out until its Retry-After (60 s when absent), and the import resumed".into()
            } else {
                "NO: a request went out before a 429's retry instant".into()
            },
        );
        out.push_str("  Schedule:\n");
        for l in self.plan.lines() {
            out.push_str(&format!("    {l}\n"));
        }
        out
    }
}
