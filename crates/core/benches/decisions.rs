//! Nanoseconds per decision: tollgate's `MemoryStore` against governor's keyed
//! GCRA (its default DashMap state), side by side in one run, on the same kind of
//! traffic and simulated time. Only the ratios within one run mean anything on a
//! shared machine.
//!
//! ```text
//! cargo bench -p tollgate-core --bench decisions
//! cargo bench -p tollgate-core --bench decisions -- 100k/1t   # a subset
//! ```
//!
//! Traffic. Keys are drawn uniformly from the key space (100k or 1M keys) by a
//! fixed-seed splitmix64 and pre-generated into a `Vec`, so drawing them is not
//! measured (each pass over it shifts every key by a per-pass offset, so that no
//! key keeps the same rate for ever). Time is simulated: it advances `VISIT_EVERY / keys` per decision, so
//! each key is asked about every 2.4 s on average, 25 times a minute: half of the
//! 50-per-minute quota. A key's requests in any minute are then close to
//! Poisson(25), which almost never exceeds 50, so nearly every decision is an
//! admission (the run prints the admitted share of each scenario): the common
//! case a limiter must make cheap. Meanwhile a rolling log holds about 25 entries
//! and expires about one per request, as under steady load.
//!
//! Both limiters see time in steps of one chunk of `CHUNK` decisions: each thread
//! takes the next chunk of keys and advances the simulated clock once for it, so
//! neither pays a contended atomic per decision. Before measuring, every key is
//! already in each limiter (steady state, no inserts while measuring): tollgate's
//! states get 25 requests spread over the minute before the measured traffic;
//! governor's gets one (a GCRA state is a single instant, and under this traffic
//! its bucket is nearly empty anyway). tollgate's own sweeps of idle keys (every
//! 5 s of simulated time per shard) run inside the measurement, as they would in
//! production; governor sweeps nothing unless told to.
//!
//! Two-thread figures are the wall time of the slower thread divided by the
//! decisions of both threads: aggregate throughput, so perfect scaling halves them.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use governor::clock::{Clock, FakeRelativeClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota as GovernorQuota, RateLimiter};
use tollgate_core::{Charge, LimitId, ManualClock, MemoryStore, Quota, Rate, Timestamp};

/// Decisions that share one simulated instant and one cursor step.
const CHUNK: usize = 64;
/// Keys pre-generated per key space (a multiple of `CHUNK`), replayed in passes.
const SEQUENCE_LEN: usize = 1 << 22;
/// The mean time between two requests for one key: half the quota's rate.
const VISIT_EVERY: Duration = Duration::from_millis(2_400);
/// The quota's window.
const WINDOW: Duration = Duration::from_secs(60);
/// Requests per key before measuring: one window's worth at `VISIT_EVERY`.
const PREFILL: u64 = 25;
/// Endpoints in the multi-limit scenario (each with its own fixed limit).
const ENDPOINTS: u64 = 16;

/// governor's keyed limiter on its default keyed state (DashMap), fake clock.
type Governor = RateLimiter<
    u64,
    DefaultKeyedStateStore<u64>,
    FakeRelativeClock,
    NoOpMiddleware<<FakeRelativeClock as Clock>::Instant>,
>;

/// splitmix64: a fixed-seed generator, so every run replays the same keys.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (multiply-high; the bias is below 2⁻⁴⁰ for these `n`).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

/// A key space, its pre-generated requests, and where the next chunk starts.
struct Traffic {
    keys: u64,
    label: &'static str,
    sequence: Vec<u64>,
    cursor: AtomicUsize,
}

impl Traffic {
    fn new(keys: u64, label: &'static str) -> Self {
        let mut rng = SplitMix64(0x7011_6A7E ^ keys);
        Self {
            keys,
            label,
            sequence: (0..SEQUENCE_LEN).map(|_| rng.below(keys)).collect(),
            cursor: AtomicUsize::new(0),
        }
    }

    /// Simulated nanoseconds per decision, so each key comes every `VISIT_EVERY`.
    fn step_nanos(&self) -> u64 {
        VISIT_EVERY.as_nanos() as u64 / self.keys
    }

    /// The next `len` (at most `CHUNK`) keys, for whichever thread asks, written
    /// into `buffer`. Each pass over the sequence shifts every key by its own
    /// offset, so that a key's request count is not the same in every pass (at
    /// 1M keys a pass is only 9.6 s of simulated time, and a key drawn 9 times in
    /// the sequence would otherwise come 56 times a minute, for ever).
    fn next_chunk<'b>(&self, len: usize, buffer: &'b mut [u64; CHUNK]) -> &'b [u64] {
        let position = self.cursor.fetch_add(CHUNK, Ordering::Relaxed);
        let (pass, at) = (position / SEQUENCE_LEN, position % SEQUENCE_LEN);
        let shift = SplitMix64(pass as u64).below(self.keys);
        let keys = self.keys;
        for (slot, key) in buffer.iter_mut().zip(&self.sequence[at..at + len]) {
            let shifted = key + shift;
            *slot = if shifted >= keys {
                shifted - keys
            } else {
                shifted
            };
        }
        &buffer[..len]
    }
}

