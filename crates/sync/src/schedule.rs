//! The schedule of a source's imports: the core planner's verdict on whether
//! the wanted freshness fits the budget, and the periods it stretches to.
//!
//! A resource that the provider's events keep fresh (named by a
//! `[[sources.events.map]]` entry) is polled less often: every
//! `poll_every_with_events` (ten times its `every` unless set), only to catch
//! what an event missed. The budget it leaves goes to the other resources.

use std::time::Duration;

use tollgate_core::plan::{TaskGroup, plan};
use tollgate_sql::Storage;

use crate::config::{Bulk, ForEach, Resource, Source};

/// Each resource's planned period, in the source's order, and the verdict in words.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    /// `(resource, planned period)`.
    pub periods: Vec<(String, Duration)>,
    /// The planner's verdict, for the log at start-up.
    pub verdict: String,
}

/// Requests one full import of each resource takes, from what the store knows
/// (the last run's pages; one per parent record for a fan-out, one per `max`
/// parents for a fan-out read in bulk); 1 when unknown.
async fn requests_per_run(source: &Source, storage: &Storage) -> Vec<u32> {
    let mut counts = Vec::new();
    for resource in &source.resources {
        let pages = storage
            .resource_state(&resource.name, "")
            .await
            .ok()
            .flatten()
            .and_then(|s| s.last_pages)
            .unwrap_or(1)
            .max(1);
        let requests = match &resource.for_each {
            // A bulk read: one request per batch of parents.
            Some(parent) => match &parent.bulk {
                Some(bulk) => {
                    bulk_requests(parent_count(storage, &parent.resource).await, bulk.max)
                }
                None => pages * parent_count(storage, &parent.resource).await.max(1),
            },
            None => pages,
        };
        counts.push(u32::try_from(requests).unwrap_or(u32::MAX));
    }
    counts
}

async fn parent_count(storage: &Storage, resource: &str) -> u64 {
    storage.count(resource).await.unwrap_or(0)
}

/// Requests a bulk read of `parents` parents takes, `max` a request: at least
/// one.
pub fn bulk_requests(parents: u64, max: u32) -> u64 {
    parents.div_ceil(u64::from(max.max(1))).max(1)
}

/// One line per fan-out read in bulk: the endpoint used instead of one
/// request per parent (for `tollgate sync --check` and the schedule).
pub fn bulk_reads(source: &Source) -> Vec<String> {
    bulk_fan_outs(source)
        .map(|(resource, for_each, bulk)| bulk_line(resource, for_each, bulk))
        .collect()
}

fn bulk_fan_outs(source: &Source) -> impl Iterator<Item = (&Resource, &ForEach, &Bulk)> {
    source.resources.iter().filter_map(|r| {
        let for_each = r.for_each.as_ref()?;
        Some((r, for_each, for_each.bulk.as_ref()?))
    })
}

fn bulk_line(resource: &Resource, for_each: &ForEach, bulk: &Bulk) -> String {
    format!(
        "- {}: read in bulk from {} (`{}`, up to {} a request) instead of {} once per record of {}",
        resource.name, bulk.path, bulk.param, bulk.max, resource.path, for_each.resource
    )
}

/// The bulk reads of `source` with the requests they take now, for the verdict.
async fn bulk_verdict(source: &Source, storage: &Storage) -> String {
    let mut lines = String::new();
    for (resource, for_each, bulk) in bulk_fan_outs(source) {
        let parents = parent_count(storage, &for_each.resource).await;
        lines.push_str(&format!(
            "{}: {} request(s) a run for {parents} records.\n",
            bulk_line(resource, for_each, bulk),
            bulk_requests(parents, bulk.max)
        ));
    }
    lines
}

/// How often each resource is wanted: its `every`, or, when events keep it
/// fresh, the longer period it is polled at then.
fn wanted_periods(source: &Source) -> Vec<(String, Duration)> {
    source
        .resources
        .iter()
        .map(|r| {
            let every = source
                .events
                .as_ref()
                .and_then(|events| events.poll_every(&r.name, r.every))
                .map_or(r.every, |lowered| lowered.max(r.every));
            (r.name.clone(), every)
        })
        .collect()
}

/// One line per resource kept fresh by events, for the verdict.
fn kept_fresh_by_events(source: &Source) -> String {
    let Some(events) = &source.events else {
        return String::new();
    };
    let mut lines = String::new();
    for resource in &source.resources {
        let Some(lowered) = events.poll_every(&resource.name, resource.every) else {
            continue;
        };
        let kinds: Vec<&str> = events
            .map
            .iter()
            .filter(|m| m.resource == resource.name)
            .map(|m| m.kind.as_str())
            .collect();
        lines.push_str(&format!(
            "- {}: kept fresh by events ({}), so polled every {:?} instead of every {:?}, to catch what an event missed.\n",
            resource.name,
            kinds.join(", "),
            lowered.max(resource.every),
            resource.every,
        ));
    }
    lines
}

/// Plans `source` against its budget. Without known limits (discover) the
/// wanted periods are kept until the provider announces its limits.
pub async fn schedule(source: &Source, storage: &Storage) -> Schedule {
    let wanted = wanted_periods(source);
    let Some(limits) = &source.limits else {
        let mut verdict = String::from(
            "limits unknown (discover): the wanted periods are kept, and the pacer adopts the limits the provider announces\n",
        );
        verdict.push_str(&kept_fresh_by_events(source));
        verdict.push_str(&bulk_verdict(source, storage).await);
        return Schedule {
            periods: wanted,
            verdict,
        };
    };
    let counts = requests_per_run(source, storage).await;
    let groups: Vec<TaskGroup> = wanted
        .iter()
        .zip(&counts)
        .map(|((name, every), count)| TaskGroup::new(name, *count, *every))
        .collect();
    let mut periods = wanted.clone();
    let mut verdict = match plan(limits, &groups) {
        Ok(plan) => {
            for (period, group) in periods.iter_mut().zip(&plan.groups) {
                period.1 = group.every;
            }
            plan.describe()
        }
        Err(err) => format!("cannot plan: {err}"),
    };
    verdict.push_str(&kept_fresh_by_events(source));
    verdict.push_str(&bulk_verdict(source, storage).await);
    // An endpoint's own limit may stretch its resource further.
    for ((resource, count), period) in source.resources.iter().zip(&counts).zip(periods.iter_mut())
    {
        let Some(limit) = resource.limit else {
            continue;
        };
        if let Ok(own) = plan(
            &[limit],
            &[TaskGroup::new(&resource.name, *count, period.1)],
        ) && own.groups[0].every > period.1
        {
            period.1 = own.groups[0].every;
            verdict.push_str(&format!(
                "- {}: its own limit ({limit}) stretches it to every {:?}.\n",
                resource.name, period.1
            ));
        }
    }
    Schedule { periods, verdict }
}
