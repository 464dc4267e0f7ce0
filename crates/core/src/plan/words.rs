//! A plan in words.

use std::fmt::Write;
use std::time::Duration;

use super::Plan;

/// `1.5s`, `50ms`, `5s`, `2min`: short and exact enough for a person.
pub(crate) fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        format!("{}µs", d.as_micros())
    } else if ms < 1_000 {
        format!("{ms}ms")
    } else if ms % 60_000 == 0 && ms >= 120_000 {
        format!("{}min", ms / 60_000)
    } else if ms % 1_000 == 0 {
        format!("{}s", ms / 1_000)
    } else {
        format!("{:.3}s", d.as_secs_f64())
            .trim_end_matches('0')
            .to_owned()
    }
}

fn per_second(rate: f64) -> String {
    if (rate - rate.round()).abs() < 1e-9 {
        format!("{}", rate.round() as u64)
    } else {
        format!("{rate:.2}")
    }
}

pub(super) fn describe(plan: &Plan) -> String {
    let mut out = String::new();
    let limit = plan.binding;
    if plan.fits() {
        let _ = writeln!(
            out,
            "Fits: the wanted freshness needs {} requests/s and the tightest limit ({limit}) allows {}.",
            per_second(plan.wanted_rate),
            per_second(limit.per_sec_f64()),
        );
    } else {
        let _ = writeln!(
            out,
            "Does not fit: the wanted freshness needs {} requests/s, but the tightest limit ({limit}) allows {}.",
            per_second(plan.wanted_rate),
            per_second(limit.per_sec_f64()),
        );
        let _ = writeln!(
            out,
            "Every period is stretched ×{:.2} so the schedule stays inside the limit.",
            plan.stretch
        );
    }
    for group in &plan.groups {
        let gap = group.every / group.count;
        let _ = write!(
            out,
            "- {}: {} tasks, each every {}",
            group.name,
            group.count,
            human(group.every)
        );
        if group.every != group.wanted_every {
            let _ = write!(out, " (wanted every {})", human(group.wanted_every));
        }
        let _ = writeln!(out, "; one starts every {}.", human(gap));
    }
    let _ = writeln!(
        out,
        "In all: {} requests/s, one every {}, evenly spaced, no bursts.",
        per_second(plan.planned_rate),
        human(plan.spacing())
    );
    out
}