/// How many decisions a scenario made and admitted (all its runs together).
#[derive(Default)]
struct Tally {
    admitted: AtomicU64,
    total: AtomicU64,
}

/// Makes `decisions` decisions on `threads` threads and returns the slowest
/// thread's time. `decide` takes a chunk of keys and returns how many it admitted.
fn run<F>(threads: usize, decisions: u64, traffic: &Traffic, tally: &Tally, decide: &F) -> Duration
where
    F: Fn(&[u64]) -> u64 + Sync,
{
    let share = decisions.div_ceil(threads as u64);
    let work = |barrier: Option<&Barrier>| {
        if let Some(barrier) = barrier {
            barrier.wait();
        }
        let started = Instant::now();
        let (mut left, mut admitted) = (share, 0);
        let mut buffer = [0; CHUNK];
        while left > 0 {
            let len = left.min(CHUNK as u64) as usize;
            admitted += decide(traffic.next_chunk(len, &mut buffer));
            left -= len as u64;
        }
        let elapsed = started.elapsed();
        tally.admitted.fetch_add(admitted, Ordering::Relaxed);
        tally.total.fetch_add(share, Ordering::Relaxed);
        elapsed
    };
    if threads == 1 {
        return work(None);
    }
    let barrier = Barrier::new(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| scope.spawn(|| work(Some(&barrier))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a bench thread panicked"))
            .max()
            .unwrap_or_default()
    })
}

/// Simulated time for a tollgate store, which takes the instant as an argument.
struct SimTime(AtomicU64);

impl SimTime {
    fn new(start: Timestamp) -> Self {
        Self(AtomicU64::new(start.as_nanos()))
    }

    /// Moves time on by `nanos` and returns the new instant.
    fn advance(&self, nanos: u64) -> Timestamp {
        Timestamp::from_nanos(self.0.fetch_add(nanos, Ordering::Relaxed) + nanos)
    }
}

/// Where the measured traffic starts for tollgate (a realistic epoch instant).
const START: Timestamp = Timestamp::from_secs(1_700_000_000);

/// A tollgate store with every key already carrying `PREFILL` requests spread
/// over the window before `START` (each key at its own offset), and the
/// simulated time its measured traffic runs on.
struct TollgateFixture {
    store: MemoryStore<u64>,
    time: SimTime,
}

impl TollgateFixture {
    fn new<const N: usize>(keys: u64, charges: &impl Fn(u64) -> [Charge<u64>; N]) -> Self {
        // The store's own clock is only read by `sweep()` and `decide_now`, which
        // this bench does not call: every decision passes its instant.
        let store = MemoryStore::new(ManualClock::new(START));
        let visit = VISIT_EVERY.as_nanos() as u64;
        let mut rng = SplitMix64(42);
        for key in 0..keys {
            let offset = rng.below(visit);
            for i in 0..PREFILL {
                let at = START - WINDOW + Duration::from_nanos(offset + i * visit);
                store.decide_at(&charges(key), at);
            }
        }
        Self {
            store,
            time: SimTime::new(START),
        }
    }
}

/// Decides each key of a chunk through the store, all at one new instant.
fn tollgate_decide<'a, const N: usize>(
    fixture: &'a TollgateFixture,
    step: u64,
    charges: &'a (impl Fn(u64) -> [Charge<u64>; N] + Sync),
) -> impl Fn(&[u64]) -> u64 + Sync + 'a {
    move |keys| {
        let now = fixture.time.advance(step * keys.len() as u64);
        keys.iter()
            .filter(|&&key| fixture.store.decide_at(&charges(key), now).is_admitted())
            .count() as u64
    }
}

/// governor's keyed GCRA for 50 per minute (burst 50), default keyed state, on a
/// fake clock, with every key already seen once.
struct GovernorFixture {
    limiter: Governor,
    clock: FakeRelativeClock,
}

impl GovernorFixture {
    fn new(keys: u64) -> Self {
        let clock = FakeRelativeClock::default();
        let quota = GovernorQuota::per_minute(NonZeroU32::new(50).expect("non-zero"));
        let limiter = RateLimiter::new(quota, DefaultKeyedStateStore::default(), clock.clone());
        clock.advance(WINDOW);
        for key in 0..keys {
            let _ = limiter.check_key(&key);
        }
        Self { limiter, clock }
    }
}

/// Checks each key of a chunk through governor, after one advance of its clock.
fn governor_decide(fixture: &GovernorFixture, step: u64) -> impl Fn(&[u64]) -> u64 + Sync + '_ {
    move |keys| {
        fixture
            .clock
            .advance(Duration::from_nanos(step * keys.len() as u64));
        keys.iter()
            .filter(|key| fixture.limiter.check_key(key).is_ok())
            .count() as u64
    }
}

