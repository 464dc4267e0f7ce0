//! Every gateway configuration shown in the docs and examples loads as it is.

use std::path::Path;

use tollgate_config::toml_blocks;
use tollgate_gateway::config::GatewayConfig;

#[test]
fn the_configurations_in_the_docs_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let doc = root.join("docs/gateway.md");
    let blocks = toml_blocks(&std::fs::read_to_string(&doc).unwrap());
    let gateway_blocks: Vec<_> = blocks.iter().filter(|b| b.contains("listen =")).collect();
    assert!(
        !gateway_blocks.is_empty(),
        "docs/gateway.md shows a configuration"
    );
    for block in gateway_blocks {
        if let Err(err) = GatewayConfig::parse(block, &doc) {
            panic!("a configuration in docs/gateway.md does not load: {err}\n{block}");
        }
    }
    let example = root.join("examples/gateway.toml");
    GatewayConfig::load(&example).unwrap_or_else(|e| panic!("{e}"));
}
