//! `GET /` and `GET /status.html`: the status page, for a person.
//!
//! Plain server-rendered HTML with the same figures as `/status` (per resource:
//! freshness, last run, last error; per source: requests, `429`s, failures, a
//! `403` stop, the budget and a pause) and, per source, the budget use over
//! time as an inline SVG chart. No script, no external asset: it refreshes
//! itself with `<meta http-equiv="refresh">`, and its `Content-Security-Policy`
//! allows nothing to load.
//!
//! The chart comes from a ring of the last [`SAMPLES`] samples of each
//! source's `requests` counter, kept in memory by this module: a task started
//! with the router takes one every [`EVERY`], and each page load takes one more
//! if the last is at least a second old (so the page is current, and the ring
//! fills even where no task could be started). Samples carry their own span,
//! so the chart plots requests per second against the budget's rate whatever
//! their spacing. The ring starts empty with each process.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use tollgate_core::Clock;
use tollgate_sql::ResourceState;

use super::ApiState;
use crate::import::SourceContext;

/// How many samples the ring keeps per source.
pub const SAMPLES: usize = 120;
/// How often the sampling task takes one (so the chart spans 10 minutes).
pub const EVERY: Duration = Duration::from_secs(5);
/// A page load takes a sample only if the last is at least this old.
const LAZY_GAP_MS: u64 = 1_000;
/// How often the page reloads itself.
const REFRESH_S: u32 = 10;

/// The sampled history of every source's requests.
pub struct History {
    sources: Vec<Arc<SourceContext>>,
    clock: Arc<dyn Clock>,
    ring: Mutex<Ring>,
}

#[derive(Default)]
struct Ring {
    /// When the last sample (or the baseline) was taken, and the counters then.
    last: Option<(u64, Vec<u64>)>,
    samples: VecDeque<Sample>,
}

/// Requests each source sent in `(at_ms - span_ms, at_ms]`.
#[derive(Clone)]
struct Sample {
    at_ms: u64,
    span_ms: u64,
    sent: Vec<u64>,
}

impl History {
    /// A history of `state`'s sources, its baseline taken now; with a tokio
    /// runtime at hand, a task samples it every [`EVERY`] for as long as the
    /// history lives.
    pub(super) fn start(state: &ApiState) -> Arc<Self> {
        let history = Arc::new(Self {
            sources: state.daemon.sources.clone(),
            clock: Arc::clone(&state.clock),
            ring: Mutex::new(Ring::default()),
        });
        history.sample(0);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let weak: Weak<Self> = Arc::downgrade(&history);
            runtime.spawn(async move {
                let mut tick = tokio::time::interval(EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let Some(history) = weak.upgrade() else {
                        return;
                    };
                    history.sample(EVERY.as_millis() as u64 / 2);
                }
            });
        }
        history
    }

    /// Takes a sample if the last is at least `min_gap_ms` old.
    fn sample(&self, min_gap_ms: u64) {
        let now = self.clock.now().as_millis();
        let counters: Vec<u64> = self
            .sources
            .iter()
            .map(|ctx| ctx.stats.requests.load(Ordering::Relaxed))
            .collect();
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        match &ring.last {
            None => ring.last = Some((now, counters)),
            Some((at, before)) if now >= at.saturating_add(min_gap_ms.max(1)) => {
                let sample = Sample {
                    at_ms: now,
                    span_ms: now - at,
                    sent: counters
                        .iter()
                        .zip(before)
                        .map(|(c, b)| c.saturating_sub(*b))
                        .collect(),
                };
                ring.samples.push_back(sample);
                while ring.samples.len() > SAMPLES {
                    ring.samples.pop_front();
                }
                ring.last = Some((now, counters));
            }
            Some(_) => {}
        }
    }

    fn samples(&self) -> Vec<Sample> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.samples.iter().cloned().collect()
    }
}

/// What the page handler shares.
#[derive(Clone)]
pub struct PageState {
    pub(super) api: ApiState,
    pub(super) history: Arc<History>,
}

pub(super) async fn page(State(state): State<PageState>) -> impl IntoResponse {
    state.history.sample(LAZY_GAP_MS);
    let states = state.api.storage.resource_states().await;
    let now = state.api.clock.now().as_millis();
    let html = render(&state, states, now);
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
                 base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        html,
    )
}

const STYLE: &str = "\
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}\
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.5em 0 .4em}\
table{border-collapse:collapse;margin-bottom:1em}\
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}\
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.ok{color:#176a1c}.bad{color:#b00020;font-weight:bold}.warn{color:#8a5a00}.dim{color:#777}\
figure{margin:0 0 1.2em}figcaption{margin-bottom:.3em}\
svg{border:1px solid #ccc;background:#fcfcfc}";

