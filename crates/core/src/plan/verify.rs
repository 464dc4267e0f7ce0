//! Checks a schedule against the limits, request by request.

use std::collections::VecDeque;

use super::GroupPlan;
use crate::clock::nanos_of;
use crate::quota::Rate;

/// The most requests a check replays; a longer horizon is cut to this.
const MAX_EVENTS: usize = 2_000_000;

/// True when no window `(t − W, t]` of any limit holds more than its count, over
/// two full periods of the slowest group plus the longest window (the schedule
/// repeats, so any excess would show in that span).
pub(super) fn within_limits(groups: &[GroupPlan], limits: &[Rate]) -> bool {
    let longest_period = groups.iter().map(|g| nanos_of(g.every)).max().unwrap_or(0);
    let longest_window = limits
        .iter()
        .map(|l| nanos_of(l.window()))
        .max()
        .unwrap_or(0);
    let rate: f64 = groups
        .iter()
        .map(|g| f64::from(g.count) / g.every.as_secs_f64())
        .sum();
    let horizon = (2 * longest_period + longest_window)
        .min((MAX_EVENTS as f64 / rate * 1e9) as u64)
        .max(longest_window);
    let mut events = Vec::new();
    for group in groups {
        let period = nanos_of(group.every);
        for offset in &group.offsets {
            let mut at = nanos_of(*offset);
            while at < horizon {
                events.push(at);
                at += period;
            }
        }
    }
    events.sort_unstable();
    limits.iter().all(|limit| rolling_fits(&events, limit))
}

fn rolling_fits(events: &[u64], limit: &Rate) -> bool {
    let window = nanos_of(limit.window());
    let mut in_window = VecDeque::new();
    for &at in events {
        while in_window.front().is_some_and(|&first| first + window <= at) {
            in_window.pop_front();
        }
        in_window.push_back(at);
        if in_window.len() > limit.count() as usize {
            return false;
        }
    }
    true
}
