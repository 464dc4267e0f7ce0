//! The binary as a user runs it.

use std::process::{Command, Output};

fn tollgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .output()
        .expect("the tollgate binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn plan_prints_the_seeds_schedule_and_verdict() {
    let out = tollgate(&[
        "plan", "--limit", "20/1s", "--tasks", "100", "--every", "1s",
    ]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("Does not fit"), "{text}");
    assert!(
        text.contains("100 tasks, each every 5s (wanted every 1s)"),
        "{text}"
    );
    assert!(text.contains("20 requests/s, one every 50ms"), "{text}");
}

#[test]
fn a_bad_limit_gets_a_clear_message_and_a_nonzero_exit() {
    let out = tollgate(&[
        "plan", "--limit", "20/mn", "--tasks", "100", "--every", "1s",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`20/mn`") && err.contains("`50/60s`"), "{err}");
    let out = tollgate(&["plan", "--limit", "20/s", "--tasks", "0", "--every", "1s"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("count of at least 1"));
}

/// The counts of the `total` row: admitted, rejected, blocked, strikes, blocks.
fn totals(text: &str) -> Vec<u64> {
    let row = text
        .lines()
        .find(|l| l.starts_with("total"))
        .expect("a total row");
    row.split_whitespace()
        .skip(1)
        .map(|n| n.parse().unwrap())
        .collect()
}

#[test]
fn simulate_blocks_the_naive_client_and_never_the_compliant_one() {
    let naive = tollgate(&[
        "simulate",
        "--limit",
        "50/60s",
        "--pattern",
        "naive",
        "--for",
        "5min",
    ]);
    assert!(naive.status.success());
    let [admitted, rejected, blocked, _, blocks] = totals(&stdout(&naive))[..] else {
        panic!()
    };
    assert!(admitted >= 50 && rejected > 0 && blocked > 0 && blocks >= 1);

    let args = [
        "simulate",
        "--limit",
        "50/60s",
        "--pattern",
        "compliant",
        "--clients",
        "4",
    ];
    let compliant = tollgate(&args);
    let [admitted, rejected, blocked, strikes, blocks] = totals(&stdout(&compliant))[..] else {
        panic!()
    };
    // 4 keys × 50 per minute × 5 minutes, each 429 waited out.
    assert_eq!(admitted, 4 * 50 * 5);
    assert!(rejected > 0);
    assert_eq!((blocked, strikes, blocks), (0, 0, 0));
}

#[test]
fn simulate_replays_a_trace_and_names_a_bad_line() {
    let dir = std::env::temp_dir().join(format!("tollgate-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("trace.txt");
    // Three requests in one second against 2/s: the third is rejected.
    std::fs::write(&trace, "0 a\n0.1 a\n0.2 a\n1.0 a\n").unwrap();
    let out = tollgate(&[
        "simulate",
        "--limit",
        "2/s",
        "--trace",
        trace.to_str().unwrap(),
    ]);
    assert_eq!(totals(&stdout(&out))[..3], [3, 1, 0]);

    std::fs::write(&trace, "0 a\nlater a\n").unwrap();
    let out = tollgate(&[
        "simulate",
        "--limit",
        "2/s",
        "--trace",
        trace.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("trace.txt:2: `later`"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn sync_check_says_which_fan_outs_are_read_in_bulk() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/sync.toml");
    let out = tollgate(&["sync", "--check", "--config", example]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    assert!(text.contains(": ok ("), "{text}");
    assert!(
        text.contains("property_details: read in bulk from /v1/properties/bulk"),
        "{text}"
    );
}