fn render(
    state: &PageState,
    states: Result<Vec<ResourceState>, tollgate_sql::StorageError>,
    now: u64,
) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_S}\">\
         <link rel=\"icon\" href=\"data:,\">\
         <title>tollgate sync: status</title><style>{STYLE}</style></head><body>\
         <h1>tollgate sync</h1><p class=\"dim\">As of {} (reloads every {REFRESH_S} s). \
         The same figures as JSON: <a href=\"/status\">/status</a>.</p>",
        esc(&http_date(now)),
    );
    resources_section(&mut out, state, states, now);
    sources_section(&mut out, state, now);
    chart_section(&mut out, state);
    out.push_str("</body></html>\n");
    out
}

/// One row of the resources table: a plain resource, or every scope of a
/// fan-out folded together (the oldest success, the latest error).
pub(super) struct Row {
    pub(super) resource: String,
    pub(super) scopes: usize,
    pub(super) last_success_ms: Option<i64>,
    pub(super) last_duration_ms: Option<u64>,
    pub(super) last_records: Option<u64>,
    pub(super) last_error: Option<(String, Option<i64>)>,
    pub(super) every: Option<Duration>,
}

pub(super) fn rows(api: &ApiState, states: &[ResourceState]) -> Vec<Row> {
    let mut by_name: BTreeMap<&str, Vec<&ResourceState>> = BTreeMap::new();
    for s in states {
        by_name.entry(s.resource.as_str()).or_default().push(s);
    }
    let mut names: Vec<&str> = api.resources.iter().map(String::as_str).collect();
    let extra: Vec<&str> = by_name
        .keys()
        .copied()
        .filter(|n| !names.contains(n))
        .collect();
    names.extend(extra);
    let every = |name: &str| {
        api.daemon
            .sources
            .iter()
            .flat_map(|ctx| ctx.source.resources.iter())
            .find(|r| r.name == name)
            .map(|r| r.every)
    };
    names
        .into_iter()
        .map(|name| {
            let all = by_name.get(name).cloned().unwrap_or_default();
            // A fan-out keeps its runs per scope (the parent's id); its
            // plain row only says that the resource exists.
            let scoped: Vec<&ResourceState> = all
                .iter()
                .copied()
                .filter(|s| !s.scope.is_empty())
                .collect();
            let (chosen, scopes) = if scoped.is_empty() {
                (all.clone(), 0)
            } else {
                let n = scoped.len();
                (scoped, n)
            };
            let succeeded =
                !chosen.is_empty() && chosen.iter().all(|s| s.last_success_ms.is_some());
            let last_error = all
                .iter()
                .filter(|s| s.last_error.is_some())
                .max_by_key(|s| s.last_error_ms)
                .map(|s| (s.last_error.clone().unwrap_or_default(), s.last_error_ms));
            Row {
                resource: name.to_owned(),
                scopes,
                last_success_ms: if succeeded {
                    chosen.iter().filter_map(|s| s.last_success_ms).min()
                } else {
                    None
                },
                last_duration_ms: chosen.iter().filter_map(|s| s.last_duration_ms).max(),
                last_records: chosen
                    .iter()
                    .filter_map(|s| s.last_records)
                    .reduce(|a, b| a.saturating_add(b)),
                last_error,
                every: every(name),
            }
        })
        .collect()
}

