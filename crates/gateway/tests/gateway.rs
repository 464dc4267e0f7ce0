//! The gateway over real HTTP on 127.0.0.1, with a real upstream and a manual clock.

mod support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{TestGateway, problem};
use tollgate_gateway::config::GatewayConfig;

const CONFIG: &str = r#"
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[escalation]
strikes = 3
strike_window = "60s"
first_block = "30s"
max_block = "10min"

[tier]
step = 5

[requests]
max_body = "64KiB"
header_timeout = "1s"

[[upstreams]]
name = "api"
url = "UPSTREAM"
timeout = "300ms"

[[routes]]
name = "user-list"
method = "GET"
path = "/dev/v1/channel/user/{appid}/{channel}"

[[routes]]
name = "slow"
path = "/slow"

[[routes]]
name = "rest"
path = "/{*rest}"

[[limits]]
name = "per-key"
rate = "5/2s"
tiered = true

[[limits]]
name = "user-list"
scope = "per-route"
routes = ["user-list"]
rate = "20/s"
algorithm = "fixed"
"#;

const KEY: &str = "tg_test_key_aaaaaaaaaa12345";
const USER_LIST: &str = "/dev/v1/channel/user/app1/lobby";

/// `RateLimit-Policy` and `RateLimit`, parsed as Structured Field lists into
/// `(name, [(param, value)])`.
fn ratelimit_fields(response: &reqwest::Response) -> Vec<(String, Vec<(String, i64)>)> {
    use sfv::{BareItem, ListEntry, Parser};
    let mut items = Vec::new();
    for field in ["ratelimit-policy", "ratelimit"] {
        let value = response
            .headers()
            .get(field)
            .unwrap_or_else(|| panic!("{field} missing"));
        let list = Parser::parse_list(value.as_bytes())
            .unwrap_or_else(|e| panic!("{field} is not a valid list: {e}"));
        for entry in list {
            let ListEntry::Item(item) = entry else {
                panic!("{field}: inner list")
            };
            let BareItem::String(name) = &item.bare_item else {
                panic!("{field}: name is not a string")
            };
            let name: &str = name.as_ref();
            let params = item
                .params
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_int().expect("integer parameter")))
                .collect();
            items.push((format!("{field}:{name}"), params));
        }
    }
    items
}

fn param(fields: &[(String, Vec<(String, i64)>)], item: &str, name: &str) -> i64 {
    let (_, params) = fields
        .iter()
        .find(|(n, _)| n == item)
        .unwrap_or_else(|| panic!("no {item} in {fields:?}"));
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| *v)
        .unwrap()
}

