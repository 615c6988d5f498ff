//! Compiles `monitor-ebpf` for the BPF target and embeds it (see `bpf::load`).
//! The eBPF crate needs the pinned nightly (rust-src, -Z build-std) and bpf-linker built against
//! that nightly's LLVM; `scripts/setup.sh` installs both.

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

/// Keep in sync with NIGHTLY_PIN in scripts/setup.sh.
const EBPF_TOOLCHAIN: &str = "nightly-2026-10-30";

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?;
    let root = std::path::Path::new(&manifest_dir)
        .parent()
        .ok_or_else(|| anyhow!("monitor/ has no parent"))?
        .join("monitor-ebpf");
    let root = root.to_str().ok_or_else(|| anyhow!("non-UTF-8 path {root:?}"))?;
    aya_build::build_ebpf(
        [Package { name: "monitor-ebpf", root_dir: root, ..Default::default() }],
        Toolchain::Custom(EBPF_TOOLCHAIN),
    )
    .context("building monitor-ebpf (run scripts/setup.sh to install the nightly and bpf-linker)")
}
