//! Every gateway configuration shown in the docs and examples loads as it is.

use std::path::Path;

use tollgate_config::toml_blocks;
use tollgate_gateway::config::GatewayConfig;

#[test]
fn the_configurations_in_the_docs_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut checked = 0;
    for name in ["docs/gateway.md", "docs/redis.md"] {
        let doc = root.join(name);
        for block in toml_blocks(&std::fs::read_to_string(&doc).unwrap()) {
            // The sync daemon's configurations are checked by its own test.
            if block.starts_with("# sync.toml") {
                continue;
            }
            // A fragment (one table) is checked inside the smallest whole file.
            let text = if block.contains("listen =") {
                block.clone()
            } else {
                format!("listen = \"127.0.0.1:8080\"\n{block}")
            };
            if let Err(err) = GatewayConfig::parse(&text, &doc) {
                panic!("a configuration in {name} does not load: {err}\n{block}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 2, "the docs show configurations");
    let example = root.join("examples/gateway.toml");
    GatewayConfig::load(&example).unwrap_or_else(|e| panic!("{e}"));
}