fn resources_section(
    out: &mut String,
    state: &PageState,
    states: Result<Vec<ResourceState>, tollgate_sql::StorageError>,
    now: u64,
) {
    out.push_str("<h2>Resources</h2>");
    let states = match states {
        Ok(states) => states,
        Err(err) => {
            let _ = write!(
                out,
                "<p class=\"bad\">Cannot read the storage layer: {}</p>",
                esc(&err.to_string())
            );
            Vec::new()
        }
    };
    let rows = rows(&state.api, &states);
    if rows.is_empty() {
        out.push_str("<p class=\"dim\">No resources.</p>");
        return;
    }
    out.push_str(
        "<table id=\"resources\"><thead><tr><th>resource</th><th>last success</th>\
         <th>staleness</th><th>last duration</th><th>last records</th><th>last error</th>\
         </tr></thead><tbody>",
    );
    for row in rows {
        let _ = write!(out, "<tr data-resource=\"{0}\"><td>{0}", esc(&row.resource));
        if row.scopes > 0 {
            let _ = write!(out, " <span class=\"dim\">({} scopes)</span>", row.scopes);
        }
        out.push_str("</td>");
        match row.last_success_ms {
            Some(at) => {
                let at = u64::try_from(at).unwrap_or(0);
                let stale_ms = now.saturating_sub(at);
                let overdue = row
                    .every
                    .is_some_and(|every| u128::from(stale_ms) > 2 * every.as_millis());
                let _ = write!(
                    out,
                    "<td>{}</td><td class=\"n {}\">{}{}</td>",
                    esc(&http_date(at)),
                    if overdue { "warn" } else { "ok" },
                    esc(&duration(stale_ms)),
                    match row.every {
                        Some(every) => format!(
                            " <span class=\"dim\">(every {})</span>",
                            esc(&duration(every.as_millis() as u64))
                        ),
                        None => String::new(),
                    },
                );
            }
            None => out.push_str("<td class=\"warn\">never</td><td class=\"n\">—</td>"),
        }
        let _ = write!(
            out,
            "<td class=\"n\">{}</td><td class=\"n\">{}</td>",
            row.last_duration_ms
                .map_or_else(|| "—".to_owned(), |d| esc(&duration(d))),
            row.last_records
                .map_or_else(|| "—".to_owned(), |n| n.to_string()),
        );
        match row.last_error {
            Some((error, at)) => {
                let current = match (at, row.last_success_ms) {
                    (Some(e), Some(s)) => e > s,
                    _ => true,
                };
                let _ = write!(
                    out,
                    "<td class=\"{}\">{}{}</td>",
                    if current { "bad" } else { "dim" },
                    esc(&error),
                    at.map_or_else(String::new, |at| format!(
                        " <span class=\"dim\">({}{})</span>",
                        esc(&http_date(u64::try_from(at).unwrap_or(0))),
                        if current { "" } else { ", since succeeded" }
                    )),
                );
            }
            None => out.push_str("<td class=\"dim\">none</td>"),
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

fn sources_section(out: &mut String, state: &PageState, now: u64) {
    out.push_str("<h2>Sources</h2>");
    let sources = &state.api.daemon.sources;
    if sources.is_empty() {
        out.push_str("<p class=\"dim\">No sources.</p>");
        return;
    }
    out.push_str(
        "<table id=\"sources\"><thead><tr><th>source</th><th>requests</th><th>429s</th>\
         <th>failures</th><th>stopped (403)</th><th>budget</th><th>pause</th></tr></thead><tbody>",
    );
    for ctx in sources {
        let stats = &ctx.stats;
        let forbidden = stats.forbidden.load(Ordering::Relaxed);
        let rejected = stats.rejected_429.load(Ordering::Relaxed);
        let budget: Vec<String> = ctx.pacer.budget().iter().map(ToString::to_string).collect();
        let _ = write!(
            out,
            "<tr data-source=\"{0}\"><td>{0}</td><td class=\"n\">{1}</td>\
             <td class=\"n{2}\">{3}</td><td class=\"n\">{4}</td><td class=\"{5}\">{6}</td>\
             <td>{7}</td>",
            esc(&ctx.source.name),
            stats.requests.load(Ordering::Relaxed),
            if rejected > 0 { " warn" } else { "" },
            rejected,
            stats.failures.load(Ordering::Relaxed),
            if forbidden { "bad" } else { "ok" },
            if forbidden {
                "STOPPED: the provider answered 403"
            } else {
                "no"
            },
            esc(&budget.join(", ")),
        );
        match ctx.pacer.paused_until() {
            Some(until) => {
                let until = until.as_millis();
                let _ = write!(
                    out,
                    "<td class=\"warn\">until {} (in {})</td>",
                    esc(&http_date(until)),
                    esc(&duration(until.saturating_sub(now)))
                );
            }
            None => out.push_str("<td class=\"dim\">none</td>"),
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

const W: f64 = 600.0;
const H: f64 = 140.0;
const PAD_L: f64 = 44.0;
const PAD_R: f64 = 8.0;
const PAD_T: f64 = 10.0;
const PAD_B: f64 = 22.0;

fn chart_section(out: &mut String, state: &PageState) {
    out.push_str("<h2>Budget use over time</h2>");
    let samples = state.history.samples();
    let _ = write!(
        out,
        "<p class=\"dim\">Requests per second sent by each source, one point per sample \
         (every {} s, the last {SAMPLES} kept in memory since this process started); \
         the dashed line is the budget's rate.</p>",
        EVERY.as_secs()
    );
    for (i, ctx) in state.history.sources.iter().enumerate() {
        let budget_rate = ctx
            .pacer
            .budget()
            .iter()
            .map(tollgate_core::Rate::per_sec_f64)
            .fold(f64::INFINITY, f64::min);
        let _ = write!(
            out,
            "<figure data-chart=\"{0}\"><figcaption>{0}</figcaption>",
            esc(&ctx.source.name)
        );
        chart(out, &ctx.source.name, &samples, i, budget_rate);
        out.push_str("</figure>");
    }
}

/// One source's chart: requests per second per sample, and the budget's rate.
fn chart(out: &mut String, name: &str, samples: &[Sample], index: usize, budget_rate: f64) {
    let points: Vec<(u64, u64, f64, u64)> = samples
        .iter()
        .map(|s| {
            let sent = s.sent.get(index).copied().unwrap_or(0);
            let rate = sent as f64 * 1000.0 / s.span_ms.max(1) as f64;
            (s.at_ms.saturating_sub(s.span_ms), s.at_ms, rate, sent)
        })
        .collect();
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
         viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"requests per second of {0}\">\
         <title>requests per second of {0}</title>",
        esc(name)
    );
    let (x0, y0, x1, y1) = (PAD_L, PAD_T, W - PAD_R, H - PAD_B);
    let _ = write!(
        out,
        "<line x1=\"{x0}\" y1=\"{y1}\" x2=\"{x1}\" y2=\"{y1}\" stroke=\"#999\"/>\
         <line x1=\"{x0}\" y1=\"{y0}\" x2=\"{x0}\" y2=\"{y1}\" stroke=\"#999\"/>"
    );
    if points.is_empty() {
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#777\" font-size=\"12\">\
             no samples yet</text></svg>",
            (x0 + x1) / 2.0,
            (y0 + y1) / 2.0
        );
        return;
    }
    let start = points[0].0;
    let end = points[points.len() - 1].1.max(start + 1);
    let budget = budget_rate.is_finite().then_some(budget_rate);
    let top = points
        .iter()
        .map(|p| p.2)
        .chain(budget)
        .fold(0.0_f64, f64::max)
        .max(0.1)
        * 1.15;
    let x = |t: u64| x0 + (t - start) as f64 / (end - start) as f64 * (x1 - x0);
    let y = |r: f64| y1 - r / top * (y1 - y0);
    let _ = write!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"10\" fill=\"#555\">{}/s</text>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"10\" fill=\"#555\">0</text>\
         <text x=\"{x0}\" y=\"{}\" font-size=\"10\" fill=\"#555\">−{}</text>\
         <text x=\"{x1}\" y=\"{}\" text-anchor=\"end\" font-size=\"10\" fill=\"#555\">now</text>",
        x0 - 4.0,
        y0 + 8.0,
        number(top),
        x0 - 4.0,
        y1,
        H - 6.0,
        esc(&duration(end - start)),
        H - 6.0,
    );
    if let Some(rate) = budget {
        let _ = write!(
            out,
            "<line class=\"budget\" x1=\"{x0}\" y1=\"{0:.1}\" x2=\"{x1}\" y2=\"{0:.1}\" \
             stroke=\"#b00020\" stroke-dasharray=\"4 3\"><title>budget: {1}/s</title></line>",
            y(rate),
            number(rate)
        );
    }
    let line: Vec<String> = points
        .iter()
        .map(|p| format!("{:.1},{:.1}", x(p.1), y(p.2)))
        .collect();
    let _ = write!(
        out,
        "<polyline fill=\"none\" stroke=\"#1a5fb4\" stroke-width=\"1.5\" points=\"{}\"/>",
        line.join(" ")
    );
    for p in &points {
        let _ = write!(
            out,
            "<circle class=\"point\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"#1a5fb4\">\
             <title>{} requests in {} ({}/s)</title></circle>",
            x(p.1),
            y(p.2),
            p.3,
            esc(&duration(p.1 - p.0)),
            number(p.2)
        );
    }
    out.push_str("</svg>");
}

/// `s` with every character HTML gives a meaning escaped (text and quoted
/// attributes alike).
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn http_date(ms: u64) -> String {
    httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
}

fn number(x: f64) -> String {
    if x >= 10.0 {
        format!("{x:.0}")
    } else if x >= 1.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// `ms` for a person: `850 ms`, `12.3 s`, `4 min 5 s`, `2 h 3 min`, `3 d 4 h`.
pub(crate) fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => two(s / 60, "min", s % 60, "s"),
        3_600_000..86_400_000 => two(s / 3600, "h", s % 3600 / 60, "min"),
        _ => two(s / 86_400, "d", s % 86_400 / 3600, "h"),
    }
}

fn two(big: u64, big_unit: &str, small: u64, small_unit: &str) -> String {
    if small == 0 {
        format!("{big} {big_unit}")
    } else {
        format!("{big} {big_unit} {small} {small_unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_html_gives_a_meaning() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn durations_read_like_a_person_writes_them() {
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(12_345), "12.3 s");
        assert_eq!(duration(245_000), "4 min 5 s");
        assert_eq!(duration(7_380_000), "2 h 3 min");
        assert_eq!(duration(273_600_000), "3 d 4 h");
        assert_eq!(duration(60_000), "1 min");
    }
}
