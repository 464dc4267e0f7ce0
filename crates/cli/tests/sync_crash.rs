//! `tollgate sync --once` killed with SIGKILL at random points of an import,
//! again and again, then run to the end, against the strict example provider.
//!
//! What docs/sync.md promises for a crash: "each page is stored together with
//! its checkpoint in one transaction, so a crash or `kill -9` mid-import
//! resumes from the last stored page: nothing lost, nothing duplicated, at most
//! one page fetched again" — and the key is never blocked. This test checks
//! each of those from the outside: the database (opened with
//! `tollgate_sql::Storage` and compared record by record with what the provider
//! serves) and the provider's own log of every request.
//!
//! The runs: the example provider in this process (strict mode, 20 requests
//! per rolling second per key), a sync configuration with the key in a file
//! and a SQLite store in a temporary folder, then `tollgate sync --once` run
//! as a process `KILLS` times and killed with SIGKILL at a random instant
//! (seeded; the instants cover the whole import), each started as soon as the
//! previous one is dead — as a supervisor restarts a crashed daemon — and
//! finally once more to the end.
//!
//! "Fetched again", for each run that resumes an interrupted import: requests
//! answered with a page (`2xx`, or `304` to a conditional request: either way
//! one request of the budget) for a page the earlier runs of the same import
//! had stored, read from a copy of the database taken between the two runs:
//!
//! * `ckpt`: a page before the checkpoint of a scope in progress;
//! * `fan-out`: the user list of a channel that an earlier run had finished,
//!   while the fan-out over the channels was not finished;
//! * `resources`: a page of a resource an earlier run had finished in full.
//!
//! What the checkpoints guarantee — each page is stored with its checkpoint,
//! so after a kill only the page in flight is fetched again — allows `ckpt` +
//! `fan-out` to be at most one per scope in flight at the kill: one for a
//! plain resource, `concurrency` for the fan-out. That is asserted. The
//! `resources` count is printed and not asserted: a finished resource has no
//! checkpoint, and `--once` imports every resource each time it runs.
//!
//! Run it alone, with the per-run table:
//!
//! ```sh
//! cargo test -p tollgate --test sync_crash -- --nocapture
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tollgate_core::{Clock, Quota, Rate, SystemClock, Timestamp};
use tollgate_sql::{ListQuery, Storage};
use tollgate_testkit::{ApiHandle, ExampleApi, Limits, LogEntry, Resource, Rng};

const KEY: &str = "sync-crash-key-0123456789";
/// The provider's budget, scaled down so that a full import takes seconds:
/// 20 per rolling second per key.
const BUDGET: u32 = 20;
const WINDOW: Duration = Duration::from_secs(1);
/// 200 properties at 10 a page (21 requests: the 21st page is empty), one page
/// of 40 channels, and one request per channel for its users: 62 requests, a
/// little over 3 s at 20/s.
const PROPERTIES: usize = 200;
const PER_PAGE: u64 = 10;
const CHANNELS: usize = 40;
const CONCURRENCY: u32 = 4;
/// Runs killed with SIGKILL before the one that is let finish.
const KILLS: usize = 20;
/// The kill instants are spread evenly (one in each of `KILLS` equal slices,
/// at a random point of it) over this span after the spawn, in a random order:
/// a fresh full import takes about 3.1 s.
const KILL_SPAN: (Duration, Duration) = (Duration::from_millis(100), Duration::from_millis(3_000));
const SEED: u64 = 0x5EED_C4A5;
/// A strict-mode block lasts this long here (the provider's default is 300 s):
/// a block is recorded and fails the test all the same, but the runs after it
/// can go on, so one run of the test shows every finding.
const STRICT_BLOCK: Duration = Duration::from_secs(2);

/// When each killed run is killed, after its spawn.
fn kill_delays() -> Vec<Duration> {
    let mut rng = Rng::new(SEED);
    let (low, high) = KILL_SPAN;
    let slice = (high - low) / KILLS as u32;
    let mut delays: Vec<Duration> = (0..KILLS)
        .map(|i| low + slice * i as u32 + slice.mul_f64(rng.unit()))
        .collect();
    for i in (1..delays.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        delays.swap(i, j);
    }
    delays
}

/// A resumable unit of an import: a resource and its scope (`""`, or the
/// parent's id for a fan-out).
type Scope = (String, String);

