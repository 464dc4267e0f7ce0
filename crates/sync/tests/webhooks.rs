//! The provider's push notifications, through a real HTTP server on
//! 127.0.0.1: `POST /v1/sources/{source}/events`, signed here as the provider
//! signs them, against a SQLite file. Time is a `ManualClock`: no sleeps.
//!
//! A valid event changes the store; a forged, stale, replayed or malformed one
//! gets its documented status as problem+json and changes nothing, not even
//! the record of event ids seen.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tollgate_core::{Clock, ManualClock, Timestamp};
use tollgate_sql::Storage;
use tollgate_sync::api::{ApiState, router};
use tollgate_sync::config::SyncConfig;
use tollgate_sync::daemon::Daemon;
use tollgate_sync::events::sign;
use tollgate_sync::schedule::schedule;
use tollgate_testkit::scratch_dir;

const SECRET: &str = "whsec_0123456789abcdef";
/// 2026-11-28T02:15:00Z, in unix seconds.
const NOW_S: u64 = 1_795_745_700;

fn config_text(dir: &Path, extra_events: &str) -> String {
    format!(
        r#"
store = "sqlite://{dir}/sync.db"

[[sources]]
name = "example"
base_url = "http://127.0.0.1:9"
key = {{ file = "{dir}/key" }}
limits = ["50/60s"]

[sources.events]
secret = {{ file = "{dir}/webhook-secret" }}
signature_header = "X-Signature"
timestamp_header = "X-Timestamp"
tolerance = "5min"
{extra_events}

[[sources.events.map]]
type = "property.updated"
resource = "properties"
action = "upsert"
record = "/data"

[[sources.events.map]]
type = "property.deleted"
resource = "properties"
action = "delete"
id = "/data/id"

[[sources.resources]]
name = "properties"
path = "/v1/properties"
records = "/data"
every = "15min"

[[sources.resources]]
name = "channels"
path = "/v1/channels"
every = "5min"

[[sources]]
name = "quiet"
base_url = "http://127.0.0.1:9"
key = {{ file = "{dir}/key" }}
limits = ["50/60s"]

[[sources.resources]]
name = "notes"
path = "/v1/notes"
every = "1min"
"#,
        dir = dir.display()
    )
}

/// A test's folder, config, clock and server; the store is a SQLite file in
/// the folder, so it outlives a server.
struct Fixture {
    dir: PathBuf,
    config: SyncConfig,
    clock: ManualClock,
    storage: Storage,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Fixture {
    async fn start(name: &str) -> Self {
        let dir = scratch_dir(&format!("webhooks-{name}"));
        std::fs::write(dir.join("key"), "api-key-0123456789\n").unwrap();
        std::fs::write(dir.join("webhook-secret"), format!("{SECRET}\n")).unwrap();
        let config = SyncConfig::parse(&config_text(&dir, ""), &dir.join("sync.toml")).unwrap();
        let clock = ManualClock::new(Timestamp::from_secs(NOW_S));
        let (storage, addr, server) = serve(&config, &clock).await;
        Self {
            dir,
            config,
            clock,
            storage,
            addr,
            server,
        }
    }

    /// Stops the server and closes the store, then opens both again: what a
    /// restarted daemon does.
    async fn restart(&mut self) {
        self.server.abort();
        let _ = (&mut self.server).await;
        self.storage.close().await;
        let (storage, addr, server) = serve(&self.config, &self.clock).await;
        (self.storage, self.addr, self.server) = (storage, addr, server);
    }

    async fn post(&self, source: &str, body: &str, headers: &[(&str, String)]) -> Answer {
        let mut request = reqwest::Client::new()
            .post(format!("http://{}/v1/sources/{source}/events", self.addr))
            .header("content-type", "application/json")
            .body(body.to_owned());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("the answer is not JSON ({e}): {text}"));
        Answer {
            status,
            content_type,
            body,
        }
    }

    /// Sends `event` as the provider does: signed with the secret at `at_s`.
    async fn send(&self, event: &Value, at_s: u64) -> Answer {
        let body = event.to_string();
        self.post("example", &body, &signed(&body, at_s, SECRET))
            .await
    }

    async fn stored(&self, id: &str) -> Option<Value> {
        self.storage
            .get("properties", id)
            .await
            .ok()
            .flatten()
            .map(|r| r.body)
    }

