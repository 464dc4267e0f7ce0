//! `tollgate serve` as a process: configuration errors, reload on SIGHUP, and a
//! graceful stop on SIGTERM that finishes the request in flight.

use std::process::{Command, Stdio};
use std::time::Duration;

use axum::Router;
use axum::routing::get;

const TOKEN: &str = "serve-test-admin-token-000";

/// The binary under test: cargo's build, or the one `TOLLGATE_BIN` names, such
/// as the deployment build of `scripts/build-pgo`, which BOLT rewrote after
/// the compiler and linker were done with it.
fn tollgate() -> Command {
    Command::new(
        std::env::var_os("TOLLGATE_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_tollgate").into()),
    )
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(
    dir: &std::path::Path,
    upstream: u16,
    port: u16,
    admin: u16,
    rate: &str,
) -> std::path::PathBuf {
    let path = dir.join("gateway.toml");
    let text = format!(
        r#"listen = "127.0.0.1:{port}"
database = "keys.db"

[admin]
listen = "127.0.0.1:{admin}"
token_env = "SERVE_TEST_TOKEN"

[[upstreams]]
name = "api"
url = "http://127.0.0.1:{upstream}"

[[routes]]
name = "all"
path = "/{{*rest}}"

[[limits]]
name = "per-key"
rate = "{rate}"
"#
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_bad_configuration_stops_start_up_with_file_line_and_key() {
    let dir = temp_dir("bad-config");
    let path = config(&dir, 1, 2, 3, "50/mn");
    let out = tollgate()
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("gateway.toml:18: `limits[0].rate`"), "{err}");
    assert!(err.contains("`50/60s`"), "{err}");
    let good = config(&dir, 1, 2, 3, "50/60s");
    let out = tollgate()
        .args(["serve", "--check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 upstreams, 1 routes, 1 limits)"));
    std::fs::remove_dir_all(dir).ok();
}

async fn wait_until_up(client: &reqwest::Client, url: &str) {
    for _ in 0..200 {
        if client.get(url).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{url} never answered");
}

fn signal(child: &std::process::Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn sighup_reloads_and_sigterm_finishes_the_request_in_flight() {
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_port = upstream.local_addr().unwrap().port();
    let app = Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(700)).await;
                "finished"
            }),
        )
        .fallback(|| async { "ok" });
    tokio::spawn(async move { axum::serve(upstream, app).await.unwrap() });

    let dir = temp_dir("serve");
    let (port, admin) = (free_port(), free_port());
    let path = config(&dir, upstream_port, port, admin, "2/60s");
    let mut child = tollgate()
        .args(["serve", "--config"])
        .arg(&path)
        .env("SERVE_TEST_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let admin_url = format!("http://127.0.0.1:{admin}");
    wait_until_up(&client, &format!("{admin_url}/healthz")).await;

    let key: serde_json::Value = client
        .post(format!("{admin_url}/admin/keys"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"name": "serve-test"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = key["secret"].as_str().unwrap().to_owned();
    let url = format!("http://127.0.0.1:{port}");
    let get = |path: &str| {
        client
            .get(format!("{url}{path}"))
            .header("x-api-key", &secret)
            .send()
    };
    assert_eq!(get("/a").await.unwrap().status(), 200);
    assert_eq!(get("/a").await.unwrap().status(), 200);
    assert_eq!(get("/a").await.unwrap().status(), 429);

    // Raise the limit in the file and send SIGHUP: the two used slots stay used.
    config(&dir, upstream_port, port, admin, "4/60s");
    signal(&child, "-HUP");
    let mut raised = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let response = get("/a").await.unwrap();
        if response.status() == 200 {
            raised = true;
            break;
        }
    }
    assert!(raised, "the reload raised the limit");
    assert_eq!(get("/slow").await.unwrap().status(), 200, "4 of 4 used");
    assert_eq!(get("/a").await.unwrap().status(), 429);

    // A request in flight when SIGTERM arrives still gets its answer.
    config(&dir, upstream_port, port, admin, "100/60s");
    signal(&child, "-HUP");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let in_flight = tokio::spawn(get("/slow"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal(&child, "-TERM");
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "finished");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    std::fs::remove_dir_all(dir).ok();
}