/// Benchmarks one scenario and records its admitted share for the summary.
/// `prepare` builds (on first use, so that a filtered-out scenario costs nothing)
/// and returns the function that decides a chunk.
fn scenario<P, F>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    summary: &mut Vec<(String, u64, u64)>,
    name: &str,
    traffic: &Traffic,
    threads: usize,
    prepare: P,
) where
    P: Fn() -> F,
    F: Fn(&[u64]) -> u64 + Sync,
{
    let tally = Tally::default();
    let id = BenchmarkId::new(name, format!("{}/{threads}t", traffic.label));
    group.bench_function(id, |b| {
        let decide = prepare();
        b.iter_custom(|iters| run(threads, iters, traffic, &tally, &decide));
    });
    summary.push((
        format!("{name}/{}/{threads}t", traffic.label),
        tally.admitted.load(Ordering::Relaxed),
        tally.total.load(Ordering::Relaxed),
    ));
}

fn per_key(quota: Quota) -> impl Fn(u64) -> [Charge<u64>; 1] + Sync {
    move |key| {
        [Charge {
            limit: LimitId(0),
            key,
            quota,
        }]
    }
}

fn decisions(c: &mut Criterion) {
    let rate = Rate::per_minute(50);
    let rolling = &per_key(Quota::rolling(rate));
    let mut summary = Vec::new();
    let mut group = c.benchmark_group("decisions");
    group.throughput(Throughput::Elements(1));

    // tollgate rolling against governor GCRA, at two key counts, 1 and 2 threads,
    // interleaved so that each pair runs under the same conditions.
    for (keys, label) in [(100_000, "100k"), (1_000_000, "1M")] {
        let traffic = Traffic::new(keys, label);
        let step = traffic.step_nanos();
        let (tollgate, governor) = (&OnceLock::new(), &OnceLock::new());
        for threads in [1, 2] {
            scenario(
                &mut group,
                &mut summary,
                "tollgate-rolling",
                &traffic,
                threads,
                || {
                    let fixture = tollgate.get_or_init(|| TollgateFixture::new(keys, rolling));
                    tollgate_decide(fixture, step, rolling)
                },
            );
            scenario(
                &mut group,
                &mut summary,
                "governor-gcra",
                &traffic,
                threads,
                || governor_decide(governor.get_or_init(|| GovernorFixture::new(keys)), step),
            );
        }
    }

    // The other algorithms, 100k keys, 1 thread. tollgate's GCRA gets governor's
    // burst (50), so it is the same algorithm as governor's.
    let traffic = Traffic::new(100_000, "100k");
    let (keys, step) = (traffic.keys, traffic.step_nanos());
    for (name, quota) in [
        ("tollgate-fixed", Quota::fixed(rate)),
        ("tollgate-gcra", Quota::gcra(rate, 50)),
        ("tollgate-sliding-counter", Quota::sliding_counter(rate)),
    ] {
        let (charges, fixture) = (&per_key(quota), &OnceLock::new());
        scenario(&mut group, &mut summary, name, &traffic, 1, || {
            tollgate_decide(
                fixture.get_or_init(|| TollgateFixture::new(keys, charges)),
                step,
                charges,
            )
        });
    }

    // Two limits per request: the per-key rolling limit and a per-endpoint fixed
    // limit (16 endpoints at 5,000 a second each; the traffic brings about 2,600
    // a second to each), decided and charged together.
    let endpoint = Quota::fixed(Rate::per_second(5_000));
    let multi = &move |key: u64| {
        [
            Charge {
                limit: LimitId(0),
                key,
                quota: Quota::rolling(rate),
            },
            Charge {
                limit: LimitId(1),
                key: key % ENDPOINTS,
                quota: endpoint,
            },
        ]
    };
    let fixture = &OnceLock::new();
    for threads in [1, 2] {
        scenario(
            &mut group,
            &mut summary,
            "tollgate-multi",
            &traffic,
            threads,
            || {
                tollgate_decide(
                    fixture.get_or_init(|| TollgateFixture::new(keys, multi)),
                    step,
                    multi,
                )
            },
        );
    }
    group.finish();

    println!("\nadmitted share per scenario (all runs, warm-up included):");
    for (name, admitted, total) in summary.iter().filter(|(_, _, total)| *total > 0) {
        println!(
            "  {name:<36} {:>7.3}% of {total} decisions",
            100.0 * *admitted as f64 / *total as f64
        );
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(20)
}

// What `criterion_group!`/`criterion_main!` expand to, written out so that the
// workspace's `missing_docs` lint has nothing public to complain about.
fn main() {
    let mut criterion = config().configure_from_args();
    decisions(&mut criterion);
    Criterion::default().configure_from_args().final_summary();
}
