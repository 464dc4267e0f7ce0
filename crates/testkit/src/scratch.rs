//! Folders of their own for tests that write files (a SQLite store, a key file).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// A new, empty folder under the system's temporary folder, named after
/// `name` and unique across the tests of this process and across processes.
/// The test removes it when done.
pub fn scratch_dir(name: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "tollgate-{name}-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}