/// What the database says before a run.
#[derive(Default)]
struct Snapshot {
    /// The page each unfinished scope resumes at.
    checkpoints: HashMap<Scope, u64>,
    /// When each scope last finished (Unix ms).
    finished: HashMap<Scope, i64>,
}

/// How a run ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Killed,
    Exited(Option<i32>),
}

struct Run {
    /// `None` for the run that is let finish.
    kill_after: Option<Duration>,
    started: Timestamp,
    ended: Timestamp,
    how: Ended,
    stdout: String,
    /// The database before it.
    before: Snapshot,
    /// When its import started: the first run after the last one that
    /// finished it (exit 0).
    job_started_ms: i64,
}

fn ms(at: Timestamp) -> i64 {
    at.as_millis() as i64
}

/// The page a request asked for: its resource, scope and page number.
fn page_of(path: &str) -> Option<(Scope, u64)> {
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.parse::<u64>().ok())
    };
    if route == "/v1/properties" {
        return Some((("properties".into(), String::new()), param("page")?));
    }
    if route == "/dev/v1/channel/demo-app" {
        return Some((("channels".into(), String::new()), param("page_no")?));
    }
    let channel = route.strip_prefix("/dev/v1/channel/user/demo-app/")?;
    Some((("channel_users".into(), channel.to_owned()), 0))
}

/// The scopes whose checkpoints are read: the two plain resources and one per
/// channel.
fn scopes(handle: &ApiHandle) -> Vec<Scope> {
    let mut scopes = vec![
        ("properties".to_owned(), String::new()),
        ("channels".to_owned(), String::new()),
    ];
    for channel in handle.expected_records(Resource::Channels) {
        let name = channel["channel_name"].as_str().unwrap().to_owned();
        scopes.push(("channel_users".to_owned(), name));
    }
    scopes
}

async fn snapshot(store: &str, scopes: &[Scope]) -> Snapshot {
    let storage = Storage::connect(store).await.unwrap();
    let mut snapshot = Snapshot::default();
    for (resource, scope) in scopes {
        if let Some(checkpoint) = storage.checkpoint(resource, scope).await.unwrap() {
            let page = checkpoint
                .cursor
                .strip_prefix("n:")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("a page-number checkpoint: {checkpoint:?}"));
            snapshot
                .checkpoints
                .insert((resource.clone(), scope.clone()), page);
        }
    }
    for state in storage.resource_states().await.unwrap() {
        if let Some(at) = state.last_success_ms {
            snapshot.finished.insert((state.resource, state.scope), at);
        }
    }
    storage.close().await;
    snapshot
}

/// Copies the database file and its write-ahead log (the run that wrote them
/// is dead) to `to`.
fn copy_database(dir: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for name in ["sync.db", "sync.db-wal"] {
        if dir.join(name).exists() {
            std::fs::copy(dir.join(name), to.join(name)).unwrap();
        }
    }
}

fn write_config(dir: &Path, addr: std::net::SocketAddr) -> (PathBuf, String) {
    std::fs::write(dir.join("key"), format!("{KEY}\n")).unwrap();
    let store = format!("sqlite://{}", dir.join("sync.db").display());
    let text = format!(
        r#"store = "{store}"

[[sources]]
name = "example"
base_url = "http://{addr}"
key = {{ header = "X-Api-Key", file = "{key}" }}
limits = ["{BUDGET}/{window}s"]
timeout = "5s"
concurrency = {CONCURRENCY}

[[sources.resources]]
name = "properties"
path = "/v1/properties"
records = "/data"
pagination = {{ style = "page", param = "page", size_param = "per_page", size = {PER_PAGE} }}
every = "1min"

[[sources.resources]]
name = "channels"
path = "/dev/v1/channel/demo-app"
records = "/data/channels"
id = "channel_name"
pagination = {{ style = "page", param = "page_no", start = 0, size_param = "page_size", size = 100 }}
every = "1min"

[[sources.resources]]
name = "channel_users"
path = "/dev/v1/channel/user/demo-app/{{channel_name}}"
records = "/data"
for_each = {{ resource = "channels", fields = {{ channel_name = "channel_name" }} }}
every = "1min"
"#,
        key = dir.join("key").display(),
        window = WINDOW.as_secs(),
    );
    let path = dir.join("sync.toml");
    std::fs::write(&path, text).unwrap();
    (path, store)
}

