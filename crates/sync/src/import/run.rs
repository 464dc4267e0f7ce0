//! A full import of one resource: every page, checkpointed, resumable.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde_json::Value;
use tollgate_sql::{Checkpoint, ListQuery, Record, RunOutcome};

use super::context::SourceContext;
use super::fetch::{FetchError, Fetched, MAX_ATTEMPTS, backoff, fetch};
use super::page::{self, Position};
use http::HeaderName;
use http::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};

use crate::config::{ForEach, Pagination, Resource};

/// What one import of a resource did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Imported {
    /// Pages stored.
    pub pages: u64,
    /// Records stored.
    pub records: u64,
    /// Fan-out children imported (0 for a plain resource).
    pub scopes: u64,
    /// Fan-out children not asked again: an interrupted earlier run of the
    /// same fan-out had finished them.
    pub skipped: u64,
    /// Page runs (the resource, or fan-out children) left to another process
    /// that shares the budget and the storage layer and was importing them.
    pub elsewhere: u64,
}

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The provider would not answer usefully.
    #[error("{resource}: {source}")]
    Fetch {
        /// The resource.
        resource: String,
        /// Why.
        source: FetchError,
    },
    /// The answers could not be used.
    #[error("{resource}: unusable answers after {MAX_ATTEMPTS} attempts: {problem}")]
    Unusable {
        /// The resource.
        resource: String,
        /// The last problem.
        problem: String,
    },
    /// The storage layer failed.
    #[error("{resource}: storage: {source}")]
    Storage {
        /// The resource.
        resource: String,
        /// Why.
        source: tollgate_sql::StorageError,
    },
}

impl ImportError {
    /// True for a `403`: the whole source must stop.
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            ImportError::Fetch {
                source: FetchError::Forbidden,
                ..
            }
        )
    }
}

pub(super) fn storage(
    resource: &Resource,
) -> impl Fn(tollgate_sql::StorageError) -> ImportError + '_ {
    |source| ImportError::Storage {
        resource: resource.name.clone(),
        source,
    }
}

/// After the `attempt`-th unusable answer in a row for `resource`: counts it,
/// gives up past `MAX_ATTEMPTS`, and otherwise waits before the caller asks
/// again.
pub(super) async fn ask_again(
    ctx: &SourceContext,
    resource: &str,
    url: &str,
    problem: &(dyn std::fmt::Display + Sync),
    attempt: u32,
) -> Result<(), ImportError> {
    ctx.stats.failures.fetch_add(1, Ordering::Relaxed);
    if attempt >= MAX_ATTEMPTS {
        return Err(ImportError::Unusable {
            resource: resource.to_owned(),
            problem: problem.to_string(),
        });
    }
    tracing::warn!(resource, %url, %problem, "unusable answer; asking again");
    tokio::time::sleep(backoff(attempt)).await;
    Ok(())
}

/// Imports `resource` in full: once, or once per parent record for a fan-out
/// (up to the source's concurrency at a time; the pacer spaces them).
pub async fn import_resource(
    ctx: &SourceContext,
    resource: &Resource,
) -> Result<Imported, ImportError> {
    ctx.storage
        .ensure_resource(&resource.name)
        .await
        .map_err(storage(resource))?;
    match &resource.for_each {
        None => match ctx.claim(&resource.name, "").await {
            Some(claim) => {
                let imported = import_scope(ctx, resource, "", &resource.path).await?;
                claim.finish(resource.every).await;
                Ok(imported)
            }
            None => Ok(Imported {
                elsewhere: 1,
                ..Imported::default()
            }),
        },
        // A bulk read asks for many parents' children at once instead.
        Some(for_each) => match &for_each.bulk {
            Some(bulk) => super::bulk::import_bulk(ctx, resource, for_each, bulk).await,
            None => import_fan_out(ctx, resource, for_each).await,
        },
    }
}

/// The scope of a fan-out as a whole: its checkpoint says since when it is
/// unfinished (its children's scopes are their parents' ids).
pub(super) const WHOLE_FAN_OUT: &str = "";