#[tokio::test]
async fn the_rolling_window_holds_exactly_at_the_http_level() {
    let gw = TestGateway::start(CONFIG).await;
    gw.key(KEY).await;
    for i in 0..5 {
        let response = gw.get("/anything", Some(KEY)).await;
        assert_eq!(response.status(), StatusCode::OK, "request {i}");
        let fields = ratelimit_fields(&response);
        assert_eq!(param(&fields, "ratelimit-policy:per-key", "q"), 5);
        assert_eq!(param(&fields, "ratelimit-policy:per-key", "w"), 2);
        assert_eq!(param(&fields, "ratelimit:per-key", "r"), 4 - i);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(
            body["leaked_secret"], false,
            "the secret never reaches the upstream"
        );
        gw.clock.advance(Duration::from_millis(100));
    }
    // At +500 ms the sixth request waits for the first slot: back at +2000 ms.
    let limited = gw.get("/anything", Some(KEY)).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["retry-after"], "2");
    let fields = ratelimit_fields(&limited);
    assert_eq!(param(&fields, "ratelimit:per-key", "r"), 0);
    let body = problem(limited).await;
    assert_eq!(body["status"], 429);
    assert_eq!(body["retry_after_ms"], 1500);
    assert_eq!(body["policies"], json!(["per-key"]));
    assert_eq!(
        gw.upstream.hits(),
        5,
        "nothing rejected reaches the upstream"
    );

    gw.clock.advance(Duration::from_millis(1_499));
    assert_eq!(
        gw.get("/anything", Some(KEY)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    gw.clock.advance(Duration::from_millis(1));
    assert_eq!(
        gw.get("/anything", Some(KEY)).await.status(),
        StatusCode::OK,
        "the slot is back exactly 2 s after use"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_per_route_limit_is_shared_by_every_key() {
    let gw = TestGateway::start(CONFIG).await;
    let keys: Vec<String> = (0..5)
        .map(|i| format!("tg_route_key_{i}_bbbbbbbbbbbb"))
        .collect();
    for key in &keys {
        gw.key(key).await;
    }
    let mut admitted = 0;
    let mut limited_by_route = 0;
    for key in keys.iter().cycle().take(25) {
        let response = gw.get(USER_LIST, Some(key)).await;
        match response.status() {
            StatusCode::OK => admitted += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(problem(response).await["policies"], json!(["user-list"]));
                limited_by_route += 1;
            }
            other => panic!("{other}"),
        }
    }
    assert_eq!((admitted, limited_by_route), (20, 5));
    // The five rejected by the route charged nothing to their keys (each used 4
    // of 5), and other routes are not counted by the route's limit.
    assert_eq!(
        gw.get("/other", Some(&keys[0])).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        gw.get("/other", Some(&keys[0])).await.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "per-key 5/2s is used up"
    );
    gw.clock.advance(Duration::from_secs(2));
    assert_eq!(
        gw.get(USER_LIST, Some(&keys[0])).await.status(),
        StatusCode::OK
    );
    gw.stop().await;
}

#[tokio::test]
async fn missing_and_unknown_keys_get_401_and_reach_nothing() {
    let gw = TestGateway::start(CONFIG).await;
    gw.key(KEY).await;
    let missing = gw.get("/x", None).await;
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert!(
        problem(missing).await["detail"]
            .as_str()
            .unwrap()
            .contains("x-api-key")
    );
    let unknown = gw.get("/x", Some("tg_not_a_key_at_all_99999")).await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let detail = problem(unknown).await["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        detail.contains("`99999`") && !detail.contains("tg_not"),
        "{detail}"
    );
    assert_eq!(gw.upstream.hits(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn hammering_after_a_429_is_blocked_with_403_until_an_admin_unblocks() {
    let gw = TestGateway::start(CONFIG).await;
    let id = gw.key(KEY).await;
    for _ in 0..5 {
        assert_eq!(gw.get("/x", Some(KEY)).await.status(), StatusCode::OK);
    }
    // The first 429 is fair; the next three come before its retry instant.
    let statuses: Vec<u16> = futures_statuses(&gw, 4).await;
    assert_eq!(statuses, [429, 429, 429, 403]);
    let blocked = gw.get("/x", Some(KEY)).await;
    assert_eq!(blocked.status(), StatusCode::FORBIDDEN);
    let body = problem(blocked).await;
    assert_eq!(
        body["type"],
        "https://tollgate.dev/problems/abnormal-usage-detected"
    );
    assert!(body["blocked_until"].as_str().unwrap().ends_with('Z'));
    // Blocked even once the window has passed...
    gw.clock.advance(Duration::from_secs(3));
    assert_eq!(
        gw.get("/x", Some(KEY)).await.status(),
        StatusCode::FORBIDDEN
    );
    let blocks: serde_json::Value = gw
        .admin(Method::GET, "/admin/blocks")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(blocks[0]["key_id"], id);
    // ...until an admin lifts it.
    let lifted = gw
        .admin(Method::DELETE, &format!("/admin/blocks/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(lifted.status(), StatusCode::NO_CONTENT);
    assert_eq!(gw.get("/x", Some(KEY)).await.status(), StatusCode::OK);
    gw.stop().await;
}

async fn futures_statuses(gw: &TestGateway, n: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..n {
        statuses.push(gw.get("/x", Some(KEY)).await.status().as_u16());
    }
    statuses
}

#[tokio::test]
async fn a_tier_change_takes_effect_on_the_next_request_without_resetting_the_window() {
    let gw = TestGateway::start(CONFIG).await;
    let id = gw.key(KEY).await;
    for _ in 0..5 {
        assert_eq!(gw.get("/x", Some(KEY)).await.status(), StatusCode::OK);
    }
    assert_eq!(
        gw.get("/x", Some(KEY)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let change = gw
        .admin(Method::PUT, &format!("/admin/keys/{id}/increments"))
        .header("x-admin-actor", "billing@provider")
        .json(&json!({"increments": 1, "reason": "paid +5"}))
        .send()
        .await
        .unwrap();
    assert_eq!(change.status(), StatusCode::OK);
    // 10 per window now, 5 already used: exactly 5 more.
    let response = gw.get("/x", Some(KEY)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        param(
            &ratelimit_fields(&response),
            "ratelimit-policy:per-key",
            "q"
        ),
        10
    );
    for _ in 0..4 {
        assert_eq!(gw.get("/x", Some(KEY)).await.status(), StatusCode::OK);
    }
    assert_eq!(
        gw.get("/x", Some(KEY)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let history: serde_json::Value = gw
        .admin(Method::GET, &format!("/admin/keys/{id}/tier-history"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history[0]["actor"], "billing@provider");
    assert_eq!(
        (history[0]["from"].as_u64(), history[0]["to"].as_u64()),
        (Some(0), Some(1))
    );
    let shown: serde_json::Value = gw
        .admin(Method::GET, &format!("/admin/keys/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["usage"][0]["used"], 10);
    gw.stop().await;
}

#[tokio::test]
async fn upstream_failures_become_502_and_504_and_the_gateway_keeps_serving() {
    let gw = TestGateway::start(CONFIG).await;
    gw.key(KEY).await;
    let slow = gw.get("/slow", Some(KEY)).await;
    assert_eq!(slow.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        problem(slow).await["type"],
        "https://tollgate.dev/problems/upstream-timeout"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let down = TestGateway::start(&CONFIG.replace("UPSTREAM", &format!("http://{closed}"))).await;
    down.key(KEY).await;
    let response = down.get("/x", Some(KEY)).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(problem(response).await["status"], 502);
    assert_eq!(gw.get("/x", Some(KEY)).await.status(), StatusCode::OK);
    down.stop().await;
    gw.stop().await;
}

#[tokio::test]
async fn bad_input_gets_the_right_status_and_the_gateway_stays_up() {
    let gw = TestGateway::start(CONFIG).await;
    gw.key(KEY).await;
    // A request head larger than the limit.
    let huge_header = "x".repeat(100 * 1024);
    let response = gw
        .client
        .get(format!("{}/x", gw.url))
        .header("x-api-key", KEY)
        .header("x-filler", huge_header)
        .send()
        .await;
    if let Ok(response) = response {
        assert_eq!(
            response.status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
    }
    // A body over `max_body`.
    let big = gw
        .client
        .post(format!("{}/x", gw.url))
        .header("x-api-key", KEY)
        .body(vec![b'a'; 200 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // A key header that is not valid text.
    let bad = gw
        .client
        .get(format!("{}/x", gw.url))
        .header(
            "x-api-key",
            reqwest::header::HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    // An unknown admin token.
    let admin = gw
        .client
        .get(format!("{}/admin/keys", gw.admin_url))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), StatusCode::UNAUTHORIZED);
    // Raw bytes that are not HTTP: a path that is not UTF-8, a header line
    // without a colon.
    let head = |first: &[u8], extra: &str| {
        [
            first,
            format!(" HTTP/1.1\r\nHost: a\r\n{extra}X-Api-Key: {KEY}\r\n\r\n").as_bytes(),
        ]
        .concat()
    };
    for raw in [
        head(b"GET /caf\xe9/\xff\xfe", ""),
        head(b"GET /x", "Not a header\r\n"),
    ] {
        let answer = raw_exchange(&gw, &raw).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{raw:?} got {answer}");
    }
    // A slow client that never finishes its headers is cut off (after the 1 s
    // header timeout); others are served meanwhile.
    let mut slow = tokio::net::TcpStream::connect(gw.url.trim_start_matches("http://"))
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut slow, b"GET /x HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    assert_eq!(
        gw.get("/x", Some(KEY)).await.status(),
        StatusCode::OK,
        "still serving"
    );
    let mut rest = Vec::new();
    let cut = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut slow, &mut rest),
    )
    .await;
    assert!(cut.is_ok(), "the slow client was cut off");
    gw.stop().await;
}

#[tokio::test]
async fn a_reload_under_load_drops_no_request_and_keeps_the_windows() {
    let gw = TestGateway::start(CONFIG).await;
    let watched = "tg_watched_key_dddddddddddd";
    gw.key(watched).await;
    let keys: Vec<String> = (0..4)
        .map(|i| format!("tg_load_key_{i}_cccccccccccc"))
        .collect();
    for key in &keys {
        gw.key(key).await;
    }
    for used in 1..=3 {
        let response = gw.get("/x", Some(watched)).await;
        assert_eq!(
            param(&ratelimit_fields(&response), "ratelimit:per-key", "r"),
            5 - used
        );
    }
    let load: Vec<_> = keys
        .iter()
        .map(|key| {
            let (client, url, key) = (gw.client.clone(), gw.url.clone(), key.clone());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..150 {
                    let response = client
                        .get(format!("{url}{USER_LIST}"))
                        .header("x-api-key", &key)
                        .send()
                        .await
                        .expect("no request is dropped");
                    statuses.push(response.status().as_u16());
                }
                statuses
            })
        })
        .collect();
    let upstream = gw.gateway.upstream_url(0).unwrap();
    for round in 0..20 {
        // Alternate the shared route limit; the per-key policy keeps its name.
        let rate = if round % 2 == 0 { "30/s" } else { "20/s" };
        let text = CONFIG
            .replace("rate = \"20/s\"", &format!("rate = \"{rate}\""))
            .replace("UPSTREAM", &upstream);
        let config = GatewayConfig::parse(&text, std::path::Path::new("reload.toml")).unwrap();
        gw.gateway.reload(config);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for task in load {
        // Hammering keys end up blocked, which is an answer too: none is lost.
        let statuses = task.await.unwrap();
        assert!(
            statuses.iter().all(|s| [200, 429, 403].contains(s)),
            "{statuses:?}"
        );
    }
    // The watched key's window survived twenty reloads: 3 of 5 still used.
    let response = gw.get("/x", Some(watched)).await;
    assert_eq!(
        param(&ratelimit_fields(&response), "ratelimit:per-key", "r"),
        1
    );
    gw.stop().await;
}

fn application(last5: &str) -> serde_json::Value {
    json!({
        "key_last5": last5,
        "company": "Acme Lettings",
        "industry": "property management",
        "scenario": "nightly tenancy import",
        "import_frequency": "every 15 minutes",
        "storage_layer": "PostgreSQL 15",
        "full_sync_duration": "40 minutes",
        "peak_concurrency": 4,
        "handles_429": true,
        "increments_wanted": 1
    })
}

#[tokio::test]
async fn a_limit_increase_request_carries_evidence_and_approval_applies_it() {
    let gw = TestGateway::start(CONFIG).await;
    let id = gw.key(KEY).await;
    for _ in 0..7 {
        gw.get("/x", Some(KEY)).await;
    }
    let submit = |body: serde_json::Value| {
        gw.client
            .post(format!("{}/_tollgate/limit-increase-requests", gw.url))
            .header("x-api-key", KEY)
            .json(&body)
            .send()
    };
    // What the seeds' providers refuse, with the reason.
    let mut no_429 = application("12345");
    no_429["handles_429"] = json!(false);
    let refused = submit(no_429).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        problem(refused).await["detail"]
            .as_str()
            .unwrap()
            .contains("Retry-After")
    );
    let wrong_key = submit(application("99999")).await.unwrap();
    assert_eq!(wrong_key.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let malformed = gw
        .client
        .post(format!("{}/_tollgate/limit-increase-requests", gw.url))
        .header("x-api-key", KEY)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);

    let created = submit(application("12345")).await.unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let request: serde_json::Value = created.json().await.unwrap();
    assert_eq!(request["status"], "pending");
    assert_eq!(
        request["evidence"]["rejected_429"], 2,
        "the 6th and 7th requests"
    );
    assert_eq!(
        request["evidence"]["strikes"], 1,
        "the 7th came before the retry instant"
    );
    assert_eq!(request["evidence"]["peak_usage_per_day"][0]["used"], 5);
    assert_eq!(request["evidence"]["peak_usage_per_day"][0]["limit"], 5);

    let pending: serde_json::Value = gw
        .admin(Method::GET, "/admin/limit-increase-requests?status=pending")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pending.as_array().unwrap().len(), 1);
    let request_id = request["id"].as_i64().unwrap();
    let approved = gw
        .admin(
            Method::POST,
            &format!("/admin/limit-increase-requests/{request_id}/approve"),
        )
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(approved.status(), StatusCode::OK);
    let shown: serde_json::Value = gw
        .admin(Method::GET, &format!("/admin/keys/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["increments"], 1);
    let again = gw
        .admin(
            Method::POST,
            &format!("/admin/limit-increase-requests/{request_id}/approve"),
        )
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::BAD_REQUEST, "decided once");

    let second: serde_json::Value = submit(application("12345"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let second_id = second["id"].as_i64().unwrap();
    let no_reason = gw
        .admin(
            Method::POST,
            &format!("/admin/limit-increase-requests/{second_id}/decline"),
        )
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_reason.status(), StatusCode::BAD_REQUEST);
    let declined = gw
        .admin(
            Method::POST,
            &format!("/admin/limit-increase-requests/{second_id}/decline"),
        )
        .json(&json!({"reason": "use the bulk endpoint first"}))
        .send()
        .await
        .unwrap();
    assert_eq!(declined.status(), StatusCode::OK);
    let status: serde_json::Value = gw
        .client
        .get(format!(
            "{}/_tollgate/limit-increase-requests/{second_id}",
            gw.url
        ))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"], "declined");
    assert_eq!(status["decision_reason"], "use the bulk endpoint first");
    gw.stop().await;
}

#[tokio::test]
async fn metrics_count_outcomes_per_policy_without_keys() {
    let gw = TestGateway::start(CONFIG).await;
    gw.key(KEY).await;
    for _ in 0..6 {
        gw.get("/x", Some(KEY)).await;
    }
    let text = gw
        .client
        .get(format!("{}/metrics", gw.admin_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("tollgate_policy_admitted_total{policy=\"per-key\"} 5"),
        "{text}"
    );
    assert!(
        text.contains("tollgate_policy_rejected_total{policy=\"per-key\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("tollgate_requests_total{outcome=\"limited\"} 1"),
        "{text}"
    );
    assert!(
        !text.contains(KEY) && !text.contains("12345"),
        "no key in metrics"
    );
    assert_eq!(
        gw.client
            .get(format!("{}/healthz", gw.admin_url))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        gw.client
            .get(format!("{}/readyz", gw.admin_url))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    gw.stop().await;
}

/// Sends raw bytes on a fresh connection; returns what came back.
async fn raw_exchange(gw: &TestGateway, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(gw.url.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = vec![0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    String::from_utf8_lossy(&answer[..read]).into_owned()
}

#[tokio::test]
async fn request_and_answer_bodies_pass_through_whole_on_a_kept_connection() {
    let gw = TestGateway::start(CONFIG).await;
    gw.key(KEY).await;
    // Under `max_body`; a lost, repeated or reordered chunk changes the pattern.
    let sent: Vec<u8> = (0..60 * 1024u32).map(|i| (i % 251) as u8).collect();
    for _ in 0..3 {
        let answer = gw
            .client
            .post(format!("{}/echo", gw.url))
            .header("x-api-key", KEY)
            .body(sent.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        let body = answer.bytes().await.unwrap();
        assert_eq!(body.len(), sent.len() * support::ECHO_REPEATS);
        assert!(
            body.chunks(sent.len())
                .all(|chunk| chunk == sent.as_slice()),
            "the answer is the body sent, repeated"
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_kept_upstream_connection_the_upstream_closed_is_replaced_not_answered_502() {
    let (address, upstream) = support::ClosingUpstream::start().await;
    let gw =
        TestGateway::start(&CONFIG.replace("UPSTREAM", &format!("http://{address}/api/"))).await;
    gw.key(KEY).await;
    let accepted = || upstream.accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(gw.get("/x?a=1", Some(KEY)).await.status(), StatusCode::OK);
    assert_eq!(gw.get("/y", Some(KEY)).await.status(), StatusCode::OK);
    assert_eq!(accepted(), 1, "the connection is kept between requests");
    upstream.close_idle().await;
    for _ in 0..3 {
        assert_eq!(gw.get("/z", Some(KEY)).await.status(), StatusCode::OK);
    }
    assert_eq!(accepted(), 2, "one new connection, kept again");
    let host = format!("{address}");
    let seen = upstream.seen.lock().unwrap().clone();
    assert_eq!(seen[0], (host.clone(), "/api/x?a=1".to_owned()));
    assert_eq!(seen[1], (host.clone(), "/api/y".to_owned()));
    assert!(
        seen[2..]
            .iter()
            .all(|s| *s == (host.clone(), "/api/z".to_owned()))
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_body_in_a_transfer_coding_the_gateway_cannot_pass_on_gets_501_uncharged() {
    let gw = TestGateway::start(CONFIG).await;
    gw.key(KEY).await;
    let request = format!(
        "POST /x HTTP/1.1\r\nHost: gw\r\nX-Api-Key: {KEY}\r\nTransfer-Encoding: gzip, chunked\r\n\
         Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    );
    let answer = raw_exchange(&gw, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 501"), "{answer}");
    assert!(answer.contains("transfer-coding-not-supported"), "{answer}");
    assert_eq!(gw.upstream.hits(), 0, "nothing reached the upstream");
    for _ in 0..5 {
        assert_eq!(
            gw.get("/x", Some(KEY)).await.status(),
            StatusCode::OK,
            "the refused request was not charged: all 5 per 2 s are left"
        );
    }
    gw.stop().await;
}

/// An upstream that answers every connection's first request with `answer`.
async fn raw_upstream(answer: &'static [u8]) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = vec![0u8; 4096];
                let _ = stream.read(&mut request).await;
                let _ = stream.write_all(answer).await;
            });
        }
    });
    address
}

#[tokio::test]
async fn an_answer_in_a_transfer_coding_the_gateway_cannot_pass_on_becomes_502() {
    let address = raw_upstream(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let gw = TestGateway::start(&CONFIG.replace("UPSTREAM", &format!("http://{address}"))).await;
    gw.key(KEY).await;
    // With a body the request goes through hyper's client; without one, the
    // gateway reads the answer itself. Both refuse it alike.
    let posted = gw
        .client
        .post(format!("{}/x", gw.url))
        .header("x-api-key", KEY)
        .body("hello")
        .send()
        .await
        .unwrap();
    let got = gw.get("/x", Some(KEY)).await;
    for answer in [posted, got] {
        assert_eq!(answer.status(), StatusCode::BAD_GATEWAY);
        let body = problem(answer).await;
        assert!(
            body["detail"].as_str().unwrap().contains("transfer coding"),
            "{body}"
        );
    }
    gw.stop().await;
}
