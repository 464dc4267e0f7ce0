//! One import of every resource, with progress bars, on source contexts the
//! caller keeps: the bars read their counters while the import runs, and the
//! demo hands the same contexts (the same pacers) to the daemon afterwards.
//!
//! Each source runs `tollgate_sync::runner::run_source`, as `run_once` does;
//! `run_once` builds its contexts inside and drops them, so nothing could
//! watch them.

use std::sync::Arc;

use tollgate_sql::Storage;
use tollgate_sync::config::{Resource, Source};
use tollgate_sync::import::SourceContext;
use tollgate_sync::runner::{SourceSummary, run_source};

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
                let summary = run_source(ctx).await;
                bars.source_done(index);
                summary
            }
        }))
        .await;
    bars.finish().await;
    summaries
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
            // A bulk read asks for `max` parents a request.
            let per_request = parent.bulk.as_ref().map_or(1, |b| u64::from(b.max.max(1)));
            (parents > 0).then_some(parents.div_ceil(per_request))
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