/// Runs `tollgate sync --config F --once`, killed with SIGKILL after
/// `kill_after` if it has not exited by then.
async fn run_sync(
    config: &Path,
    log: &Path,
    kill_after: Option<Duration>,
    clock: &SystemClock,
) -> (Timestamp, Timestamp, Ended, String) {
    let stdout_file = log.with_extension("out");
    let started = clock.now();
    let spawned = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["sync", "--once", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_file).unwrap())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("the tollgate binary runs");
    // The run that is let finish still has a limit, so a hang fails the test.
    let deadline = kill_after.unwrap_or(Duration::from_secs(120));
    let how = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Ended::Exited(status.code());
        }
        if spawned.elapsed() >= deadline {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            break Ended::Killed;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let ended = clock.now();
    let stdout = std::fs::read_to_string(&stdout_file).unwrap_or_default();
    (started, ended, how, stdout)
}

/// Every record of `table`, by id.
async fn stored(storage: &Storage, table: &str) -> BTreeMap<String, Value> {
    let mut all = BTreeMap::new();
    let mut query = ListQuery::first(1_000);
    loop {
        let page = storage.list(table, &query).await.unwrap();
        let Some(last) = page.last() else { break };
        query = ListQuery::first(1_000).after(last.id.clone());
        for record in page {
            assert!(all.insert(record.id, record.body).is_none());
        }
    }
    all
}

/// What the provider serves for `resource`, by the id the sync stores it
/// under, and as the sync stores it (a channel's user list is the `data` of
/// its answer, without the channel's name, stored under that name).
fn expected(handle: &ApiHandle, resource: Resource) -> BTreeMap<String, Value> {
    handle
        .expected_records(resource)
        .into_iter()
        .map(|mut record| match resource {
            Resource::Properties => (record["id"].as_str().unwrap().to_owned(), record),
            Resource::Channels => (record["channel_name"].as_str().unwrap().to_owned(), record),
            _ => {
                let name = record
                    .as_object_mut()
                    .unwrap()
                    .remove("channel_name")
                    .unwrap();
                (name.as_str().unwrap().to_owned(), record)
            }
        })
        .collect()
}

/// Differences between what is stored and what is expected, in words.
fn compare(
    table: &str,
    stored: &BTreeMap<String, Value>,
    expected: &BTreeMap<String, Value>,
) -> Vec<String> {
    let mut problems = Vec::new();
    if stored.len() != expected.len() {
        problems.push(format!(
            "{table}: {} records stored, {} expected",
            stored.len(),
            expected.len()
        ));
    }
    for (id, body) in expected {
        match stored.get(id) {
            None => problems.push(format!("{table}: `{id}` is missing")),
            Some(got) if got != body => {
                problems.push(format!("{table}: `{id}` is {got}, expected {body}"))
            }
            Some(_) => {}
        }
    }
    for id in stored.keys().filter(|id| !expected.contains_key(*id)) {
        problems.push(format!("{table}: `{id}` is not served by the provider"));
    }
    problems
}

/// What one resumed run fetched again, of the pages earlier runs of its job
/// had stored.
#[derive(Default)]
struct Refetched {
    /// Pages before the checkpoint of a scope in progress.
    before_checkpoint: Vec<String>,
    /// Channels' user lists (the fan-out in progress) finished by an earlier run.
    finished_fan_out: Vec<String>,
    /// Pages of plain resources an earlier run had finished in full.
    finished_resources: Vec<String>,
}

fn refetched(run: &Run, requests: &[&LogEntry]) -> Refetched {
    let mut found = Refetched::default();
    for entry in requests {
        if !entry.status.is_some_and(fetched) {
            continue;
        }
        let Some((scope, page)) = page_of(&entry.path) else {
            continue;
        };
        let finished_in_job = run
            .before
            .finished
            .get(&scope)
            .is_some_and(|at| *at >= run.job_started_ms);
        if finished_in_job && scope.0 == "channel_users" {
            found.finished_fan_out.push(entry.path.clone());
        } else if finished_in_job {
            found.finished_resources.push(entry.path.clone());
        } else if run
            .before
            .checkpoints
            .get(&scope)
            .is_some_and(|c| page < *c)
        {
            found.before_checkpoint.push(entry.path.clone());
        }
    }
    found
}

/// An answer that spent a request of the budget on a page: a body (`2xx`), or
/// `304 Not Modified` to a conditional request (the sync sends validators for
/// single-page resources, so a fan-out child it asks again comes back `304`).
fn fetched(status: u16) -> bool {
    (200..300).contains(&status) || status == 304
}

