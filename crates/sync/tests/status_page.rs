//! The read API's status page, rendered by a real browser: headless Debian
//! Chromium loads `GET /` after a short import against the example provider,
//! and the DOM it dumps must show every resource, the source's figures and a
//! budget-use chart with data points, with no console message at all (the
//! page has no script). `scripts/test` installs Chromium on a fresh machine;
//! without it this test fails, it never skips.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tollgate_core::{Clock, Quota, Rate, SystemClock};
use tollgate_sql::Storage;
use tollgate_sync::api::{ApiState, router};
use tollgate_sync::config::SyncConfig;
use tollgate_sync::daemon::Daemon;
use tollgate_sync::import::import_resource;
use tollgate_testkit::{ExampleApi, Limits, Resource, sync_resources_toml};

const CHROMIUM: &str = "/usr/bin/chromium";
const KEY: &str = "status-page-key-0123456789";
/// How long one Chromium run may take before it is killed and the test fails.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);
/// Stored as a resource's last error: it must come out as text, not markup.
const HOSTILE_ERROR: &str = "<script>alert('x')</script> & \"quoted\"";

fn temp_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "tollgate-status-page-{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn chromium() -> &'static Path {
    let path = Path::new(CHROMIUM);
    assert!(
        path.exists(),
        "{CHROMIUM} is missing: this test renders the status page in headless Chromium. \
         Install it with `apt-get install chromium` (scripts/test does so on a fresh machine)."
    );
    path
}

/// What Chromium made of `url`: the serialized DOM and its stderr log.
struct Rendered {
    dom: String,
    log: String,
}

impl Rendered {
    /// Every console message the page produced (Chromium logs each one as
    /// `…:INFO:CONSOLE:<line>] "<message>", source: …` with `--enable-logging=stderr`).
    fn console(&self) -> Vec<&str> {
        self.log
            .lines()
            .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
            .collect()
    }
}

/// Runs headless Chromium on `url` with `--dump-dom`, in a fresh profile,
/// killed after [`BROWSER_TIMEOUT`].
async fn render(url: String) -> Rendered {
    let binary = chromium();
    tokio::task::spawn_blocking(move || {
        let dir = temp_dir("chromium");
        let profile = dir.join("profile");
        let (out_path, err_path) = (dir.join("dom.html"), dir.join("stderr.log"));
        let mut child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("--dump-dom")
            .arg(&url)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMIUM}: {e}"));
        let deadline = Instant::now() + BROWSER_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(&err_path).unwrap_or_default();
                panic!(
                    "{CHROMIUM} did not finish {url} within {BROWSER_TIMEOUT:?}; its log:\n{log}"
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let dom = std::fs::read_to_string(&out_path).unwrap();
        let log = std::fs::read_to_string(&err_path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            status.success(),
            "{CHROMIUM} exited with {status} on {url}; its log:\n{log}"
        );
        assert!(
            !dom.trim().is_empty(),
            "{CHROMIUM} dumped no DOM for {url}; its log:\n{log}"
        );
        Rendered { dom, log }
    })
    .await
    .unwrap()
}

