//! The budget planner: an even schedule of recurring requests inside every limit.
//!
//! Providers ask integrators to "distribute API calls evenly across time rather
//! than sending in bursts". Given the limits of one budget and groups of recurring
//! tasks (each wanted every so often), [`plan`] returns when each task runs. If
//! the wanted freshness needs more than the budget allows, every period is
//! stretched by the same factor, and the plan says so and by how much.
//!
//! ```
//! use std::time::Duration;
//! use tollgate_core::plan::{plan, TaskGroup};
//! use tollgate_core::Rate;
//!
//! // The seeds' example: the user lists of 100 channels, each wanted every
//! // second, under 20 requests per second.
//! let groups = [TaskGroup::new("channels", 100, Duration::from_secs(1))];
//! let plan = plan(&[Rate::per_second(20)], &groups).unwrap();
//! assert_eq!(plan.groups[0].every, Duration::from_secs(5));
//! assert_eq!(plan.spacing(), Duration::from_millis(50)); // 20 per second, evenly
//! assert!(!plan.fits());
//! ```

mod verify;
mod words;

use std::time::Duration;

use crate::clock::nanos_of;
use crate::quota::Rate;

/// `count` recurring tasks, each wanted every `every` (e.g. the user list of each
/// of 100 channels, every second).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskGroup {
    /// What the tasks are, for the report.
    pub name: String,
    /// How many tasks.
    pub count: u32,
    /// How often each task is wanted.
    pub every: Duration,
}

impl TaskGroup {
    /// `count` tasks named `name`, each wanted every `every`.
    pub fn new(name: impl Into<String>, count: u32, every: Duration) -> Self {
        Self {
            name: name.into(),
            count,
            every,
        }
    }
}

/// When the tasks of one group run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupPlan {
    /// The group's name.
    pub name: String,
    /// How many tasks.
    pub count: u32,
    /// The period that was wanted.
    pub wanted_every: Duration,
    /// The period planned: the wanted one, or longer when the budget is short.
    pub every: Duration,
    /// Each task's first run, from the start of the schedule; it then repeats
    /// every `every`.
    pub offsets: Vec<Duration>,
}

/// An even schedule that never exceeds a limit.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// One entry per task group, in the order given.
    pub groups: Vec<GroupPlan>,
    /// The limit with the least room: the one that sets the pace.
    pub binding: Rate,
    /// Requests per second the wanted periods need.
    pub wanted_rate: f64,
    /// Requests per second planned.
    pub planned_rate: f64,
    /// How much every period was stretched (1.0: the wanted freshness fits).
    pub stretch: f64,
}

impl Plan {
    /// Whether every group runs as often as wanted.
    pub fn fits(&self) -> bool {
        self.groups.iter().all(|g| g.every == g.wanted_every)
    }

    /// The average gap between two requests of the whole schedule.
    pub fn spacing(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.planned_rate)
    }

    /// The verdict and the schedule in words a person understands.
    pub fn describe(&self) -> String {
        words::describe(self)
    }
}

/// Why no plan could be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Nothing to plan against.
    #[error("no limit given: pass the provider's limit, like `--limit 20/s`")]
    NoLimit,
    /// Nothing to plan.
    #[error("no task given: say how many requests recur, like `--tasks 100 --every 1s`")]
    NoTasks,
    /// A group that cannot be scheduled.
    #[error("task group `{name}` {problem}")]
    BadGroup {
        /// The group's name.
        name: String,
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// Plans `groups` under every one of `limits` (the limits of one budget, e.g.
/// `20/s` and `50/60s`).
///
/// The pace is set by the limit with the least room; the schedule is spread
/// evenly (each group's tasks at equal gaps, the groups interleaved) and then
/// checked against every limit over two full periods, stretching a little more
/// should rounding have put one request too many in a window.
pub fn plan(limits: &[Rate], groups: &[TaskGroup]) -> Result<Plan, PlanError> {
    let binding = *limits
        .iter()
        .min_by(|a, b| a.per_sec_f64().total_cmp(&b.per_sec_f64()))
        .ok_or(PlanError::NoLimit)?;
    if groups.is_empty() {
        return Err(PlanError::NoTasks);
    }
    for group in groups {
        let problem = if group.count == 0 {
            "has no task: give it a count of at least 1"
        } else if group.every < Duration::from_millis(1) {
            "is wanted more often than every millisecond: give it a period like `1s`"
        } else {
            continue;
        };
        return Err(PlanError::BadGroup {
            name: group.name.clone(),
            problem,
        });
    }
    let wanted_rate: f64 = groups
        .iter()
        .map(|g| f64::from(g.count) / g.every.as_secs_f64())
        .sum();
    let mut stretch = (wanted_rate / binding.per_sec_f64()).max(1.0);
    loop {
        let planned = schedule(groups, stretch);
        if verify::within_limits(&planned, limits) {
            let planned_rate = planned
                .iter()
                .map(|g| f64::from(g.count) / g.every.as_secs_f64())
                .sum();
            return Ok(Plan {
                groups: planned,
                binding,
                wanted_rate,
                planned_rate,
                stretch,
            });
        }
        stretch *= 1.001;
    }
}

/// Every group's period stretched by `stretch`, its tasks at equal gaps, and the
/// groups interleaved: group `g` starts `g / G` of a gap after group 0.
fn schedule(groups: &[TaskGroup], stretch: f64) -> Vec<GroupPlan> {
    let total_rate: f64 = groups
        .iter()
        .map(|g| f64::from(g.count) / (g.every.as_secs_f64() * stretch))
        .sum();
    let gap = nanos_of(Duration::from_secs_f64(1.0 / total_rate));
    let shared_period = groups.windows(2).all(|w| w[0].every == w[1].every);
    let mut first_slot = 0u64;
    groups
        .iter()
        .enumerate()
        .map(|(index, group)| {
            let every = if stretch == 1.0 {
                group.every
            } else {
                // Rounded up to the millisecond: never faster than planned.
                let nanos = (nanos_of(group.every) as f64 * stretch).ceil() as u64;
                Duration::from_millis(nanos.div_ceil(1_000_000))
            };
            let period = nanos_of(every);
            let count = u64::from(group.count);
            let offsets = (0..count).map(|i| {
                if shared_period {
                    // One train for all groups: slot k at k × period / total.
                    (first_slot + i) * period / total_count(groups)
                } else {
                    i * period / count + index as u64 * gap / groups.len() as u64
                }
            });
            let offsets = offsets.map(Duration::from_nanos).collect();
            first_slot += count;
            GroupPlan {
                name: group.name.clone(),
                count: group.count,
                wanted_every: group.every,
                every,
                offsets,
            }
        })
        .collect()
}

fn total_count(groups: &[TaskGroup]) -> u64 {
    groups.iter().map(|g| u64::from(g.count)).sum()
}

#[cfg(test)]
mod tests;
