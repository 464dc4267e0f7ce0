//! `tollgate simulate`: replays requests against a limit, with escalation.

mod trace;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use tollgate_core::abuse::EscalationPolicy;
use tollgate_core::enforce::{Enforcer, Outcome};
use tollgate_core::{
    Algorithm, Endpoints, ManualClock, MemoryStore, Policy, PolicySet, Quota, Rate, Scope, Subject,
    Timestamp, retry_after_secs,
};

pub use trace::Request;

/// Arguments of `tollgate simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The per-key limit, like `50/60s`, `20/s` or `50 per 60s`.
    #[arg(long, value_name = "RATE", value_parser = super::rate)]
    limit: Rate,
    /// How the limit is enforced.
    #[arg(long, value_enum, default_value_t = AlgorithmArg::Rolling)]
    algorithm: AlgorithmArg,
    /// For `gcra`: how many requests may come at once (default: the limit's count).
    #[arg(long)]
    burst: Option<u32>,
    /// A file of requests, one per line: `<seconds> <key>` (e.g. `12.5 key-a`);
    /// `#` starts a comment.
    #[arg(long, conflicts_with = "pattern")]
    trace: Option<PathBuf>,
    /// A generated client behaviour instead of a trace.
    #[arg(long, value_enum, required_unless_present = "trace")]
    pattern: Option<Pattern>,
    /// Clients following the pattern, each with its own key.
    #[arg(long, default_value_t = 1)]
    clients: u32,
    /// How long the generated pattern runs.
    #[arg(long = "for", value_name = "DURATION", default_value = "5min", value_parser = super::duration)]
    duration: Duration,
    /// The gap between a client's requests when nothing tells it to wait.
    #[arg(long, default_value = "100ms", value_parser = super::duration)]
    interval: Duration,
    /// Strikes (requests before the retry instant) within a minute that block a key.
    #[arg(long, default_value_t = EscalationPolicy::default().strikes)]
    strikes: u32,
    /// The first block's length; it doubles on every repeat offence.
    #[arg(long, default_value = "60s", value_parser = super::duration)]
    block: Duration,
}

/// The algorithms, as the command line names them.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum AlgorithmArg {
    Rolling,
    Fixed,
    Gcra,
    SlidingCounter,
}

/// How a generated client behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Pattern {
    /// Retries every `--interval` whatever the answer: the client that gets blocked.
    Naive,
    /// Sends every `--interval`, and after a 429 waits its Retry-After (whole
    /// seconds, rounded up): never blocked.
    Compliant,
    /// Spreads requests evenly at exactly the limit's rate.
    Even,
}

/// Counts for one key.
#[derive(Debug, Default)]
struct Tally {
    admitted: u64,
    rejected: u64,
    blocked: u64,
    strikes: u64,
    blocks: u64,
}

/// Runs the simulation and prints the counts.
pub fn run(args: &SimulateArgs) -> anyhow::Result<()> {
    let quota = Quota {
        rate: args.limit,
        algorithm: match args.algorithm {
            AlgorithmArg::Rolling => Algorithm::Rolling,
            AlgorithmArg::Fixed => Algorithm::Fixed,
            AlgorithmArg::Gcra => Algorithm::Gcra {
                burst: args.burst.unwrap_or(args.limit.count()),
            },
            AlgorithmArg::SlidingCounter => Algorithm::SlidingCounter,
        },
    };
    let escalation = EscalationPolicy {
        strikes: args.strikes.max(1),
        first_block: args.block,
        ..EscalationPolicy::default()
    };
    let (names, tallies) = match &args.trace {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the trace {}", path.display()))?;
            let requests =
                trace::parse(&text).map_err(|e| anyhow::anyhow!("{}:{e}", path.display()))?;
            replay(quota, escalation, requests)
        }
        None => {
            let pattern = args.pattern.context("give --trace FILE or --pattern")?;
            generate(quota, escalation, pattern, args)
        }
    };
    print_report(&quota, &escalation, &names, &tallies);
    Ok(())
}

fn enforcer(
    quota: Quota,
    escalation: EscalationPolicy,
    clock: ManualClock,
) -> Enforcer<MemoryStore<u64>> {
    let policy = Policy {
        name: "per-key".into(),
        scope: Scope::PerKey,
        quota,
        endpoints: Endpoints::All,
        tier_step: None,
    };
    Enforcer::new(
        PolicySet::new(vec![policy]),
        MemoryStore::new(clock),
        escalation,
    )
}