async fn serve(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// The console check is worth something only if it sees an error: a page
/// that throws must show up in the log this test reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_check_catches_an_uncaught_error() {
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(|| async {
            axum::response::Html(
                "<!DOCTYPE html><html><body><p>canary</p>\
                 <script>throw new Error('canary-error')</script></body></html>",
            )
        }),
    );
    let addr = serve(app).await;
    let rendered = render(format!("http://{addr}/")).await;
    assert!(rendered.dom.contains("canary"), "{}", rendered.dom);
    let console = rendered.console();
    assert!(
        console
            .iter()
            .any(|l| l.contains("Uncaught") && l.contains("canary-error")),
        "Chromium's log does not show the page's uncaught error, so the status page's \
         console check would see nothing either; the log:\n{}",
        rendered.log
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_the_status_page_with_every_resource_and_a_chart() {
    chromium();
    let api = ExampleApi::builder()
        .channels(12)
        .properties(60)
        .key(KEY)
        .strict(true)
        .limits(Limits::per_key(Quota::rolling(Rate::new(
            50,
            Duration::from_secs(2),
        ))))
        .build()
        .spawn()
        .await
        .unwrap();
    let dir = temp_dir("state");
    std::fs::write(dir.join("key"), KEY).unwrap();
    let text = format!(
        r#"
store = "sqlite://status.db"

[[sources]]
name = "example"
base_url = "http://{addr}"
key = {{ header = "X-Api-Key", file = "{key}" }}
limits = ["50/2s"]
timeout = "2s"
concurrency = 4

{resources}
"#,
        addr = api.addr,
        key = dir.join("key").display(),
        resources = sync_resources_toml(
            &[
                Resource::Properties,
                Resource::Channels,
                Resource::ChannelUsers
            ],
            25
        ),
    );
    let config = SyncConfig::parse(&text, &dir.join("sync.toml")).unwrap();
    let storage = Storage::connect(&config.store).await.unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let daemon = Arc::new(Daemon::new(&config, &storage, Arc::clone(&clock)).unwrap());
    let state = ApiState {
        storage: storage.clone(),
        daemon: Arc::clone(&daemon),
        clock: Arc::clone(&clock),
        resources: Arc::new(
            config
                .sources
                .iter()
                .flat_map(|s| s.resources.iter().map(|r| r.name.clone()))
                .collect(),
        ),
    };
    let started = Instant::now();
    let addr = serve(router(state)).await;

    let ctx = &daemon.sources[0];
    for resource in &ctx.source.resources {
        tokio::time::timeout(Duration::from_secs(60), import_resource(ctx, resource))
            .await
            .unwrap_or_else(|_| panic!("importing {} took over a minute", resource.name))
            .unwrap_or_else(|e| panic!("importing {}: {e}", resource.name));
    }
    let sent = ctx
        .stats
        .requests
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(sent > 12, "the import sent only {sent} requests");
    // An error recorded before the import's success, with markup in it.
    storage
        .record_error("properties", "", HOSTILE_ERROR, 1_000)
        .await
        .unwrap();
    // A page load samples only if the last sample is a second old.
    if let Some(rest) = Duration::from_millis(1_100).checked_sub(started.elapsed()) {
        tokio::time::sleep(rest).await;
    }

    let answer = reqwest::get(format!("http://{addr}/status.html"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let headers = answer.headers();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'"),
    );

    let rendered = render(format!("http://{addr}/")).await;
    let dom = &rendered.dom;
    for resource in ["properties", "channels", "channel_users"] {
        assert!(
            dom.contains(&format!("<tr data-resource=\"{resource}\"><td>{resource}")),
            "resource {resource} missing from the rendered page:\n{dom}"
        );
    }
    assert!(dom.contains("(12 scopes)"), "the fan-out's scopes:\n{dom}");
    assert!(
        dom.contains("<tr data-source=\"example\"><td>example</td>"),
        "{dom}"
    );
    assert!(dom.contains("50/2s"), "the budget:\n{dom}");
    assert!(
        !dom.contains("<script"),
        "the stored error became markup:\n{dom}"
    );
    assert!(
        dom.contains("&lt;script&gt;alert('x')&lt;/script&gt; &amp; \"quoted\""),
        "the stored error is not shown as text:\n{dom}"
    );
    assert!(dom.contains("since succeeded"), "{dom}");

    let chart = dom
        .split("<figure data-chart=\"example\">")
        .nth(1)
        .and_then(|rest| rest.split("</figure>").next())
        .unwrap_or_else(|| panic!("no chart for source example:\n{dom}"));
    assert!(chart.contains("<svg"), "the chart has no <svg:\n{chart}");
    assert!(
        chart.contains("<polyline") && chart.contains("class=\"budget\""),
        "{chart}"
    );
    let charted: u64 = chart
        .split("<circle class=\"point\"")
        .skip(1)
        .map(|point| {
            let title = point.split("<title>").nth(1).unwrap();
            title.split(' ').next().unwrap().parse::<u64>().unwrap()
        })
        .sum();
    assert!(
        chart.matches("<circle class=\"point\"").count() >= 1 && charted > 0,
        "the chart has no data point with requests:\n{chart}"
    );
    assert!(
        charted <= sent,
        "the chart shows {charted} requests, the source sent {sent}"
    );
    assert!(
        rendered.console().is_empty(),
        "the status page produced console messages:\n{}",
        rendered.console().join("\n")
    );

    api.shutdown().await;
    storage.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
