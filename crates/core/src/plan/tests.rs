use std::time::Duration;

use super::*;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn seeds_example_each_channel_every_five_seconds_twenty_per_second() {
    let plan = plan(
        &[Rate::per_second(20)],
        &[TaskGroup::new("channels", 100, secs(1))],
    )
    .unwrap();
    let group = &plan.groups[0];
    assert_eq!(group.every, secs(5));
    assert!((plan.stretch - 5.0).abs() < 1e-9);
    // Evenly spaced: task i starts at i × 50 ms.
    for (i, offset) in group.offsets.iter().enumerate() {
        assert_eq!(*offset, Duration::from_millis(50 * i as u64));
    }
    let words = plan.describe();
    assert!(words.contains("Does not fit"), "{words}");
    assert!(words.contains("each every 5s (wanted every 1s)"), "{words}");
    assert!(words.contains("20 requests/s, one every 50ms"), "{words}");
}

#[test]
fn a_schedule_that_fits_keeps_the_wanted_periods() {
    let plan = plan(
        &[Rate::per_minute(50)],
        &[TaskGroup::new("properties", 10, secs(60))],
    )
    .unwrap();
    assert!(plan.fits());
    assert_eq!(plan.groups[0].every, secs(60));
    assert_eq!(plan.groups[0].offsets[1], secs(6));
}

#[test]
fn the_tightest_of_several_limits_sets_the_pace() {
    let plan = plan(
        &[Rate::per_second(20), Rate::per_minute(50)],
        &[TaskGroup::new("channels", 100, secs(1))],
    )
    .unwrap();
    assert_eq!(plan.binding, Rate::per_minute(50));
    // 100 tasks at 50/60 s: each every 120 s.
    assert_eq!(plan.groups[0].every, secs(120));
}

#[test]
fn groups_with_different_periods_interleave_inside_the_limit() {
    let limits = [Rate::per_second(20), Rate::per_minute(600)];
    let groups = [
        TaskGroup::new("channels", 100, secs(1)),
        TaskGroup::new("tenancies", 7, secs(3)),
        TaskGroup::new("properties", 3, Duration::from_millis(700)),
    ];
    let plan = plan(&limits, &groups).unwrap();
    assert!(verify::within_limits(&plan.groups, &limits));
    assert!(plan.stretch >= 1.0);
    // Stretched evenly: every group by the same factor.
    for (g, wanted) in plan.groups.iter().zip(&groups) {
        let ratio = g.every.as_secs_f64() / wanted.every.as_secs_f64();
        assert!(
            (ratio - plan.stretch).abs() < 0.01,
            "{ratio} vs {}",
            plan.stretch
        );
    }
}

#[test]
fn the_check_catches_a_schedule_that_bursts() {
    let burst = GroupPlan {
        name: "burst".into(),
        count: 3,
        wanted_every: secs(1),
        every: secs(1),
        offsets: vec![Duration::ZERO; 3],
    };
    assert!(!verify::within_limits(
        std::slice::from_ref(&burst),
        &[Rate::per_second(2)]
    ));
    assert!(verify::within_limits(&[burst], &[Rate::per_second(3)]));
}

#[test]
fn bad_input_says_what_to_write() {
    assert_eq!(
        plan(&[], &[TaskGroup::new("x", 1, secs(1))]),
        Err(PlanError::NoLimit)
    );
    assert_eq!(plan(&[Rate::per_second(1)], &[]), Err(PlanError::NoTasks));
    let err = plan(&[Rate::per_second(1)], &[TaskGroup::new("x", 0, secs(1))]).unwrap_err();
    assert!(err.to_string().contains("count of at least 1"), "{err}");
}
