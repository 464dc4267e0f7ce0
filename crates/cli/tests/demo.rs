//! `tollgate demo` as a newcomer runs it, at full speed.

use std::process::Command;

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
