//! Every sync configuration shown in the docs and examples loads as it is.

use std::path::Path;

use tollgate_config::toml_blocks;
use tollgate_sync::config::SyncConfig;

/// The smallest source, to check a fragment of the top level inside a whole
/// file.
const A_SOURCE: &str = r#"
[[sources]]
name = "example"
base_url = "http://127.0.0.1:8080"
key = { header = "X-Api-Key", env = "EXAMPLE_API_KEY" }
limits = ["50/60s"]
"#;

#[test]
fn the_configurations_in_the_docs_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut checked = 0;
    for name in ["docs/sync.md", "docs/redis.md"] {
        let doc = root.join(name);
        let blocks = toml_blocks(&std::fs::read_to_string(&doc).unwrap());
        // Whole files, and fragments marked as a sync.toml (docs/redis.md
        // shows gateway configurations too).
        for block in &blocks {
            let text = if block.contains("[[sources]]") {
                block.clone()
            } else if block.starts_with("# sync.toml") {
                format!("{block}\n{A_SOURCE}")
            } else {
                continue;
            };
            if let Err(err) = SyncConfig::parse(&text, &doc) {
                panic!("a configuration in {name} does not load: {err}\n{block}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 2, "the docs show sync configurations");
    let example = root.join("examples/sync.toml");
    SyncConfig::load(&example).unwrap_or_else(|e| panic!("{e}"));
}
