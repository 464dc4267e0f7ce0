//! A fan-out read in bulk: the children of up to `max` parents in one request
//! (`GET /v1/properties/bulk?ids=a,b,c`) instead of one request per parent.
//!
//! The parents are taken in primary-key order, `max` at a time. Each batch's
//! records are stored together with the fan-out's checkpoint (scope `""`),
//! which names the last parent of the batch: a run interrupted by a crash or a
//! failure resumes after it, and never asks for a finished batch again (unless
//! the checkpoint is older than the resource's period: then the data it
//! covered is due again and the run starts over).

use std::sync::atomic::Ordering;

use tollgate_sql::{Checkpoint, ListQuery, MAX_LIST_LIMIT, Record, RunOutcome, StoredRecord};

use super::context::SourceContext;
use super::fetch::{Fetched, fetch};
use super::page::{self, Position};
use super::run::{ImportError, Imported, WHOLE_FAN_OUT, ask_again, storage, text, to_records};
use crate::config::{Bulk, ForEach, Pagination, Resource};

/// How the checkpoint's cursor names the last parent of the last stored batch.
const AFTER: &str = "after:";

/// Imports the children of every parent of `for_each` through `bulk`, one
/// request per batch of parents.
pub(super) async fn import_bulk(
    ctx: &SourceContext,
    resource: &Resource,
    for_each: &ForEach,
    bulk: &Bulk,
) -> Result<Imported, ImportError> {
    let Some(claim) = ctx.claim(&resource.name, WHOLE_FAN_OUT).await else {
        return Ok(Imported {
            elsewhere: 1,
            ..Imported::default()
        });
    };
    let store = storage(resource);
    let now = ctx.now_ms();
    let period = i64::try_from(resource.every.as_millis()).unwrap_or(i64::MAX);
    let saved = ctx
        .storage
        .checkpoint(&resource.name, WHOLE_FAN_OUT)
        .await
        .map_err(&store)?;
    let resumed = saved.filter(|c| c.started_at_ms > now.saturating_sub(period));
    let (mut after, mut batches, mut records, started_at_ms) = match resumed
        .as_ref()
        .and_then(|c| Some((c, c.cursor.strip_prefix(AFTER)?)))
    {
        Some((c, last)) => {
            tracing::info!(resource = %resource.name, after = last, batches = c.pages_done, "resuming an unfinished bulk read");
            (
                Some(last.to_owned()),
                c.pages_done,
                c.records_done,
                c.started_at_ms,
            )
        }
        None => (None, 0, 0, now),
    };
    // The answer's records, read as a single-page list at `bulk.records`.
    let shape = Resource {
        records: bulk.records.clone(),
        pagination: Pagination::None,
        for_each: None,
        ..resource.clone()
    };
    let field = for_each
        .fields
        .first()
        .map_or("", |(_, field)| field.as_str());
    let limits: Vec<usize> = ctx
        .endpoint_limits
        .get(&resource.name)
        .copied()
        .into_iter()
        .collect();
    let mut parents_asked = 0;
    loop {
        let parents = next_parents(
            ctx,
            resource,
            &for_each.resource,
            after.as_deref(),
            bulk.max,
        )
        .await?;
        let Some(last) = parents.last() else { break };
        let last = last.id.clone();
        let values: Vec<String> = parents
            .iter()
            .filter_map(|parent| parent.body.get(field).and_then(text))
            .collect();
        if values.len() < parents.len() {
            tracing::warn!(resource = %resource.name, field, skipped = parents.len() - values.len(), "parents without the field are skipped");
        }
        let batch = if values.is_empty() {
            Vec::new()
        } else {
            let url = url(&ctx.source.base_url, &shape, bulk, &values);
            read_batch(ctx, &shape, &limits, &url).await?
        };
        parents_asked += values.len() as u64;
        if !values.is_empty() {
            batches += 1;
        }
        records += batch.len() as u64;
        let checkpoint = Checkpoint {
            cursor: format!("{AFTER}{last}"),
            pages_done: batches,
            records_done: records,
            started_at_ms,
        };
        ctx.storage
            .save_page(&resource.name, WHOLE_FAN_OUT, &batch, Some(&checkpoint))
            .await
            .map_err(&store)?;
        if !values.is_empty() {
            ctx.stats.pages.fetch_add(1, Ordering::Relaxed);
        }
        ctx.stats
            .records
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        after = Some(last);
    }
    let finished_at_ms = ctx.now_ms();
    let outcome = RunOutcome {
        finished_at_ms,
        duration_ms: u64::try_from(finished_at_ms - started_at_ms).unwrap_or(0),
        pages: batches,
        records,
        list_etag: None,
        list_last_modified: None,
    };
    ctx.storage
        .finish_run(&resource.name, WHOLE_FAN_OUT, &outcome)
        .await
        .map_err(&store)?;
    claim.finish(resource.every).await;
    Ok(Imported {
        pages: batches,
        records,
        scopes: parents_asked,
        ..Imported::default()
    })
}

