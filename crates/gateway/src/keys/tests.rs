use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::Row as _;
use tollgate_core::{ManualClock, Timestamp};

use super::*;

const KNOWN: &str = "demo_secret_0123456789";

async fn keys() -> Keys {
    Keys::open_in_memory().await.expect("in-memory registry")
}

/// A fresh folder under the temp dir, removed when dropped (also on a failed assert).
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "tollgate-keys-{test}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn a_created_key_authenticates_with_its_secret_only() {
    let keys = keys().await;
    let new = keys.create("acme", "alice").await.unwrap();
    let secret = new.secret.expose();
    assert!(secret.starts_with(SECRET_PREFIX));
    assert_eq!(secret.len(), SECRET_PREFIX.len() + 32);
    assert!(
        secret[SECRET_PREFIX.len()..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric())
    );
    assert_eq!(new.info.last5, last5(secret));

    let found = keys.authenticate(secret).expect("the secret authenticates");
    assert_eq!(*found, new.info);
    assert_eq!(
        (found.id, found.increments, found.revoked),
        (new.info.id, 0, false)
    );

    let mut wrong = secret.to_owned();
    wrong.pop();
    wrong.push(if secret.ends_with('x') { 'y' } else { 'x' });
    assert!(keys.authenticate(&wrong).is_none());
    assert!(keys.authenticate("").is_none());

    let other = keys.create("acme", "alice").await.unwrap();
    assert_ne!(other.secret.expose(), secret);
    assert_ne!(other.info.id, new.info.id);
}

#[tokio::test]
async fn a_revoked_key_no_longer_authenticates() {
    let keys = keys().await;
    let info = keys
        .create_with_secret("acme", KNOWN, "alice")
        .await
        .unwrap();
    assert_eq!(keys.active_count(), 1);
    assert!(keys.revoke(info.id, "bob").await.unwrap());
    assert!(keys.authenticate(KNOWN).is_none());
    assert_eq!(keys.active_count(), 0);
    assert!(
        !keys.revoke(info.id, "bob").await.unwrap(),
        "already revoked"
    );
    assert!(keys.get(info.id).await.unwrap().unwrap().revoked);
    assert!(matches!(
        keys.revoke(999, "bob").await,
        Err(KeyError::UnknownKey(999))
    ));
    assert!(matches!(
        keys.set_increments(info.id, 2, "bob", None).await,
        Err(KeyError::Revoked(id)) if id == info.id
    ));
}

#[tokio::test]
async fn only_the_hash_and_last_five_are_stored() {
    let keys = keys().await;
    let new = keys.create("acme", "alice").await.unwrap();
    let secret = new.secret.expose();
    let row = sqlx::query("SELECT * FROM keys")
        .fetch_one(&keys.pool)
        .await
        .unwrap();
    let hash: Vec<u8> = row.try_get("secret_hash").unwrap();
    assert_eq!(hash, secret::hash(secret));
    assert_eq!(row.try_get::<String, _>("last5").unwrap(), last5(secret));
    for column in ["name", "last5", "created_by"] {
        let text: String = row.try_get(column).unwrap();
        assert!(!text.contains(secret), "{column} holds the secret");
    }
}

#[tokio::test]
async fn set_increments_applies_at_once_and_is_recorded() {
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_750_000_000_000)));
    let keys = keys().await.with_clock(clock.clone());
    let info = keys
        .create_with_secret("acme", KNOWN, "alice")
        .await
        .unwrap();
    assert_eq!(info.created_at, 1_750_000_000_000);
    clock.advance(Duration::from_secs(60));
    let change = keys
        .set_increments(info.id, 3, "bob", Some("plan upgrade"))
        .await
        .unwrap();
    assert_eq!(keys.authenticate(KNOWN).unwrap().increments, 3);
    assert_eq!((change.key_id, change.from, change.to), (info.id, 0, 3));
    assert_eq!(change.actor, "bob");
    assert_eq!(change.reason.as_deref(), Some("plan upgrade"));
    assert_eq!(change.at, 1_750_000_060_000);

    clock.advance(Duration::from_secs(1));
    keys.set_increments(info.id, 1, "carol", None)
        .await
        .unwrap();
    assert_eq!(keys.authenticate(KNOWN).unwrap().increments, 1);
    let history = keys.tier_history(info.id).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0], change);
    assert_eq!(
        (history[1].from, history[1].to, history[1].actor.as_str()),
        (3, 1, "carol")
    );
    assert_eq!(history[1].reason, None);
    assert_eq!(history[1].at, 1_750_000_061_000);

    assert!(matches!(
        keys.set_increments(7, 1, "bob", None).await,
        Err(KeyError::UnknownKey(7))
    ));
    assert!(matches!(
        keys.tier_history(7).await,
        Err(KeyError::UnknownKey(7))
    ));
    assert!(matches!(
        keys.set_increments(info.id, 1, " ", None).await,
        Err(KeyError::MissingActor)
    ));
}

