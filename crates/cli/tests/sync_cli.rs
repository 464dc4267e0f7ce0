//! `tollgate sync --once`, `sync status` and `report` as processes, against the
//! example provider on 127.0.0.1.

use std::process::{Command, Output};

use tollgate_testkit::{ExampleApi, Limits};

const KEY: &str = "sync-cli-key-0123456789";

fn tollgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the tollgate binary runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_then_status_then_report() {
    let api = ExampleApi::builder()
        .channels(5)
        .properties(30)
        .tenancies(10)
        .applicants(5)
        .limits(Limits::none())
        .build()
        .spawn()
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("tollgate-sync-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("key"), KEY).unwrap();
    let config = dir.join("sync.toml");
    std::fs::write(
        &config,
        format!(
            r#"
store = "sqlite://sync.db"
[[sources]]
name = "example"
base_url = "http://{addr}"
key = {{ file = "{key}" }}
limits = ["100/s"]
[[sources.resources]]
name = "properties"
path = "/v1/properties"
records = "/data"
pagination = {{ style = "page", param = "page", size_param = "per_page", size = 10 }}
every = "1min"
"#,
            addr = api.addr,
            key = dir.join("key").display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    let for_once = config.clone();
    let once =
        tokio::task::spawn_blocking(move || tollgate(&["sync", "--config", &for_once, "--once"]))
            .await
            .unwrap();
    let text = String::from_utf8_lossy(&once.stdout);
    assert!(
        once.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&once.stderr)
    );
    assert!(text.contains("ok"), "{text}");

    let status = tollgate(&["sync", "--config", &config, "status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    let row = text
        .lines()
        .find(|l| l.starts_with("properties"))
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(row.split_whitespace().nth(1), Some("30"), "{row}");
    assert!(
        text.contains("source `example`: 0 429s received, 0 not honoured"),
        "{text}"
    );

    let report = tollgate(&["report", "--config", &config, "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(json[0]["resources"][0]["stored"], 30);
    assert_eq!(json[0]["all_honoured"], true);
    assert_eq!(json[0]["key_last5"], "56789");
    std::fs::remove_dir_all(dir).ok();
}

/// `--redis` reaches the import: with a server that does not answer, nothing
/// is sent and the error says what to do.
#[test]
fn sync_with_an_unreachable_redis_says_so_and_sends_nothing() {
    let dir = std::env::temp_dir().join(format!("tollgate-sync-cli-redis-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("key"), KEY).unwrap();
    let config = dir.join("sync.toml");
    // Port 9 on loopback: nothing listens there, for Redis nor for the source.
    std::fs::write(
        &config,
        format!(
            r#"
store = "sqlite://sync.db"
[[sources]]
name = "example"
base_url = "http://127.0.0.1:9"
key = {{ file = "{key}" }}
limits = ["100/s"]
[[sources.resources]]
name = "properties"
path = "/v1/properties"
records = "/data"
every = "1min"
"#,
            key = dir.join("key").display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let out = tollgate(&[
        "sync",
        "--config",
        config,
        "--once",
        "--redis",
        "redis://127.0.0.1:9",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot reach the Redis server that shares the budgets"),
        "{stderr}"
    );
    assert!(stderr.contains("redis://127.0.0.1:9"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