    async fn seen(&self, event: &str) -> bool {
        self.storage.event_seen("example", event).await.unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.server.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn serve(
    config: &SyncConfig,
    clock: &ManualClock,
) -> (Storage, SocketAddr, tokio::task::JoinHandle<()>) {
    let storage = Storage::connect(&config.store).await.unwrap();
    let clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let daemon = Arc::new(Daemon::new(config, &storage, Arc::clone(&clock)).unwrap());
    let state = ApiState {
        storage: storage.clone(),
        daemon,
        clock,
        resources: Arc::new(vec!["properties".into(), "channels".into(), "notes".into()]),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(state);
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (storage, addr, server)
}

/// Request headers: name, value.
type Headers = Vec<(&'static str, String)>;

fn signed(body: &str, at_s: u64, secret: &str) -> Headers {
    let timestamp = at_s.to_string();
    vec![
        (
            "X-Signature",
            sign(secret.as_bytes(), &timestamp, body.as_bytes()),
        ),
        ("X-Timestamp", timestamp),
    ]
}

#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    body: Value,
}

impl Answer {
    /// Asserts a problem+json answer with this status and problem type.
    fn refused(&self, status: u16, slug: &str) {
        assert_eq!(self.status, status, "{:#}", self.body);
        assert_eq!(self.content_type, "application/problem+json");
        assert_eq!(
            self.body["type"],
            format!("https://tollgate.dev/problems/{slug}"),
            "{:#}",
            self.body
        );
        assert_eq!(self.body["status"], status);
        assert!(self.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
}

fn updated(event: &str, id: &str, name: &str) -> Value {
    json!({"id": event, "type": "property.updated", "data": {"id": id, "name": name}})
}

#[tokio::test]
async fn valid_events_upsert_and_delete_stored_records() {
    let f = Fixture::start("valid").await;
    let answer = f
        .send(&updated("evt_1", "p-1", "Harbour View"), NOW_S)
        .await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    assert_eq!(
        answer.body,
        json!({"event": "evt_1", "type": "property.updated",
               "applied": {"resource": "properties", "action": "upsert", "id": "p-1", "change": "inserted"}})
    );
    assert_eq!(f.stored("p-1").await.unwrap()["name"], "Harbour View");
    let record = f.storage.get("properties", "p-1").await.unwrap().unwrap();
    assert_eq!(
        record.fetched_at_ms,
        (NOW_S * 1000) as i64,
        "stamped by the injected clock"
    );

    f.clock.advance(Duration::from_secs(10));
    let answer = f
        .send(&updated("evt_2", "p-1", "Harbour View II"), NOW_S + 10)
        .await;
    assert_eq!(answer.body["applied"]["change"], "updated");
    assert_eq!(f.stored("p-1").await.unwrap()["name"], "Harbour View II");

    let delete = json!({"id": "evt_3", "type": "property.deleted", "data": {"id": "p-1"}});
    let answer = f.send(&delete, NOW_S + 10).await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    assert_eq!(answer.body["applied"]["change"], "deleted");
    assert_eq!(f.stored("p-1").await, None);

    // A type no mapping names is accepted and changes nothing.
    let other = json!({"id": "evt_4", "type": "invoice.paid", "data": {"id": "p-9"}});
    let answer = f.send(&other, NOW_S + 10).await;
    assert_eq!(answer.status, 202, "{:#}", answer.body);
    assert_eq!(answer.body["applied"], Value::Null);
    assert_eq!(f.storage.count("properties").await.unwrap(), 0);
}

#[tokio::test]
async fn forged_signatures_are_refused_with_401_and_change_nothing() {
    let f = Fixture::start("forged").await;
    let body = updated("evt_1", "p-1", "Forged").to_string();
    let good = signed(&body, NOW_S, SECRET);
    let cases: Vec<(&str, String, Headers)> = vec![
        (
            "another secret",
            body.clone(),
            signed(&body, NOW_S, "not-the-secret"),
        ),
        (
            "a body changed after signing",
            body.replace("Forged", "Forgex"),
            good.clone(),
        ),
        (
            "a timestamp changed after signing",
            body.clone(),
            vec![good[0].clone(), ("X-Timestamp", (NOW_S + 1).to_string())],
        ),
        ("no signature", body.clone(), vec![good[1].clone()]),
        ("no timestamp", body.clone(), vec![good[0].clone()]),
        (
            "not hex",
            body.clone(),
            vec![("X-Signature", "sha256=zz".into()), good[1].clone()],
        ),
    ];
    for (case, body, headers) in cases {
        let answer = f.post("example", &body, &headers).await;
        assert_eq!(answer.status, 401, "{case}: {:#}", answer.body);
        answer.refused(401, "bad-signature");
    }
    assert_eq!(f.stored("p-1").await, None);
    assert!(!f.seen("evt_1").await, "a forged event leaves no trace");
    // The genuine one still goes through afterwards.
    assert_eq!(f.post("example", &body, &good).await.status, 200);
}

#[tokio::test]
async fn stale_timestamps_are_refused_with_401_and_change_nothing() {
    let f = Fixture::start("stale").await;
    let event = updated("evt_1", "p-1", "Old news");
    f.send(&event, NOW_S - 301)
        .await
        .refused(401, "stale-event");
    f.send(&event, NOW_S + 301)
        .await
        .refused(401, "stale-event");
    // Signed now, delivered after the tolerance.
    f.clock.advance(Duration::from_secs(301));
    f.send(&event, NOW_S).await.refused(401, "stale-event");
    assert_eq!(f.stored("p-1").await, None);
    assert!(!f.seen("evt_1").await);
    // Inside the tolerance, either way, it is applied.
    assert_eq!(f.send(&event, NOW_S + 301 - 299).await.status, 200);
    let ahead = updated("evt_2", "p-2", "Clock ahead");
    assert_eq!(f.send(&ahead, NOW_S + 301 + 299).await.status, 200);
}

#[tokio::test]
async fn replayed_events_are_refused_with_409_and_change_nothing() {
    let f = Fixture::start("replay").await;
    assert_eq!(
        f.send(&updated("evt_1", "p-1", "First"), NOW_S)
            .await
            .status,
        200
    );
    // The same event again, and the same id re-signed later with another body.
    f.send(&updated("evt_1", "p-1", "First"), NOW_S)
        .await
        .refused(409, "replayed-event");
    f.clock.advance(Duration::from_secs(60));
    f.send(&updated("evt_1", "p-1", "Replaced"), NOW_S + 60)
        .await
        .refused(409, "replayed-event");
    let delete = json!({"id": "evt_1", "type": "property.deleted", "data": {"id": "p-1"}});
    f.send(&delete, NOW_S + 60)
        .await
        .refused(409, "replayed-event");
    assert_eq!(f.stored("p-1").await.unwrap()["name"], "First");
}

#[tokio::test]
async fn a_replay_after_a_restart_is_still_refused() {
    let mut f = Fixture::start("restart").await;
    assert_eq!(
        f.send(&updated("evt_1", "p-1", "Before"), NOW_S)
            .await
            .status,
        200
    );
    f.restart().await;
    f.clock.advance(Duration::from_secs(30));
    f.send(&updated("evt_1", "p-1", "After"), NOW_S + 30)
        .await
        .refused(409, "replayed-event");
    assert_eq!(f.stored("p-1").await.unwrap()["name"], "Before");
    // Once its timestamp is past the tolerance the id is forgotten: a copy of
    // it is stale anyway.
    f.clock.advance(Duration::from_secs(300));
    assert_eq!(
        f.send(&updated("evt_2", "p-2", "Later"), NOW_S + 330)
            .await
            .status,
        200
    );
    assert!(!f.seen("evt_1").await);
    f.send(&updated("evt_1", "p-1", "After"), NOW_S)
        .await
        .refused(401, "stale-event");
}

#[tokio::test]
async fn malformed_bodies_are_refused_with_400_and_change_nothing() {
    let f = Fixture::start("malformed").await;
    let cases = [
        ("not JSON", "{\"id\": \"evt_1\", ".to_owned()),
        (
            "no id",
            json!({"type": "property.updated", "data": {"id": "p-1"}}).to_string(),
        ),
        (
            "no type",
            json!({"id": "evt_1", "data": {"id": "p-1"}}).to_string(),
        ),
        (
            "no record",
            json!({"id": "evt_1", "type": "property.updated"}).to_string(),
        ),
        (
            "a record that is not an object",
            json!({"id": "evt_1", "type": "property.updated", "data": "p-1"}).to_string(),
        ),
        (
            "a record without its id",
            json!({"id": "evt_1", "type": "property.updated", "data": {"name": "x"}}).to_string(),
        ),
        (
            "a delete without the id",
            json!({"id": "evt_1", "type": "property.deleted", "data": {}}).to_string(),
        ),
    ];
    for (case, body) in cases {
        let answer = f
            .post("example", &body, &signed(&body, NOW_S, SECRET))
            .await;
        assert_eq!(answer.status, 400, "{case}: {:#}", answer.body);
        answer.refused(400, "malformed-event");
    }
    // A signed timestamp that is not unix seconds.
    let body = updated("evt_1", "p-1", "x").to_string();
    let headers = vec![
        (
            "X-Signature",
            sign(SECRET.as_bytes(), "yesterday", body.as_bytes()),
        ),
        ("X-Timestamp", "yesterday".to_owned()),
    ];
    f.post("example", &body, &headers)
        .await
        .refused(400, "malformed-event");
    assert!(!f.seen("evt_1").await, "a malformed event leaves no trace");
    assert_eq!(f.stored("p-1").await, None);
}

#[tokio::test]
async fn unknown_sources_and_sources_without_events_are_404() {
    let f = Fixture::start("unknown").await;
    let body = updated("evt_1", "p-1", "x").to_string();
    let headers = signed(&body, NOW_S, SECRET);
    let answer = f.post("nowhere", &body, &headers).await;
    answer.refused(404, "unknown-source");
    assert!(
        answer.body["detail"]
            .as_str()
            .unwrap()
            .contains("example, quiet")
    );
    f.post("quiet", &body, &headers)
        .await
        .refused(404, "no-events");
    assert!(!f.seen("evt_1").await);
}

#[tokio::test]
async fn resources_kept_fresh_by_events_are_polled_less_often() {
    let f = Fixture::start("schedule").await;
    let plan = schedule(&f.config.sources[0], &f.storage).await;
    assert_eq!(
        plan.periods,
        [
            ("properties".to_owned(), Duration::from_secs(150 * 60)),
            ("channels".to_owned(), Duration::from_secs(5 * 60)),
        ],
        "ten times its `every` by default; a resource no event names is unchanged"
    );
    assert!(
        plan.verdict
            .contains("properties: kept fresh by events (property.updated, property.deleted)"),
        "{}",
        plan.verdict
    );

    let text = config_text(&f.dir, "poll_every_with_events = \"6h\"");
    let config = SyncConfig::parse(&text, &f.dir.join("sync.toml")).unwrap();
    let plan = schedule(&config.sources[0], &f.storage).await;
    assert_eq!(plan.periods[0].1, Duration::from_secs(6 * 3600));
    // Never more often than it is wanted without events.
    let text = config_text(&f.dir, "poll_every_with_events = \"1min\"");
    let config = SyncConfig::parse(&text, &f.dir.join("sync.toml")).unwrap();
    let plan = schedule(&config.sources[0], &f.storage).await;
    assert_eq!(plan.periods[0].1, Duration::from_secs(15 * 60));
}

#[test]
fn configuration_mistakes_name_file_line_and_key() {
    let dir = Path::new("/etc/tollgate");
    let file = dir.join("sync.toml");
    let base = config_text(dir, "");
    let line_of =
        |text: &str, needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let cases = [
        (
            base.replace("action = \"delete\"", "action = \"remove\""),
            "action = \"remove\"",
            "sources[0].events.map[1].action",
            "`remove` is not an action",
        ),
        (
            base.replace(
                "resource = \"properties\"\naction = \"delete\"",
                "resource = \"houses\"\naction = \"delete\"",
            ),
            "resource = \"houses\"",
            "sources[0].events.map[1].resource",
            "no resource is named `houses`",
        ),
        (
            base.replace("secret = { file = ", "secret = { value = \"x\", file = "),
            "secret = {",
            "value",
            "unknown field `value`",
        ),
        (
            base.replace(
                &format!("secret = {{ file = \"{}/webhook-secret\" }}", dir.display()),
                "secret = {}",
            ),
            "secret = {}",
            "sources[0].events.secret",
            "the secret itself never goes in this file",
        ),
        (
            base.replace("tolerance = \"5min\"", "tolerance = \"soon\""),
            "tolerance = \"soon\"",
            "sources[0].events.tolerance",
            "`soon` is not a duration",
        ),
        (
            base.replace("id = \"/data/id\"", "id = \"data.id\""),
            "id = \"data.id\"",
            "sources[0].events.map[1].id",
            "is not a JSON pointer",
        ),
        (
            base.replace("type = \"property.deleted\"", "type = \"property.updated\""),
            "type = \"property.updated\"\nresource = \"properties\"\naction = \"delete\"",
            "sources[0].events.map[1].type",
            "mapped twice",
        ),
    ];
    for (text, at, key, problem) in cases {
        let err = SyncConfig::parse(&text, &file).unwrap_err();
        let line = match at.split_once('\n') {
            // The second mapping's `type` line.
            Some(_) => text
                .match_indices(at)
                .next()
                .map(|(i, _)| text[..i].lines().count() + 1)
                .unwrap(),
            None => line_of(&text, at),
        };
        assert_eq!(
            (err.file.as_path(), err.line),
            (file.as_path(), line),
            "{err}"
        );
        assert!(err.key.contains(key), "{err}");
        assert!(err.problem.contains(problem), "{err}");
    }
}