#[tokio::test]
async fn chosen_secrets_must_be_long_header_safe_and_unique() {
    let keys = keys().await;
    let short = "a".repeat(MIN_SECRET_CHARS - 1);
    assert!(matches!(
        keys.create_with_secret("x", &short, "alice").await,
        Err(KeyError::WeakSecret { chars: 15, min: 16 })
    ));
    // Characters, not bytes: 15 two-byte characters are still too short.
    let short_wide = "é".repeat(MIN_SECRET_CHARS - 1);
    assert!(matches!(
        keys.create_with_secret("x", &short_wide, "alice").await,
        Err(KeyError::WeakSecret { chars: 15, .. })
    ));
    let spaced = "with a space in it!";
    assert!(matches!(
        keys.create_with_secret("x", spaced, "alice").await,
        Err(KeyError::SecretNotHeaderSafe)
    ));
    let exact = "b".repeat(MIN_SECRET_CHARS);
    keys.create_with_secret("x", &exact, "alice").await.unwrap();
    let duplicate = keys
        .create_with_secret("y", &exact, "alice")
        .await
        .unwrap_err();
    assert!(matches!(&duplicate, KeyError::DuplicateSecret { last5 } if last5 == "bbbbb"));
    assert!(!duplicate.to_string().contains(&exact));
    assert_eq!(keys.list().await.unwrap().len(), 1);
}

#[tokio::test]
async fn reopening_the_file_keeps_keys_tiers_and_history() {
    let dir = TempDir::new("reopen");
    let path = dir.0.join("nested").join("keys.db");
    let keys = Keys::open(&path).await.unwrap();
    let kept = keys
        .create_with_secret("acme", KNOWN, "alice")
        .await
        .unwrap();
    let generated = keys.create("globex", "alice").await.unwrap();
    keys.set_increments(kept.id, 2, "bob", Some("trial"))
        .await
        .unwrap();
    keys.revoke(generated.info.id, "bob").await.unwrap();
    assert_no_file_holds(path.parent().unwrap(), &[KNOWN, generated.secret.expose()]);
    keys.close().await;
    drop(keys);

    let keys = Keys::open(&path).await.unwrap();
    assert_eq!(keys.authenticate(KNOWN).unwrap().increments, 2);
    assert!(keys.authenticate(generated.secret.expose()).is_none());
    assert_eq!(keys.list().await.unwrap().len(), 2);
    assert_eq!(keys.tier_history(kept.id).await.unwrap()[0].actor, "bob");
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&keys.pool)
        .await
        .unwrap();
    assert_eq!(journal, "wal");
    assert_no_file_holds(path.parent().unwrap(), &[KNOWN, generated.secret.expose()]);
    keys.close().await;
}

/// Whether any file of the folder (database, WAL, shared memory) holds `needle`.
/// Call it while the database is open: SQLite removes the WAL soon after closing.
fn any_file_holds(dir: &std::path::Path, needle: &str) -> bool {
    let mut found = false;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue, // removed since listed
            Err(e) => panic!("cannot read {}: {e}", path.display()),
        };
        found |= bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    }
    found
}

