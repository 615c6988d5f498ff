#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine: pinned toolchains, bpf-linker built
# against the nightly's own LLVM, Debian packages, and the pseudo-filesystems the monitor needs.
# Every step checks before it acts, so running it again costs a few seconds.
set -euo pipefail

STABLE_PIN=1.99.1
NIGHTLY_PIN=nightly-2026-10-30
BPF_LINKER_VERSION=0.13.0
export RUSTUP_AUTO_INSTALL=0

log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# retry N CMD...: run CMD up to N times, waiting 5, 10, 20 ... s between attempts. Every
# download below goes through it: a fresh CI machine meets the odd network hiccup, and one
# failed download must not turn the whole run red.
retry() {
  local n=$1 i=1 delay=5
  shift
  until "$@"; do
    if [ "$i" -ge "$n" ]; then
      return 1
    fi
    log "attempt $i of $n failed ($*); again in ${delay}s"
    sleep "$delay"
    i=$((i + 1))
    delay=$((delay * 2))
  done
}

# cargo retries its own downloads (crates.io) this many times.
export CARGO_NET_RETRY=10

[ "$(id -u)" = 0 ] || die "run as root: the monitor loads eBPF programs and set-up installs packages"

install_toolchains() {
  command -v rustup >/dev/null || die "rustup is missing; this set-up expects the machine's rustup install"
  if ! rustup run "$STABLE_PIN" rustc --version >/dev/null 2>&1; then
    log "installing Rust $STABLE_PIN"
    retry 4 rustup toolchain install "$STABLE_PIN" --profile minimal --component clippy,rustfmt --no-self-update \
      || die "could not install Rust $STABLE_PIN from rustup's distribution server"
  fi
  if ! rustup run "$NIGHTLY_PIN" rustc --version >/dev/null 2>&1 \
     || [ ! -d "$(rustup run "$NIGHTLY_PIN" rustc --print sysroot)/lib/rustlib/src/rust/library" ]; then
    log "installing $NIGHTLY_PIN with rust-src (eBPF build)"
    retry 4 rustup toolchain install "$NIGHTLY_PIN" --profile minimal --component rust-src --no-self-update \
      || die "could not install $NIGHTLY_PIN from rustup's distribution server"
  fi
}

install_bpf_linker() {
  local nl stamp want
  nl="$(rustup run "$NIGHTLY_PIN" rustc --print sysroot)/lib"
  stamp="$HOME/.cargo/bpf-linker.$NIGHTLY_PIN"
  want="$BPF_LINKER_VERSION"
  if command -v bpf-linker >/dev/null && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
     && bpf-linker --version >/dev/null 2>&1; then
    return
  fi
  log "building bpf-linker $BPF_LINKER_VERSION against $NIGHTLY_PIN's LLVM (about a minute)"
  local pfx
  pfx=$(mktemp -d)
  mkdir -p "$pfx/lib"
  ln -s "$(ls "$nl"/libLLVM.so.* | head -1)" "$pfx/lib/libLLVM.so"
  LLVM_PREFIX="$pfx" RUSTFLAGS="-C link-arg=-Wl,-rpath,$nl" \
    retry 3 cargo +"$STABLE_PIN" install bpf-linker --version "$BPF_LINKER_VERSION" --locked --force \
    || die "bpf-linker build failed"
  echo "$want" > "$stamp"
  rm -rf "$pfx"
}

DEB_PACKAGES=(runc podman busybox-static prometheus bpftool iproute2 python3 python3-venv jq curl openssl containerd)
install_packages() {
  local missing=()
  for p in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # A fresh machine may still run its own apt (unattended upgrades at boot): wait for the
    # dpkg lock instead of failing on it, and retry the downloads.
    local apt=(apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)
    retry 4 "${apt[@]}" update -qq || die "apt-get update failed"
    retry 4 "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
      || die "apt-get install failed"
  fi
  # Debian's prometheus package starts a server on :9090 we do not want running.
  systemctl disable --now prometheus >/dev/null 2>&1 || true
  pkill -x prometheus-node-exporter >/dev/null 2>&1 || true
}

# kubernetes-validate (PyPI) checks deploy/ against the Kubernetes schema; kept in its own venv.
TOOLS_VENV=/opt/monitor-tools/venv
install_python_tools() {
  if [ ! -x "$TOOLS_VENV/bin/kubernetes-validate" ]; then
    log "installing kubernetes-validate into $TOOLS_VENV"
    # A half-made venv from an interrupted run is made again from scratch.
    rm -rf "$TOOLS_VENV"
    python3 -m venv "$TOOLS_VENV" || die "python3 -m venv failed"
    retry 4 "$TOOLS_VENV/bin/pip" install -q --retries 5 --timeout 60 kubernetes-validate \
      || die "pip install kubernetes-validate failed"
  fi
}

mount_pseudo_fs() {
  mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing || log "tracefs mount failed"
  mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf || log "bpffs mount failed"
  mountpoint -q /sys/kernel/security || mount -t securityfs securityfs /sys/kernel/security || log "securityfs mount failed"
}

install_toolchains
install_bpf_linker
install_packages
install_python_tools
mount_pseudo_fs
log "ready: Rust $STABLE_PIN, $NIGHTLY_PIN, bpf-linker $BPF_LINKER_VERSION"