/// Imports one child per parent record. The fan-out's own checkpoint (scope
/// `""`) holds when it started until every child is done, so a run that
/// resumes it after a crash or a failure skips the children finished since
/// then — each child keeps its own checkpoint only while it is in progress.
/// A child is skipped only if it is also fresher than the resource's period,
/// so a fan-out that stays unfinished (a child that keeps failing) still
/// refreshes the others. Once every child is done the checkpoint is cleared:
/// the next run asks every child again.
async fn import_fan_out(
    ctx: &SourceContext,
    resource: &Resource,
    for_each: &ForEach,
) -> Result<Imported, ImportError> {
    let store = storage(resource);
    let now = ctx.now_ms();
    let saved = ctx
        .storage
        .checkpoint(&resource.name, WHOLE_FAN_OUT)
        .await
        .map_err(&store)?;
    let done: HashSet<String> = match saved {
        Some(whole) => {
            let period = i64::try_from(resource.every.as_millis()).unwrap_or(i64::MAX);
            let after = whole.started_at_ms.max(now.saturating_sub(period));
            let done = ctx
                .storage
                .scopes_finished_after(&resource.name, after)
                .await
                .map_err(&store)?;
            tracing::info!(resource = %resource.name, started_at_ms = whole.started_at_ms, done = done.len(), "resuming an unfinished fan-out");
            done.into_iter().collect()
        }
        None => {
            let whole = Checkpoint {
                cursor: String::new(),
                pages_done: 0,
                records_done: 0,
                started_at_ms: now,
            };
            ctx.storage
                .save_checkpoint(&resource.name, WHOLE_FAN_OUT, &whole)
                .await
                .map_err(&store)?;
            HashSet::new()
        }
    };
    let mut total = Imported::default();
    let mut after: Option<String> = None;
    loop {
        let mut query = ListQuery::first(500);
        query.after = after.clone();
        let parents = ctx
            .storage
            .list(&for_each.resource, &query)
            .await
            .map_err(&store)?;
        let Some(last) = parents.last() else { break };
        after = Some(last.id.clone());
        let mut children = FuturesUnordered::new();
        let mut pending = parents.iter().filter(|parent| {
            let skip = done.contains(&parent.id);
            total.skipped += u64::from(skip);
            !skip
        });
        loop {
            while children.len() < ctx.source.concurrency as usize {
                let Some(parent) = pending.next() else { break };
                let values: Vec<(String, String)> = for_each
                    .fields
                    .iter()
                    .filter_map(|(placeholder, field)| {
                        Some((placeholder.clone(), text(parent.body.get(field)?)?))
                    })
                    .collect();
                let path = page::fill_path(&resource.path, &values);
                children.push(async move {
                    let Some(claim) = ctx.claim(&resource.name, &parent.id).await else {
                        return Ok(None);
                    };
                    let imported = import_scope(ctx, resource, &parent.id, &path).await?;
                    claim.finish(resource.every).await;
                    Ok(Some(imported))
                });
            }
            let Some(child) = children.next().await else {
                break;
            };
            let Some(child) = child? else {
                total.elsewhere += 1;
                continue;
            };
            total.pages += child.pages;
            total.records += child.records;
            total.scopes += 1;
        }
    }
    ctx.storage
        .clear_checkpoint(&resource.name, WHOLE_FAN_OUT)
        .await
        .map_err(&store)?;
    Ok(total)
}

/// The records of one answer as the storage layer takes them, each with the
/// value of the resource's incremental field, if it has one.
pub(super) fn to_records(
    resource: &Resource,
    records: Vec<(String, Value)>,
    fetched_at_ms: i64,
) -> Vec<Record> {
    records
        .into_iter()
        .map(|(id, body)| {
            let updated = resource
                .incremental
                .as_ref()
                .and_then(|i| body.get(&i.field).and_then(text));
            let mut record = Record::new(id, body, fetched_at_ms);
            record.updated_at = updated;
            record
        })
        .collect()
}