/// The simulation's start: an arbitrary, fixed instant.
const START: Timestamp = Timestamp::from_secs(1_700_000_000);

/// Decides one request and counts it; returns how long the client is told to wait.
fn decide(
    enforcer: &Enforcer<MemoryStore<u64>>,
    tally: &mut Tally,
    key: u32,
    now: Timestamp,
) -> Option<Duration> {
    let subject = Subject {
        key,
        endpoint: None,
        increments: 0,
    };
    match enforcer
        .check_now(&subject, now)
        .expect("the memory store cannot fail")
    {
        Outcome::Admitted(_) => {
            tally.admitted += 1;
            None
        }
        Outcome::Limited { decision, struck } => {
            tally.rejected += 1;
            tally.strikes += u64::from(struck);
            decision.retry_after()
        }
        Outcome::Blocked { until, now_blocked } => {
            tally.blocked += 1;
            // The request that crossed the threshold was a strike too.
            tally.strikes += u64::from(now_blocked);
            tally.blocks += u64::from(now_blocked);
            Some(until.saturating_since(now))
        }
    }
}

fn replay(
    quota: Quota,
    escalation: EscalationPolicy,
    mut requests: Vec<Request>,
) -> (Vec<String>, Vec<Tally>) {
    requests.sort_by_key(|r| r.at);
    let clock = ManualClock::new(START);
    let enforcer = enforcer(quota, escalation, clock.clone());
    let mut ids: BTreeMap<String, u32> = BTreeMap::new();
    let mut names = Vec::new();
    let mut tallies: Vec<Tally> = Vec::new();
    for request in requests {
        let id = *ids.entry(request.key.clone()).or_insert_with(|| {
            names.push(request.key.clone());
            tallies.push(Tally::default());
            (names.len() - 1) as u32
        });
        let now = START + request.at;
        clock.set(now);
        decide(&enforcer, &mut tallies[id as usize], id, now);
    }
    (names, tallies)
}

fn generate(
    quota: Quota,
    escalation: EscalationPolicy,
    pattern: Pattern,
    args: &SimulateArgs,
) -> (Vec<String>, Vec<Tally>) {
    let clock = ManualClock::new(START);
    let enforcer = enforcer(quota, escalation, clock.clone());
    let clients = args.clients.max(1);
    let names = (1..=clients)
        .map(|i| format!("{pattern:?}-{i}").to_lowercase())
        .collect();
    let mut tallies: Vec<Tally> = (0..clients).map(|_| Tally::default()).collect();
    let even_gap = quota.rate.window() / quota.rate.count();
    let gap = if pattern == Pattern::Even {
        even_gap
    } else {
        args.interval
    };
    // Clients start spread over one gap, then each reschedules itself.
    let mut queue: BinaryHeap<Reverse<(Timestamp, u32)>> = (0..clients)
        .map(|c| Reverse((START + gap * c / clients, c)))
        .collect();
    let end = START + args.duration;
    while let Some(Reverse((now, client))) = queue.pop() {
        if now >= end {
            break;
        }
        clock.set(now);
        let wait = decide(&enforcer, &mut tallies[client as usize], client, now);
        let next = match (pattern, wait) {
            (Pattern::Compliant, Some(wait)) => Duration::from_secs(retry_after_secs(wait)),
            _ => gap,
        };
        queue.push(Reverse((now + next, client)));
    }
    (names, tallies)
}

fn print_report(quota: &Quota, escalation: &EscalationPolicy, names: &[String], tallies: &[Tally]) {
    println!(
        "limit {quota} per key; {} strikes within {}s block a key for {}s, doubling on repeat",
        escalation.strikes,
        escalation.strike_window.as_secs(),
        escalation.first_block.as_secs()
    );
    println!(
        "{:<16} {:>10} {:>14} {:>13} {:>8} {:>7}",
        "key", "admitted", "rejected (429)", "blocked (403)", "strikes", "blocks"
    );
    let mut total = Tally::default();
    for (name, t) in names.iter().zip(tallies) {
        println!(
            "{name:<16} {:>10} {:>14} {:>13} {:>8} {:>7}",
            t.admitted, t.rejected, t.blocked, t.strikes, t.blocks
        );
        total.admitted += t.admitted;
        total.rejected += t.rejected;
        total.blocked += t.blocked;
        total.strikes += t.strikes;
        total.blocks += t.blocks;
    }
    println!(
        "{:<16} {:>10} {:>14} {:>13} {:>8} {:>7}",
        "total", total.admitted, total.rejected, total.blocked, total.strikes, total.blocks
    );
}