fn assert_no_file_holds(dir: &std::path::Path, secrets: &[&str]) {
    // The scan sees what is stored: the key's name is there.
    assert!(
        any_file_holds(dir, "globex"),
        "scan found no stored key name"
    );
    for secret in secrets {
        assert!(
            !any_file_holds(dir, secret),
            "a file in {} holds a secret",
            dir.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tier_changes_chain_and_the_snapshot_ends_on_the_last() {
    let dir = TempDir::new("concurrent");
    let keys = Arc::new(Keys::open(&dir.0.join("keys.db")).await.unwrap());
    let id = keys
        .create_with_secret("acme", KNOWN, "alice")
        .await
        .unwrap()
        .id;
    let tasks: Vec<_> = (1..=12)
        .map(|to| {
            let keys = Arc::clone(&keys);
            tokio::spawn(async move { keys.set_increments(id, to, "bob", None).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let history = keys.tier_history(id).await.unwrap();
    assert_eq!(history.len(), 12);
    assert_eq!(history[0].from, 0);
    for pair in history.windows(2) {
        assert_eq!(
            pair[0].to, pair[1].from,
            "every change starts where the last ended"
        );
    }
    let last = history.last().unwrap().to;
    assert_eq!(keys.get(id).await.unwrap().unwrap().increments, last);
    assert_eq!(keys.authenticate(KNOWN).unwrap().increments, last);
    keys.close().await;
}

#[tokio::test]
async fn an_unusable_path_says_what_to_check() {
    let dir = TempDir::new("unusable");
    let file = dir.0.join("a-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let error = Keys::open(&file.join("keys.db"))
        .await
        .err()
        .expect("a file is no folder");
    assert!(matches!(error, KeyError::CreateDir { .. }));
    let message = error.to_string();
    assert!(
        message.contains("a-file") && message.contains("write"),
        "{message}"
    );
}

#[test]
fn a_secret_never_shows_in_debug_or_display() {
    let secret = Secret::generate();
    let debug = format!("{secret:?}");
    let display = secret.to_string();
    for shown in [&debug, &display] {
        assert!(!shown.contains(secret.expose()), "{shown}");
        assert!(shown.contains(last5(secret.expose())));
    }
    let new = NewKey {
        info: KeyInfo {
            id: 1,
            name: "acme".into(),
            last5: last5(secret.expose()).into(),
            increments: 0,
            created_at: 0,
            revoked: false,
        },
        secret,
    };
    assert!(!format!("{new:?}").contains(new.secret.expose()));
}

#[test]
fn last5_counts_characters() {
    assert_eq!(last5("tg_abcdefgh"), "defgh");
    assert_eq!(last5("xxé€😀ab"), "é€😀ab");
    assert_eq!(last5("abc"), "abc");
    assert_eq!(last5(""), "");
}

#[tokio::test]
async fn a_key_keeps_its_ledger_record_beside_it_across_requests_and_snapshots() {
    let keys = keys().await;
    let info = keys
        .create_with_secret("a", KNOWN, "test")
        .await
        .expect("created");
    let ledger = Arc::new(Ledger::new(Timestamp::EPOCH));
    let (id, _, first) = keys.authenticate_in(KNOWN, &ledger).expect("active");
    assert_eq!(id, info.id);
    first.rejected(true);

    // Later requests, and a new snapshot after a write, reach the same record
    // the ledger's own lookup finds.
    let (_, _, again) = keys.authenticate_in(KNOWN, &ledger).unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    keys.set_increments(info.id, 2, "test", None).await.unwrap();
    let (_, increments, after) = keys.authenticate_in(KNOWN, &ledger).unwrap();
    assert_eq!(increments, 2);
    assert!(Arc::ptr_eq(&first, &after));
    assert!(Arc::ptr_eq(&first, &ledger.activity(info.id)));
    assert_eq!(ledger.record(info.id).strikes, 1);

    // Another ledger gets its own records, never the kept ones.
    let other = Arc::new(Ledger::new(Timestamp::EPOCH));
    let (_, _, elsewhere) = keys.authenticate_in(KNOWN, &other).unwrap();
    assert!(Arc::ptr_eq(&elsewhere, &other.activity(info.id)));
    assert_eq!(other.record(info.id).strikes, 0);
    assert!(
        keys.authenticate_in("wrong_secret_0123456789", &ledger)
            .is_none()
    );
}
