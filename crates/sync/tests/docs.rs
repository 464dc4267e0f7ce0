//! Every sync configuration shown in the docs and examples loads as it is.

use std::path::Path;

use tollgate_config::toml_blocks;
use tollgate_sync::config::SyncConfig;

#[test]
fn the_configurations_in_the_docs_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let doc = root.join("docs/sync.md");
    let blocks = toml_blocks(&std::fs::read_to_string(&doc).unwrap());
    let configs: Vec<_> = blocks
        .iter()
        .filter(|b| b.contains("[[sources]]"))
        .collect();
    assert!(!configs.is_empty(), "docs/sync.md shows a configuration");
    for block in configs {
        if let Err(err) = SyncConfig::parse(block, &doc) {
            panic!("a configuration in docs/sync.md does not load: {err}\n{block}");
        }
    }
    let example = root.join("examples/sync.toml");
    SyncConfig::load(&example).unwrap_or_else(|e| panic!("{e}"));
}