pub(super) fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Imports every page of one scope of a resource, from its checkpoint if an
/// earlier run was interrupted.
async fn import_scope(
    ctx: &SourceContext,
    resource: &Resource,
    scope: &str,
    path: &str,
) -> Result<Imported, ImportError> {
    let store = storage(resource);
    let started_at_ms = ctx.now_ms();
    let saved = ctx
        .storage
        .checkpoint(&resource.name, scope)
        .await
        .map_err(&store)?;
    let (mut position, mut pages, mut records) = match &saved {
        Some(c) => (Position::decode(&c.cursor), c.pages_done, c.records_done),
        None => (Position::Start, 0, 0),
    };
    let run_started = saved.as_ref().map_or(started_at_ms, |c| c.started_at_ms);
    let state = ctx
        .storage
        .resource_state(&resource.name, scope)
        .await
        .map_err(&store)?;
    let since = resource
        .incremental
        .as_ref()
        .and(state.as_ref().and_then(|s| s.watermark.clone()));
    let limits: Vec<usize> = ctx
        .endpoint_limits
        .get(&resource.name)
        .copied()
        .into_iter()
        .collect();
    // A single-page resource asks whether it changed since the last import:
    // an unchanged answer (304) stores nothing and keeps the validators.
    let single_page = resource.pagination == Pagination::None;
    let mut validators: Vec<(HeaderName, String)> = Vec::new();
    let (mut etag, mut last_modified) = (None, None);
    if single_page && let Some(state) = &state {
        etag.clone_from(&state.list_etag);
        last_modified.clone_from(&state.list_last_modified);
        validators.extend(etag.clone().map(|v| (IF_NONE_MATCH, v)));
        validators.extend(last_modified.clone().map(|v| (IF_MODIFIED_SINCE, v)));
    }
    let mut unusable = 0;
    loop {
        let url = page::url(
            &ctx.source.base_url,
            resource,
            path,
            &position,
            since.as_deref(),
        );
        let fetched = fetch(ctx, &limits, &url, &validators)
            .await
            .map_err(|source| ImportError::Fetch {
                resource: resource.name.clone(),
                source,
            })?;
        let Fetched::Body { headers, body } = fetched else {
            ctx.stats.unchanged.fetch_add(1, Ordering::Relaxed);
            break;
        };
        if single_page {
            let text = |name| {
                headers
                    .get(name)
                    .and_then(|v: &http::HeaderValue| v.to_str().ok())
                    .map(str::to_owned)
            };
            etag = text(ETAG);
            last_modified = text(LAST_MODIFIED);
        }
        let parent = resource.for_each.as_ref().map(|_| scope);
        let page = match page::read(resource, &position, &headers, &body, parent) {
            Ok(page) => page,
            Err(problem) => {
                // Never store a bad answer over good data: ask again.
                unusable += 1;
                ask_again(ctx, &resource.name, &url, &problem, unusable).await?;
                continue;
            }
        };
        unusable = 0;
        let fetched_at_ms = ctx.now_ms();
        let batch = to_records(resource, page.records, fetched_at_ms);
        pages += 1;
        records += batch.len() as u64;
        let next = page.next.as_ref().map(|p| Checkpoint {
            cursor: p.encode(),
            pages_done: pages,
            records_done: records,
            started_at_ms: run_started,
        });
        ctx.storage
            .save_page(&resource.name, scope, &batch, next.as_ref())
            .await
            .map_err(&store)?;
        ctx.stats.pages.fetch_add(1, Ordering::Relaxed);
        ctx.stats
            .records
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        match page.next {
            Some(next) => position = next,
            None => break,
        }
    }
    let outcome = RunOutcome {
        finished_at_ms: ctx.now_ms(),
        duration_ms: u64::try_from(ctx.now_ms() - run_started).unwrap_or(0),
        pages,
        records,
        list_etag: etag,
        list_last_modified: last_modified,
    };
    ctx.storage
        .finish_run(&resource.name, scope, &outcome)
        .await
        .map_err(&store)?;
    Ok(Imported {
        pages,
        records,
        ..Imported::default()
    })
}
