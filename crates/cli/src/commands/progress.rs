//! Progress bars for an import (`tollgate sync --once`, the demo's sync step):
//! one line per source with the requests sent, the records stored, requests
//! per second, the `429`s, and an ETA when the size of the import can be
//! estimated (a spinner with the counts when it cannot).
//!
//! The bars are drawn on stderr only when it is a terminal (and `TERM` is not
//! `dumb`); in a pipe, a log file, CI or a test they are hidden and the summary
//! printed afterwards says it all. While they are drawn, log lines go above
//! them instead of through them ([`log_writer`]).

use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tollgate_sync::import::SourceContext;

/// The bars being drawn, for the log writer to print above. `None` when no
/// import is in progress.
static ACTIVE: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// How often the counters are read into the bars.
const TICK: Duration = Duration::from_millis(200);

/// How big a source's import is expected to be, which decides what its bar
/// counts and whether it can show an ETA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    /// About this many requests (from the last run's pages): a bar of requests.
    Requests(u64),
    /// Exactly this many records (the demo knows its provider): a bar of records.
    Records(u64),
    /// Nothing to estimate from (a first run): a spinner with the counts.
    Unknown,
}

/// One bar per source, refreshed from the sources' counters until [`Bars::finish`].
pub struct Bars {
    multi: MultiProgress,
    ticker: tokio::task::JoinHandle<()>,
    lines: Arc<Vec<Line>>,
}

struct Line {
    source: Arc<SourceContext>,
    expected: Expected,
    bar: ProgressBar,
    started: Instant,
    /// How long the source's import took, once it is over: its rate stops
    /// moving while the other sources go on.
    took: OnceLock<Duration>,
}

impl Bars {
    /// Starts drawing a bar for each of `sources`; `expected` pairs with them
    /// (a missing entry is [`Expected::Unknown`]). Must be called inside a
    /// tokio runtime.
    pub fn start(sources: &[Arc<SourceContext>], expected: &[Expected]) -> Self {
        let multi = MultiProgress::new();
        let width = sources
            .iter()
            .map(|s| s.source.name.len())
            .max()
            .unwrap_or(0);
        let started = Instant::now();
        let lines: Arc<Vec<Line>> = Arc::new(
            sources
                .iter()
                .enumerate()
                .map(|(i, source)| {
                    let expected = expected.get(i).copied().unwrap_or(Expected::Unknown);
                    let bar = multi.add(new_bar(expected));
                    bar.set_prefix(format!("{:<width$}", source.source.name));
                    if expected == Expected::Unknown {
                        bar.enable_steady_tick(Duration::from_millis(120));
                    }
                    Line {
                        source: Arc::clone(source),
                        expected,
                        bar,
                        started,
                        took: OnceLock::new(),
                    }
                })
                .collect(),
        );
        *ACTIVE.lock().unwrap_or_else(PoisonError::into_inner) = Some(multi.clone());
        let ticking = Arc::clone(&lines);
        let ticker = tokio::spawn(async move {
            loop {
                ticking
                    .iter()
                    .filter(|line| line.took.get().is_none())
                    .for_each(Line::update);
                tokio::time::sleep(TICK).await;
            }
        });
        Self {
            multi,
            ticker,
            lines,
        }
    }

    /// The import of the `index`th source is over: its bar shows the final
    /// counts and how long it took, and stops moving.
    pub fn source_done(&self, index: usize) {
        if let Some(line) = self.lines.get(index) {
            line.finish();
        }
    }

    /// Stops refreshing; the bars stay on screen with their final counts.
    pub async fn finish(self) {
        self.ticker.abort();
        let _ = self.ticker.await;
        self.lines.iter().for_each(Line::finish);
        *ACTIVE.lock().unwrap_or_else(PoisonError::into_inner) = None;
        drop(self.multi);
    }
}

/// A finished bar: the counts and how long it took.
const FINISHED: &str = "{prefix}  {msg}  in {elapsed}";

fn new_bar(expected: Expected) -> ProgressBar {
    match expected {
        Expected::Requests(n) => ProgressBar::new(n).with_style(style(
            "{prefix}  [{bar:24}] {percent:>3}% of ~{len} requests  {msg}  ETA {eta}",
        )),
        Expected::Records(n) => ProgressBar::new(n).with_style(style(
            "{prefix}  [{bar:24}] {percent:>3}% of {len} records  {msg}  ETA {eta}",
        )),
        Expected::Unknown => {
            ProgressBar::new_spinner().with_style(style("{prefix}  {spinner} {msg}  {elapsed}"))
        }
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("the progress templates are valid")
        .progress_chars("=> ")
}

impl Line {
    fn finish(&self) {
        if self.took.set(self.started.elapsed()).is_ok() {
            self.update();
            self.bar.set_style(style(FINISHED));
            self.bar.finish();
        }
    }

    /// Reads the source's counters into its bar.
    fn update(&self) {
        let stats = &self.source.stats;
        let requests = stats.requests.load(Ordering::Relaxed);
        let records = stats.records.load(Ordering::Relaxed);
        let rejected = stats.rejected_429.load(Ordering::Relaxed);
        let elapsed = self
            .took
            .get()
            .copied()
            .unwrap_or_else(|| self.started.elapsed());
        let rate = requests as f64 / elapsed.as_secs_f64().max(0.001);
        let position = match self.expected {
            Expected::Requests(_) | Expected::Unknown => requests,
            Expected::Records(_) => records,
        };
        // An estimate can be short (more pages than last time): the bar grows.
        if let Expected::Requests(n) | Expected::Records(n) = self.expected {
            self.bar.set_length(n.max(position));
        }
        self.bar.set_position(position);
        self.bar.set_message(format!(
            "{requests} requests · {records} records · {rate:.1} req/s · {rejected} × 429"
        ));
    }
}

/// The log's writer: stderr, above the bars while they are drawn. For
/// `tracing_subscriber`'s `with_writer`.
pub fn log_writer() -> LogWriter {
    LogWriter
}

/// Writes to stderr, suspending the progress bars (if any) meanwhile.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let active = ACTIVE
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match active {
            Some(multi) => multi.suspend(|| io::stderr().write_all(buf))?,
            None => io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}
