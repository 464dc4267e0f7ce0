//! One import of every resource, with progress bars, on source contexts the
//! caller keeps: the bars read their counters while the import runs, and the
//! demo hands the same contexts (the same pacers) to the daemon afterwards.
//!
//! It does what `tollgate_sync::runner::run_once` does — each source's
//! resources in the order written, a failed resource recorded and the others
//! going on, a `403` stopping its source — except that `run_once` builds its
//! contexts inside and drops them, so nothing could watch them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tollgate_sql::Storage;
use tollgate_sync::config::{Resource, Source};
use tollgate_sync::import::{SourceContext, import_resource};
use tollgate_sync::runner::SourceSummary;

use super::progress::{Bars, Expected};

/// Imports every resource of every source once, drawing a bar per source
/// (`expected` pairs with `sources`), and says what each source did.
pub async fn import_once(
    sources: &[Arc<SourceContext>],
    expected: &[Expected],
) -> Vec<SourceSummary> {
    let bars = Bars::start(sources, expected);
    let summaries =
        futures_util::future::join_all(sources.iter().enumerate().map(|(index, ctx)| {
            let bars = &bars;
            async move {
                let summary = import_source(ctx).await;
                bars.source_done(index);
                summary
            }
        }))
        .await;
    bars.finish().await;
    summaries
}

async fn import_source(ctx: &SourceContext) -> SourceSummary {
    let started = Instant::now();
    let mut errors = Vec::new();
    for resource in &ctx.source.resources {
        match import_resource(ctx, resource).await {
            Ok(done) => {
                tracing::info!(source = %ctx.source.name, resource = %resource.name, pages = done.pages, records = done.records, "imported");
            }
            Err(err) => {
                tracing::error!(source = %ctx.source.name, %err, "import failed");
                if let Err(store) = ctx
                    .storage
                    .record_error(&resource.name, "", &err.to_string(), ctx.now_ms())
                    .await
                {
                    tracing::warn!(%store, "cannot record the error");
                }
                errors.push(err.to_string());
                if err.is_forbidden() {
                    break;
                }
            }
        }
    }
    let stats = &ctx.stats;
    SourceSummary {
        name: ctx.source.name.clone(),
        requests: stats.requests.load(Ordering::Relaxed),
        rejected_429: stats.rejected_429.load(Ordering::Relaxed),
        failures: stats.failures.load(Ordering::Relaxed),
        pages: stats.pages.load(Ordering::Relaxed),
        unchanged: stats.unchanged.load(Ordering::Relaxed),
        records: stats.records.load(Ordering::Relaxed),
        forbidden: stats.forbidden.load(Ordering::Relaxed),
        errors,
        elapsed: started.elapsed(),
    }
}

/// About how many requests one import of `source` takes, as the planner
/// counts them: the last complete run's pages of each resource, and one
/// request per stored parent record for a fan-out. Unknown when a resource
/// has never finished (the first run).
pub async fn expected_requests(source: &Source, storage: &Storage) -> Expected {
    let mut total = 0;
    for resource in &source.resources {
        match resource_requests(resource, storage).await {
            Some(n) => total += n,
            None => return Expected::Unknown,
        }
    }
    Expected::Requests(total)
}

async fn resource_requests(resource: &Resource, storage: &Storage) -> Option<u64> {
    match &resource.for_each {
        Some(parent) => {
            let parents = storage.count(&parent.resource).await.ok()?;
            (parents > 0).then_some(parents)
        }
        None => storage
            .resource_state(&resource.name, "")
            .await
            .ok()
            .flatten()?
            .last_pages
            .filter(|pages| *pages > 0),
    }
}
