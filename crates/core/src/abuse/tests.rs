use std::time::Duration;

use super::*;
use crate::decision::retry_after_secs;

const T0: Timestamp = Timestamp::from_secs(1_000);

fn policy() -> EscalationPolicy {
    EscalationPolicy {
        strikes: 3,
        strike_window: Duration::from_secs(60),
        first_block: Duration::from_secs(60),
        max_block: Duration::from_secs(300),
        forget_offences_after: Duration::from_secs(3_600),
    }
}

#[test]
fn a_client_that_waits_the_rounded_up_retry_after_is_never_struck() {
    let policy = policy();
    let mut state = Escalation::default();
    let mut now = T0;
    for wait_ms in [1, 999, 1_000, 1_001, 59_999, 60_000, 12_345, 1_500] {
        let wait = Duration::from_millis(wait_ms);
        // Rejected again right when it comes back (the worst luck): never a strike.
        assert_eq!(
            state.on_rejection(&policy, now, wait),
            Escalated::Limited { struck: false }
        );
        now = now + Duration::from_secs(retry_after_secs(wait));
        assert_eq!(state.on_request(now), Gate::Pass);
    }
    // Even the exact (millisecond) instant from the problem body is on time.
    state.on_rejection(&policy, now, Duration::from_millis(1_500));
    now = now + Duration::from_millis(1_500);
    assert_eq!(
        state.on_rejection(&policy, now, Duration::from_millis(10)),
        Escalated::Limited { struck: false }
    );
}

#[test]
fn a_hammering_client_is_blocked_after_exactly_the_configured_strikes() {
    let policy = policy();
    let mut state = Escalation::default();
    let wait = Duration::from_secs(10);
    assert_eq!(
        state.on_rejection(&policy, T0, wait),
        Escalated::Limited { struck: false }
    );
    let early = T0 + Duration::from_millis(1);
    assert_eq!(
        state.on_rejection(&policy, early, wait),
        Escalated::Limited { struck: true }
    );
    assert_eq!(
        state.on_rejection(&policy, early, wait),
        Escalated::Limited { struck: true }
    );
    let until = early + Duration::from_secs(60);
    assert_eq!(
        state.on_rejection(&policy, early, wait),
        Escalated::Blocked { until }
    );
    assert_eq!(
        state.on_request(early + Duration::from_secs(59)),
        Gate::Blocked { until }
    );
    assert_eq!(state.on_request(until), Gate::Pass);
}

#[test]
fn an_admitted_request_clears_the_retry_instant() {
    // A limit raised while the key waits: its next requests are admitted, and
    // a later rejection is not a strike.
    let policy = policy();
    let mut state = Escalation::default();
    state.on_rejection(&policy, T0, Duration::from_secs(30));
    state.on_admission();
    let soon = T0 + Duration::from_secs(1);
    assert_eq!(
        state.on_rejection(&policy, soon, Duration::from_secs(30)),
        Escalated::Limited { struck: false }
    );
}

#[test]
fn strikes_spread_wider_than_the_strike_window_do_not_block() {
    let policy = policy();
    let mut state = Escalation::default();
    let mut now = T0;
    state.on_rejection(&policy, now, Duration::from_secs(1_000));
    for _ in 0..20 {
        now = now + Duration::from_secs(31);
        let strike = state.on_rejection(&policy, now, Duration::from_secs(1_000));
        assert!(
            matches!(strike, Escalated::Limited { struck: true }),
            "{strike:?}"
        );
        now = now + Duration::from_secs(31);
    }
}

fn block(state: &mut Escalation, policy: &EscalationPolicy, now: Timestamp) -> Timestamp {
    loop {
        if let Escalated::Blocked { until } =
            state.on_rejection(policy, now, Duration::from_secs(5))
        {
            return until;
        }
    }
}

#[test]
fn each_repeat_offence_blocks_twice_as_long_up_to_the_cap() {
    let policy = policy();
    let mut state = Escalation::default();
    let mut now = T0;
    let mut lengths = Vec::new();
    for _ in 0..5 {
        let until = block(&mut state, &policy, now);
        lengths.push(until.saturating_since(now).as_secs());
        now = until;
    }
    assert_eq!(lengths, [60, 120, 240, 300, 300]);
    // After a long quiet spell the next block starts short again.
    now = now + Duration::from_secs(7_200);
    let until = block(&mut state, &policy, now);
    assert_eq!(until.saturating_since(now).as_secs(), 60);
}

#[test]
fn unblock_lifts_the_block_at_once() {
    let tracker = AbuseTracker::new(policy());
    let wait = Duration::from_secs(30);
    let mut last = Escalated::Limited { struck: false };
    for _ in 0..4 {
        last = tracker.on_rejection(&"k", T0, wait);
    }
    assert!(matches!(last, Escalated::Blocked { .. }));
    assert!(matches!(
        tracker.on_request(&"k", T0),
        (Gate::Blocked { .. }, true)
    ));
    assert_eq!(tracker.blocked(T0).len(), 1);
    assert!(tracker.unblock(&"k", T0));
    assert_eq!(tracker.on_request(&"k", T0), (Gate::Pass, true));
    assert!(tracker.blocked(T0).is_empty());
    assert!(!tracker.unblock(&"k", T0), "nothing left to lift");
}

#[test]
fn keys_in_good_standing_cost_nothing_and_calm_keys_are_forgotten() {
    let tracker = AbuseTracker::new(policy());
    assert_eq!(tracker.on_request(&1u32, T0), (Gate::Pass, false));
    assert!(tracker.get(&1).is_none());
    tracker.on_rejection(&1, T0, Duration::from_secs(1));
    assert!(tracker.get(&1).is_some());
    // A later rejection of another key in the same tracker sweeps the calm ones.
    let later = T0 + Duration::from_secs(10);
    for other in 2..2_000u32 {
        tracker.on_rejection(&other, later, Duration::from_secs(1));
    }
    assert!(tracker.get(&1).is_none());
}
