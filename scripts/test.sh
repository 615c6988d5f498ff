#!/usr/bin/env bash
# The one test command (README, .ci/run): set-up (idempotent), then every tier of tests.
#   tier 1: unit tests, decoder round-trips, rule fixtures (no root needed)
#   tier 2: root + real kernel + real containers (tests/), run serially: the tests share the
#           node's global tracepoints and key their assertions on their own cgroups and pids.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export RUSTUP_TOOLCHAIN=1.99.1
export CARGO_TERM_COLOR=never
export KUBERNETES_VALIDATE=/opt/monitor-tools/venv/bin/kubernetes-validate
# crates.io downloads: cargo retries each one itself, and the fetch below is retried whole.
export CARGO_NET_RETRY=10

echo "== fetch dependencies"
for attempt in 1 2 3 4; do
  if cargo fetch --locked; then
    break
  fi
  if [ "$attempt" = 4 ]; then
    echo "cargo fetch failed $attempt times" >&2
    exit 1
  fi
  sleep $((attempt * 10))
done

echo "== build"
cargo build --workspace --exclude monitor-ebpf --locked

echo "== shipped rules load without warnings"
./target/debug/monitor rules check --deny-warnings rules/

echo "== tier 1: unit tests"
cargo test --workspace --exclude monitor-ebpf --exclude monitor-tests --locked --no-fail-fast

echo "== tier 2: end-to-end (root, real kernel, real containers)"
cargo test -p monitor-tests --locked --no-fail-fast -- --test-threads=1