/// The next `max` parents after `after`, in primary-key order.
async fn next_parents(
    ctx: &SourceContext,
    resource: &Resource,
    parent: &str,
    after: Option<&str>,
    max: u32,
) -> Result<Vec<StoredRecord>, ImportError> {
    let mut parents: Vec<StoredRecord> = Vec::new();
    let mut after = after.map(str::to_owned);
    while parents.len() < max as usize {
        let wanted = (max as usize - parents.len()).min(MAX_LIST_LIMIT as usize);
        let mut query = ListQuery::first(u32::try_from(wanted).unwrap_or(MAX_LIST_LIMIT));
        query.after = after.clone();
        let page = ctx
            .storage
            .list(parent, &query)
            .await
            .map_err(storage(resource))?;
        let short = page.len() < wanted;
        after = page.last().map(|p| p.id.clone());
        parents.extend(page);
        if short {
            break;
        }
    }
    Ok(parents)
}

/// `<base><path>?<fixed query>&<param>=a,b,c`: each value encoded, the commas
/// between them as they are.
fn url(base: &str, shape: &Resource, bulk: &Bulk, values: &[String]) -> String {
    let mut url = page::url(base, shape, &bulk.path, &Position::Start, None);
    url.push(if url.contains('?') { '&' } else { '?' });
    url.push_str(&page::urlencode(&bulk.param));
    url.push('=');
    let values: Vec<String> = values.iter().map(|v| page::urlencode(v)).collect();
    url.push_str(&values.join(","));
    url
}

/// Asks for one batch and reads its records, asking again (with backoff) when
/// the answer cannot be used: a bad answer is never stored over good data.
async fn read_batch(
    ctx: &SourceContext,
    shape: &Resource,
    limits: &[usize],
    url: &str,
) -> Result<Vec<Record>, ImportError> {
    let mut unusable = 0;
    loop {
        let fetched = fetch(ctx, limits, url, &[])
            .await
            .map_err(|source| ImportError::Fetch {
                resource: shape.name.clone(),
                source,
            })?;
        let Fetched::Body { headers, body } = fetched else {
            ctx.stats.unchanged.fetch_add(1, Ordering::Relaxed);
            return Ok(Vec::new());
        };
        match page::read(shape, &Position::Start, &headers, &body, None) {
            Ok(page) => return Ok(to_records(shape, page.records, ctx.now_ms())),
            Err(problem) => {
                unusable += 1;
                ask_again(ctx, &shape.name, url, &problem, unusable).await?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_values_go_in_one_parameter_joined_by_commas_after_the_fixed_query() {
        let shape = Resource {
            name: "property_details".into(),
            path: "/v1/properties/{id}".into(),
            query: vec![("fields".into(), "all".into())],
            records: "/data".into(),
            id: "id".into(),
            pagination: Pagination::None,
            incremental: None,
            every: std::time::Duration::from_secs(60),
            limit: None,
            for_each: None,
        };
        let bulk = Bulk {
            path: "/v1/properties/bulk".into(),
            param: "ids".into(),
            max: 3,
            records: "/data".into(),
        };
        let values = ["p-1".to_owned(), "p 2".to_owned(), "a,b".to_owned()];
        assert_eq!(
            url("http://api", &shape, &bulk, &values),
            "http://api/v1/properties/bulk?fields=all&ids=p-1,p%202,a%2Cb"
        );
        let shape = Resource {
            query: Vec::new(),
            ..shape
        };
        assert_eq!(
            url("http://api", &shape, &bulk, &values[..1]),
            "http://api/v1/properties/bulk?ids=p-1"
        );
    }
}
