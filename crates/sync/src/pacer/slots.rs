//! One provider limit as the client sees it.
//!
//! The provider charges a request at the instant it admits it — somewhere
//! between our send and its response. So a slot is held from the send until the
//! window has passed since the response: the latest instant the provider can
//! have charged it. Counting slots this way, the next request sent can never
//! land inside the provider's window, whatever the latency and however many
//! requests are in flight. This is why client limiters that count at send time
//! (token buckets, fixed reservoirs, even spacing at exactly W/N) over-run a
//! strict rolling window at its edge, and this one does not.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use tollgate_core::{Rate, Timestamp};

/// The client's view of one limit of one provider budget.
#[derive(Clone, Debug)]
pub struct SlotLog {
    rate: Rate,
    /// When each completed request's slot returns (response + window), earliest first.
    returns: BinaryHeap<Reverse<Timestamp>>,
    /// Requests sent and not yet answered: each holds a slot.
    in_flight: u32,
    /// The earliest instant the next request may be sent, for even spacing.
    next_send: Timestamp,
    /// No request before this instant (a `429`'s retry instant).
    paused_until: Timestamp,
}

impl SlotLog {
    /// A log for `rate`, with nothing used.
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            returns: BinaryHeap::new(),
            in_flight: 0,
            next_send: Timestamp::EPOCH,
            paused_until: Timestamp::EPOCH,
        }
    }

    /// The limit this log keeps to.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// The gap between two sends when requests are spread evenly.
    fn spacing(&self) -> Duration {
        self.rate.window() / self.rate.count()
    }

    fn expire(&mut self, now: Timestamp) {
        while self.returns.peek().is_some_and(|Reverse(at)| *at <= now) {
            self.returns.pop();
        }
    }

    /// Slots in use at `now`: requests in flight and answered ones whose window
    /// has not passed.
    pub fn used(&mut self, now: Timestamp) -> u32 {
        self.expire(now);
        self.in_flight + self.returns.len() as u32
    }

    /// The earliest instant a request may be sent, seen from `now`; `None` when
    /// only an answer in flight can free a slot.
    pub fn ready_at(&mut self, now: Timestamp) -> Option<Timestamp> {
        let spaced = self.next_send.max(self.paused_until);
        let used = self.used(now);
        if used < self.rate.count() {
            return Some(spaced.max(now));
        }
        // Full: the (used − count)-th earliest completed slot to return frees
        // the one needed. Usually the log is exactly full and that is the
        // heap's top; a limit lowered by the provider needs a deeper look.
        let over = (used - self.rate.count()) as usize;
        let frees = match over {
            _ if over >= self.returns.len() => return None,
            0 => self.returns.peek().map(|Reverse(at)| *at)?,
            _ => {
                let mut returns: Vec<Timestamp> =
                    self.returns.iter().map(|Reverse(at)| *at).collect();
                returns.sort_unstable();
                returns[over]
            }
        };
        Some(frees.max(spaced).max(now))
    }

    /// Takes a slot for a request sent at `now`. Call only when
    /// [`ready_at`](Self::ready_at) is not after `now`.
    pub fn acquire(&mut self, now: Timestamp) {
        self.expire(now);
        self.in_flight += 1;
        // Anchor the spacing on the schedule, not on the instant the timer
        // fired: a send late by less than a tenth of the spacing (timer
        // resolution, a busy runtime) does not push every later send back, or
        // the drift alone would leave a few percent of the budget unused. A
        // later send (after an idle spell) starts the schedule afresh, so the
        // first gap after it is never shorter than one spacing.
        let spacing = self.spacing();
        let late = now.saturating_since(self.next_send);
        self.next_send = if late <= spacing / 10 {
            self.next_send + spacing
        } else {
            now + spacing
        };
    }

    /// The answer to a request arrived at `now` (or it failed then): its slot
    /// returns one window later.
    pub fn complete(&mut self, now: Timestamp) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.returns.push(Reverse(now + self.rate.window()));
    }

    /// Counts a request another process sent at `sent_at` and that was
    /// answered (or whose process stopped) at `answered_at`: its slot returns
    /// one window after, and the next send is spaced after it.
    pub fn restore(&mut self, sent_at: Timestamp, answered_at: Timestamp) {
        self.returns.push(Reverse(answered_at + self.rate.window()));
        self.next_send = self.next_send.max(sent_at + self.spacing());
    }

    /// No request before `until` (a `429`'s retry instant).
    pub fn pause_until(&mut self, until: Timestamp) {
        self.paused_until = self.paused_until.max(until);
    }

    /// The instant requests are paused until, if after `now`.
    pub fn paused(&self, now: Timestamp) -> Option<Timestamp> {
        (self.paused_until > now).then_some(self.paused_until)
    }

    /// Adopts a limit the provider announced (or that was learned); slots in use
    /// stay in use.
    pub fn learn(&mut self, rate: Rate) {
        if rate == self.rate {
            return;
        }
        // A longer window holds the slots in use longer: each returns one
        // (new) window after its answer, not one provisional window.
        if rate.window() > self.rate.window() {
            let longer = rate.window() - self.rate.window();
            self.returns = self
                .returns
                .drain()
                .map(|Reverse(at)| Reverse(at + longer))
                .collect();
        }
        // The next send is one new spacing after the last, not one old one.
        let last_send = self.next_send - self.spacing();
        self.rate = rate;
        if self.next_send > Timestamp::EPOCH {
            self.next_send = last_send + self.spacing();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp::from_secs(1_000);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn requests_are_spread_evenly_at_the_limits_rate() {
        let mut log = SlotLog::new(Rate::per_second(20));
        let mut now = T0;
        for i in 0..5 {
            assert_eq!(log.ready_at(now), Some(T0 + ms(50 * i)));
            now = log.ready_at(now).unwrap();
            log.acquire(now);
            log.complete(now + ms(3));
        }
    }

    #[test]
    fn a_send_slightly_late_keeps_the_schedule_and_a_late_one_restarts_it() {
        let mut log = SlotLog::new(Rate::per_second(20)); // one every 50 ms
        log.acquire(T0);
        log.complete(T0 + ms(1));
        // The timer fires 4 ms late: the next is still due at 100 ms, not 104.
        assert_eq!(log.ready_at(T0 + ms(54)), Some(T0 + ms(54)));
        log.acquire(T0 + ms(54));
        assert_eq!(log.ready_at(T0 + ms(60)), Some(T0 + ms(100)));
        log.acquire(T0 + ms(100));
        // After an idle spell the schedule starts afresh: a full gap follows.
        log.acquire(T0 + ms(400));
        assert_eq!(log.ready_at(T0 + ms(401)), Some(T0 + ms(450)));
    }

    #[test]
    fn learning_a_longer_window_holds_the_slots_in_use_for_it() {
        let mut log = SlotLog::new(Rate::per_second(1));
        log.acquire(T0);
        log.complete(T0 + ms(100)); // returns at 1.1 s under the provisional 1/s
        log.learn(Rate::new(1, Duration::from_secs(6)));
        assert_eq!(log.ready_at(T0 + ms(2_000)), Some(T0 + ms(6_100)));
        // And the spacing follows the new rate from the last send.
        let mut log = SlotLog::new(Rate::per_second(10));
        log.acquire(T0);
        log.learn(Rate::per_second(2));
        log.complete(T0 + ms(10));
        assert_eq!(log.ready_at(T0 + ms(20)), Some(T0 + ms(500)));
    }

    #[test]
    fn a_restored_request_holds_its_slot_and_the_spacing() {
        let mut log = SlotLog::new(Rate::new(2, Duration::from_secs(10)));
        log.restore(T0, T0 + ms(300));
        log.restore(T0 + ms(5_000), T0 + ms(5_200));
        // Both slots are used until 10.3 s: a new process waits for the first.
        assert_eq!(log.ready_at(T0 + ms(6_000)), Some(T0 + ms(10_300)));
        let mut log = SlotLog::new(Rate::new(2, Duration::from_secs(10)));
        log.restore(T0, T0 + ms(300));
        assert_eq!(
            log.ready_at(T0 + ms(1_000)),
            Some(T0 + ms(5_000)),
            "spaced after it"
        );
    }

    #[test]
    fn a_slot_is_held_until_a_window_after_the_answer() {
        let mut log = SlotLog::new(Rate::new(2, Duration::from_secs(10)));
        log.acquire(T0);
        log.acquire(T0 + ms(5_000));
        assert_eq!(log.ready_at(T0 + ms(5_000)), None, "both in flight");
        log.complete(T0 + ms(400)); // the provider charged it somewhere in [0, 400 ms]
        assert_eq!(log.ready_at(T0 + ms(6_000)), Some(T0 + ms(10_400)));
        log.complete(T0 + ms(5_100));
        assert_eq!(log.used(T0 + ms(10_400)), 1);
        assert_eq!(log.used(T0 + ms(15_100)), 0);
    }

    #[test]
    fn a_pause_holds_every_request_until_the_retry_instant() {
        let mut log = SlotLog::new(Rate::per_second(100));
        log.pause_until(T0 + ms(60_000));
        assert_eq!(log.ready_at(T0), Some(T0 + ms(60_000)));
        assert_eq!(log.paused(T0), Some(T0 + ms(60_000)));
        assert_eq!(log.paused(T0 + ms(60_000)), None);
    }

    /// Against a strict rolling window that charges each request at a random
    /// instant between send and answer, the log never lets more than N be
    /// charged in any window — with many requests in flight.
    #[test]
    fn never_over_runs_a_provider_that_charges_anywhere_in_flight() {
        let rate = Rate::new(10, Duration::from_secs(2));
        let mut log = SlotLog::new(rate);
        let mut seed = 7u64;
        let mut random = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut now = T0;
        let mut in_flight: Vec<(Timestamp, Timestamp)> = Vec::new(); // (charged, answered)
        let mut charged = Vec::new();
        for _ in 0..20_000 {
            // Deliver answers due by now.
            in_flight.retain(|&(_, answered)| {
                if answered <= now {
                    log.complete(answered);
                    false
                } else {
                    true
                }
            });
            match log.ready_at(now) {
                Some(at) if at <= now => {
                    log.acquire(now);
                    let latency = ms(random(300));
                    let charged_at = now + ms(random(latency.as_millis() as u64 + 1));
                    charged.push(charged_at);
                    in_flight.push((charged_at, now + latency));
                }
                _ => {}
            }
            now = now + ms(1 + random(20));
        }
        charged.sort();
        let window = rate.window();
        let worst = charged
            .iter()
            .enumerate()
            .map(|(i, t)| {
                charged[i..]
                    .iter()
                    .take_while(|u| **u < *t + window)
                    .count()
            })
            .max()
            .unwrap();
        assert!(worst <= 10, "{worst} charged within one window");
        assert!(
            charged.len() > 15_000 * 10 / 2_000 * 2 / 10,
            "and it kept going: {}",
            charged.len()
        );
    }
}
