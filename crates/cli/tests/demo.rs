//! `tollgate demo` as a newcomer runs it, at full speed, and with `--keep`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};

#[test]
fn the_demo_blocks_the_naive_client_and_syncs_everything_with_zero_429s() {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["demo", "--speed", "max"])
        .output()
        .expect("the tollgate binary runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = text.split("Summary").nth(1).expect("a summary");
    let row = |name: &str| -> Vec<String> {
        let line = summary
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row:\n{summary}"));
        line.trim_start()[name.len()..]
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let naive = row("naive");
    assert!(naive[0].parse::<u64>().unwrap() >= 50, "{naive:?}");
    assert!(naive[1].parse::<u64>().unwrap() >= 1);
    assert_eq!(
        naive[2], "yes",
        "the naive client's key was blocked: {naive:?}"
    );
    let sync = row("tollgate sync");
    assert_eq!(sync[1], "0", "zero 429s for the sync: {sync:?}");
    assert_eq!(sync[2], "no");
    let (stored, expected) = sync[3].split_once('/').unwrap();
    assert_eq!(stored, expected, "every record imported");
    assert!(
        text.contains("Handles 429:") && text.contains("Storage layer:           SQLite"),
        "{text}"
    );
}

/// What `tollgate demo --keep` printed, read line by line as it runs.
struct Keep {
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    seen: String,
}

impl Keep {
    /// Reads until a line starts (after its indent) with `label`, and returns it.
    async fn line(&mut self, label: &str) -> String {
        let read = async {
            while let Some(line) = self.lines.next_line().await.expect("stdout readable") {
                self.seen.push_str(&line);
                self.seen.push('\n');
                if line.trim_start().starts_with(label) {
                    return Some(line);
                }
            }
            None
        };
        match tokio::time::timeout(Duration::from_secs(180), read).await {
            Ok(Some(line)) => line,
            Ok(None) => panic!("the demo ended before printing `{label}`:\n{}", self.seen),
            Err(_) => panic!("no `{label}` within 180 s:\n{}", self.seen),
        }
    }
}

/// The first `http://127.0.0.1:PORT` in `line`.
fn loopback_url(line: &str) -> String {
    let at = line
        .find("http://127.0.0.1:")
        .unwrap_or_else(|| panic!("no loopback URL in `{line}`"));
    let rest = &line[at..];
    let end = rest["http://127.0.0.1:".len()..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(rest.len(), |i| i + "http://127.0.0.1:".len());
    rest[..end].to_owned()
}

async fn get_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    let response = client.get(url).send().await.expect(url);
    assert_eq!(response.status(), 200, "{url}");
    response.json().await.expect(url)
}

/// Every record of `resource` from the read API, following `next`.
async fn count_records(client: &reqwest::Client, read: &str, resource: &str) -> u64 {
    let (mut count, mut after) = (0, String::new());
    for _ in 0..100 {
        let page = get_json(
            client,
            &format!("{read}/v1/{resource}?limit=1000&after={after}"),
        )
        .await;
        count += page["records"].as_array().expect("records").len() as u64;
        match page["next"].as_str() {
            Some(next) => after = next.to_owned(),
            None => return count,
        }
    }
    panic!("{resource}: more than 100 pages")
}

async fn sync_source(client: &reqwest::Client, read: &str) -> serde_json::Value {
    get_json(client, &format!("{read}/status")).await["sources"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_keep_the_read_api_and_status_page_serve_the_import_until_sigterm() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["demo", "--speed", "max", "--keep"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the tollgate binary runs");
    let mut out = Keep {
        lines: BufReader::new(child.stdout.take().unwrap()).lines(),
        seen: String::new(),
    };
    let summary = out.line("tollgate sync").await;
    let (_, expected) = summary
        .split_whitespace()
        .find_map(|field| field.split_once('/'))
        .unwrap_or_else(|| panic!("no records column: {summary}"));
    let expected: u64 = expected.parse().unwrap();
    let read = loopback_url(&out.line("read API").await);
    let page = loopback_url(&out.line("status page").await);
    let store = out.line("store").await;
    out.line("sync daemon").await;
    assert_eq!(read, page, "{}", out.seen);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // The read API serves every record the sync imported, per resource.
    let mut total = 0;
    for resource in ["properties", "tenancies", "channels", "channel_users"] {
        let count = count_records(&client, &read, resource).await;
        assert!(count > 0, "{resource}: no records");
        total += count;
    }
    assert_eq!(total, expected, "{}", out.seen);
    assert_eq!(count_records(&client, &read, "properties").await, 260);

    // The status page and its JSON: every resource imported, no 429.
    let html = client.get(format!("{page}/")).send().await.unwrap();
    assert_eq!(html.status(), 200);
    let html = html.text().await.unwrap();
    assert!(
        html.contains("tollgate sync") && html.contains("channel_users"),
        "{html}"
    );
    let status = get_json(&client, &format!("{read}/status")).await;
    for resource in status["resources"].as_array().unwrap() {
        assert!(resource["last_success_ms"].is_i64(), "{status}");
    }
    let first = sync_source(&client, &read).await;
    assert_eq!(first["rejected_429"], 0, "{status}");

    // The daemon goes on importing on schedule (the user lists every 5 s),
    // through the same budget: still no 429.
    let started = Instant::now();
    let requests = |s: &serde_json::Value| s["requests"].as_u64().unwrap();
    let later = loop {
        let now = sync_source(&client, &read).await;
        if requests(&now) > requests(&first) {
            break now;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no import within 30 s: {now}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(later["rejected_429"], 0, "{later}");

    // SIGTERM stops everything and removes the demo's files.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the demo stops within 30 s of SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit:?}\n{}", out.seen);
    assert!(
        client.get(format!("{read}/healthz")).send().await.is_err(),
        "the read API still answers after the demo stopped"
    );
    let db = store
        .split_once("sqlite://")
        .map(|(_, path)| std::path::PathBuf::from(path.trim()))
        .unwrap_or_else(|| panic!("no SQLite store: {store}"));
    assert!(
        !db.parent().unwrap().exists(),
        "{} left behind",
        db.display()
    );
}
