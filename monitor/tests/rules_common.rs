//! Helpers shared by the rules_* integration tests (included with `mod rules_common;`).
#![allow(dead_code)]

use std::path::PathBuf;

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `<workspace>/../shared/third_party/falcosecurity-rules`, or `$MONITOR_SHARED_DIR/...`.
/// `None` (with a printed reason) when absent: the test then skips.
pub fn falco_rules_dir() -> Option<PathBuf> {
    let base = std::env::var_os("MONITOR_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("..").join("shared"));
    let dir = base.join("third_party").join("falcosecurity-rules");
    if dir.join("falco_rules.yaml").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "SKIP: Falco rule files not found at {} (set MONITOR_SHARED_DIR)",
            dir.display()
        );
        None
    }
}
