//! What a key costs Redis: `MEMORY USAGE` of each algorithm's state at
//! `50/60s`, key name included (under this test's longer prefix).

use std::time::Duration;

use redis::AsyncCommands;
use tollgate_core::{Charge, LimitId, Quota, Rate, Timestamp};

use crate::support::{cleanup, raw, store, unique_prefix};

#[tokio::test]
async fn a_full_rolling_log_of_fifty_fits_in_eight_hundred_bytes() {
    let prefix = unique_prefix("memory");
    let store = store(&prefix).await;
    let rate = Rate::per_minute(50);
    let quotas = [
        ("rolling", Quota::rolling(rate)),
        ("fixed", Quota::fixed(rate)),
        ("gcra", Quota::gcra(rate, 50)),
        ("sliding-counter", Quota::sliding_counter(rate)),
    ];
    let mut conn = raw().await;
    let mut rolling = 0;
    for (i, (name, quota)) in quotas.into_iter().enumerate() {
        let charge = [Charge {
            limit: LimitId(i as u32),
            key: "key-12345",
            quota,
        }];
        // Fifty admitted, 7 ms apart (distinct slots): a full log.
        let mut now = Timestamp::from_secs(1_700_000_000);
        for _ in 0..50 {
            now = now + Duration::from_millis(7);
            assert!(store.decide_at(&charge, now).await.unwrap().is_admitted());
        }
        let key = format!("{prefix}:{{key-12345}}:{i}");
        let value: Vec<u8> = conn.get(&key).await.unwrap();
        let usage: u64 = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        println!(
            "{name} 50/60s: MEMORY USAGE {usage} B per key (value {} B, key name {} B)",
            value.len(),
            key.len()
        );
        if name == "rolling" {
            rolling = usage;
        }
    }
    cleanup(&prefix).await;
    assert!(
        rolling > 0 && rolling <= 800,
        "rolling 50/60s uses {rolling} B a key"
    );
}