fn count(requests: &[&LogEntry], status: u16) -> usize {
    requests.iter().filter(|e| e.status == Some(status)).count()
}

// It was committed ignored, failing on the two defects it was written to
// catch: a restarted process knew neither the killed one's recent sends nor
// its pause after a 429 (now read back from the store at start-up), and a
// fan-out forgot which children it had finished (now it keeps a checkpoint of
// its own, scope "", until every child is done).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_import_loses_nothing_fetches_again_only_the_pages_in_flight_and_never_gets_the_key_blocked()
 {
    let clock = SystemClock::new();
    let api = ExampleApi::builder()
        .seed(11)
        .properties(PROPERTIES)
        .channels(CHANNELS)
        .tenancies(0)
        .applicants(0)
        .key(KEY)
        .strict(true)
        .strict_block(STRICT_BLOCK)
        .limits(Limits::per_key(Quota::rolling(Rate::new(BUDGET, WINDOW))))
        .clock(Arc::new(clock.clone()))
        .build()
        .spawn()
        .await
        .unwrap();
    let handle = api.handle.clone();
    let dir = std::env::temp_dir().join(format!("tollgate-sync-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (config, store) = write_config(&dir, api.addr);
    let scopes = scopes(&handle);

    let mut runs: Vec<Run> = Vec::new();
    let plan: Vec<Option<Duration>> = kill_delays().into_iter().map(Some).chain([None]).collect();
    let mut job_started_ms = None;
    let mut copies = Vec::new();
    for (i, kill_after) in plan.into_iter().enumerate() {
        // A block (the test fails on it below) is waited out, so that the runs
        // after it still show what they do.
        let blocked_until = handle.block_events().iter().map(|b| b.until).max();
        if let Some(until) = blocked_until.filter(|u| *u > clock.now()) {
            tokio::time::sleep(until.saturating_since(clock.now()) + Duration::from_millis(50))
                .await;
        }
        // The database as the previous run left it, copied (in a few ms) to
        // be read later: the next run starts at once, as a supervisor would
        // restart a crashed daemon, not after the test has read the database.
        let copy = (i > 0).then(|| {
            let copy = dir.join(format!("before-{i:02}"));
            copy_database(&dir, &copy);
            copy
        });
        let log = dir.join(format!("run-{i:02}.log"));
        let (started, ended, how, stdout) = run_sync(&config, &log, kill_after, &clock).await;
        let job = *job_started_ms.get_or_insert(ms(started));
        if how == Ended::Exited(Some(0)) {
            job_started_ms = None;
        }
        runs.push(Run {
            kill_after,
            started,
            ended,
            how,
            stdout,
            before: Snapshot::default(),
            job_started_ms: job,
        });
        copies.push(copy);
    }
    for (run, copy) in runs.iter_mut().zip(&copies) {
        if let Some(copy) = copy {
            let store = format!("sqlite://{}", copy.join("sync.db").display());
            run.before = snapshot(&store, &scopes).await;
        }
    }

    // --- The provider's log, run by run.
    let log = handle.log();
    let of_run = |run: &Run| -> Vec<&LogEntry> {
        log.iter()
            .filter(|e| e.key == KEY && e.at >= run.started && e.at <= run.ended)
            .collect()
    };
    let mut problems = Vec::new();
    eprintln!(
        "run  kill at  ended            1st req   reqs  2xx  304  429  403 | fetched again: ckpt fan-out resources allowed"
    );
    let (mut total_fan_out, mut total_resources) = (0, 0);
    for (i, run) in runs.iter().enumerate() {
        let requests = of_run(run);
        let ok = requests
            .iter()
            .filter(|e| e.status.is_some_and(|s| (200..300).contains(&s)))
            .count();
        let first = requests.first().map_or("-".to_owned(), |e| {
            format!("{} ms", e.at.saturating_since(run.started).as_millis())
        });
        let resumed = i > 0 && runs[i - 1].how != Ended::Exited(Some(0));
        let (again, allowed) = if resumed {
            // What was in progress when the previous run stopped: one page in
            // flight per scope, and the fan-out has up to `concurrency` scopes
            // in flight at once.
            let previous = of_run(&runs[i - 1]);
            let fan_out = previous
                .iter()
                .rev()
                .take(CONCURRENCY as usize)
                .any(|e| e.path.starts_with("/dev/v1/channel/user/"));
            (
                refetched(run, &requests),
                if fan_out { CONCURRENCY as usize } else { 1 },
            )
        } else {
            (Refetched::default(), 0)
        };
        eprintln!(
            "{i:>3}  {:>7}  {:<15} {first:>7} {:>6} {:>4} {:>4} {:>4} {:>4} |                {:>4} {:>7} {:>9} {:>7}",
            run.kill_after
                .map_or("-".to_owned(), |d| format!("{} ms", d.as_millis())),
            format!("{:?}", run.how),
            requests.len(),
            ok,
            count(&requests, 304),
            count(&requests, 429),
            count(&requests, 403),
            again.before_checkpoint.len(),
            again.finished_fan_out.len(),
            again.finished_resources.len(),
            if resumed {
                allowed.to_string()
            } else {
                "-".into()
            },
        );
        total_fan_out += again.finished_fan_out.len();
        total_resources += again.finished_resources.len();
        let in_progress = again.before_checkpoint.len() + again.finished_fan_out.len();
        if in_progress > allowed {
            problems.push(format!(
                "run {i} (resumed after run {} was {:?}) fetched {in_progress} pages again that \
                 earlier runs had stored, {allowed} allowed: {} before a checkpoint {:?}, {} \
                 user lists of channels finished earlier {:?}",
                i - 1,
                runs[i - 1].how,
                again.before_checkpoint.len(),
                again.before_checkpoint,
                again.finished_fan_out.len(),
                again.finished_fan_out.iter().take(5).collect::<Vec<_>>(),
            ));
        }
    }
    let all: Vec<&LogEntry> = log.iter().filter(|e| e.key == KEY).collect();
    eprintln!(
        "all runs: {} requests, {} answered 429, {} answered 403; most in any {WINDOW:?}: {} \
         (budget {BUDGET}); user lists fetched again after finishing: {total_fan_out}; pages of \
         finished resources fetched again: {total_resources}",
        all.len(),
        count(&all, 429),
        count(&all, 403),
        handle.max_in_any_window(KEY, WINDOW),
    );

    // --- The key was never blocked.
    for block in handle.block_events() {
        let run = runs
            .iter()
            .position(|r| block.at >= r.started && block.at <= r.ended);
        let told_by = log
            .iter()
            .rev()
            .find(|e| e.key == KEY && e.status == Some(429) && e.at <= block.at)
            .map(|e| {
                let by = runs
                    .iter()
                    .position(|r| e.at >= r.started && e.at <= r.ended);
                format!("the 429 to `{}` in run {by:?}", e.path)
            });
        let since_start = run.map(|r| block.at.saturating_since(runs[r].started));
        problems.push(format!(
            "strict mode blocked the key in run {run:?}, {since_start:?} after its spawn: `{}` \
             came {:?} before the retry instant it had been told by {}",
            block.path,
            block.told_until.saturating_since(block.at),
            told_by.unwrap_or_else(|| "no 429 found".into()),
        ));
    }

    // --- The last run finished, and the database holds every record once.
    let last = runs.last().unwrap();
    if last.how != Ended::Exited(Some(0)) {
        problems.push(format!(
            "the run let finish ended {:?}:\n{}\n(its log: {})",
            last.how,
            last.stdout,
            dir.join(format!("run-{:02}.log", runs.len() - 1)).display()
        ));
    }
    let storage = Storage::connect(&store).await.unwrap();
    for (table, resource) in [
        ("properties", Resource::Properties),
        ("channels", Resource::Channels),
        ("channel_users", Resource::ChannelUsers),
    ] {
        assert_eq!(
            handle.expected_records(resource).len(),
            match resource {
                Resource::Properties => PROPERTIES,
                _ => CHANNELS,
            }
        );
        let count = storage.count(table).await.unwrap() as usize;
        let stored = stored(&storage, table).await;
        assert_eq!(count, stored.len());
        problems.extend(compare(table, &stored, &expected(&handle, resource)));
    }
    for (resource, scope) in &scopes {
        if let Some(left) = storage.checkpoint(resource, scope).await.unwrap() {
            problems.push(format!(
                "{resource} `{scope}`: a checkpoint is left after a complete run: {left:?}"
            ));
        }
    }
    storage.close().await;
    api.shutdown().await;

    assert!(
        problems.is_empty(),
        "{} problem(s) (logs of every run in {}):\n- {}",
        problems.len(),
        dir.display(),
        problems.join("\n- ")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
