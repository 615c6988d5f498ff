#!/usr/bin/env bash
# Build the production image, deploy/Containerfile (both stages), on a machine without a
# container registry: the two base images it names by default are replaced by local images
# imported from root filesystems made here, and passed as the Containerfile's build arguments.
#
#   BUILD_BASE    debootstrap --variant=minbase bookworm + gcc, libc6-dev, curl, ca-certificates,
#                 and rustup (the host's rustup binary run as rustup-init, no toolchain), with
#                 RUSTUP_HOME/CARGO_HOME/PATH set as in docker.io/library/rust
#   RUNTIME_BASE  the files of Debian's libc6 and libgcc-s1 packages from that same rootfs, the
#                 CA bundle, /etc/passwd and /tmp: what gcr.io/distroless/cc-debian12 is made of
#
# The build stage then does what it does against the real bases: installs the pinned toolchains
# from rustup's server, builds bpf-linker against the nightly's LLVM and the daemon in release
# mode from crates.io. That takes long on 2 cores (see deploy/README.md for a measured run),
# which is why no default test runs this script.
#
# Usage: deploy/build-image.sh [TAG]          (default localhost/monitor:dev)
# Environment:
#   WORK=DIR      where the root filesystems are kept between runs (default /var/tmp/monitor-image)
#   MIRROR=URL    Debian mirror for debootstrap (default http://deb.debian.org/debian)
#   REBUILD_BASES=1   rebuild the two base images even when they exist
# The host's extra CA certificates (/usr/local/share/ca-certificates) are added to the build
# base, so that a TLS-inspecting proxy the host trusts is trusted in the build stage too.
#   CHECK=1       after the build, run the image's binary (`monitor --version`, `rules check`)
# Needs root, debootstrap, podman and git. Prints the time of each step.
set -euo pipefail

TAG=${1:-localhost/monitor:dev}
WORK=${WORK:-/var/tmp/monitor-image}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
BUILD_BASE=localhost/monitor-build-base:bookworm
RUNTIME_BASE=localhost/monitor-runtime-base:bookworm
# crun fails on this machine's hybrid cgroups; runc works (see /work/shared/ENVIRONMENT.md).
PODMAN=(podman --cgroup-manager=cgroupfs --runtime runc)

log() { printf '[build-image] %s\n' "$*" >&2; }
die() { printf '[build-image] ERROR: %s\n' "$*" >&2; exit 1; }
step_start() { STEP_T0=$(date +%s); log "$1"; }
step_end() { log "$1 took $(( $(date +%s) - STEP_T0 )) s"; }

[ "$(id -u)" = 0 ] || die "run as root (debootstrap and podman import need it)"
for c in debootstrap podman git tar; do
  command -v "$c" >/dev/null || die "$c is missing (apt-get install $c)"
done
RUSTUP_BIN=$(command -v rustup) || die "rustup is missing on the host; its binary seeds the build base"
REPO=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
mkdir -p "$WORK"
T_ALL=$(date +%s)

image_exists() { "${PODMAN[@]}" image exists "$1"; }

import_dir() { # DIR NAME [--change ...]
  local dir=$1 name=$2; shift 2
  tar -C "$dir" -c . | "${PODMAN[@]}" import "$@" - "$name" >/dev/null
}

ROOT="$WORK/bookworm"
if [ -n "${REBUILD_BASES:-}" ] || ! image_exists "$BUILD_BASE"; then
  step_start "debootstrap minbase bookworm into $ROOT"
  if [ ! -x "$ROOT/usr/bin/gcc" ]; then
    rm -rf "$ROOT"
    debootstrap --variant=minbase \
      --include=ca-certificates,curl,gcc,libc6-dev,make,pkg-config \
      bookworm "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
      || die "debootstrap failed; see $WORK/debootstrap.log"
  fi
  step_end "debootstrap"

  # The host's own trust anchors (e.g. a TLS-inspecting egress proxy's CA, as on the build
  # machines here): without them rustup and cargo inside the build cannot reach their servers.
  if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
    mkdir -p "$ROOT/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
    chroot "$ROOT" update-ca-certificates >/dev/null || die "update-ca-certificates in the build base failed"
    log "trusting the host's extra CAs: $(cd /usr/local/share/ca-certificates && echo *.crt)"
  fi
  step_start "installing rustup (no toolchain) into the build base"
  install -m 0755 "$RUSTUP_BIN" "$ROOT/tmp/rustup-init"
  mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
  trap 'umount "$ROOT/proc" 2>/dev/null || true' EXIT
  chroot "$ROOT" env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo \
    /tmp/rustup-init -y --no-modify-path --default-toolchain none --profile minimal >/dev/null \
    || die "rustup-init in the build base failed"
  umount "$ROOT/proc"
  trap - EXIT
  rm -f "$ROOT/tmp/rustup-init"
  # debootstrap leaves apt lists and debs behind; the image does not need them.
  rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/*
  import_dir "$ROOT" "$BUILD_BASE" \
    --change 'ENV RUSTUP_HOME=/usr/local/rustup' \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
  step_end "build base $BUILD_BASE"
fi

if [ -n "${REBUILD_BASES:-}" ] || ! image_exists "$RUNTIME_BASE"; then
  step_start "assembling the glibc runtime base from $ROOT"
  [ -d "$ROOT/var/lib/dpkg/info" ] || die "$ROOT is missing; rerun with REBUILD_BASES=1"
  RT="$WORK/runtime"
  rm -rf "$RT"
  mkdir -p "$RT"/{etc,tmp,proc,sys,dev,run,var/run,usr/lib,usr/bin,usr/sbin}
  # bookworm is merged-/usr: /lib, /lib64, /bin, /sbin are symlinks the package lists go through.
  for l in bin sbin lib lib64; do
    if [ -L "$ROOT/$l" ]; then cp -a "$ROOT/$l" "$RT/$l"; mkdir -p "$RT/$(readlink "$ROOT/$l")"; fi
  done
  chmod 1777 "$RT/tmp"
  lists=()
  for p in libc6 libgcc-s1; do
    f=
    for cand in "$ROOT"/var/lib/dpkg/info/"$p"{,:amd64,:arm64}.list; do
      [ -f "$cand" ] && { f=$cand; break; }
    done
    [ -n "$f" ] || die "package $p is not in $ROOT"
    lists+=("$f")
  done
  # Files and symlinks of those packages (directories come with them); the CA bundle for the
  # webhook sink's TLS and the identity files a glibc binary looks up.
  { cat "${lists[@]}" | while read -r f; do
      [ -f "$ROOT$f" ] || [ -L "$ROOT$f" ] && printf '%s\n' ".$f"
    done
    printf '%s\n' ./etc/ssl/certs/ca-certificates.crt ./etc/os-release ./usr/lib/os-release
  } | tar -C "$ROOT" -c --no-recursion -T - | tar -C "$RT" -x
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$RT/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$RT/etc/group"
  import_dir "$RT" "$RUNTIME_BASE"
  step_end "runtime base $RUNTIME_BASE ($(du -sh "$RT" | cut -f1))"
fi

# The build context: the working tree as git sees it, tracked and new files but nothing
# ignored (no target/), so a file not yet committed is not silently left out.
CTX=$(mktemp -d "$WORK/context.XXXXXX")
trap 'rm -rf "$CTX"' EXIT
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
  | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
  | tar --null -T - -c) | tar -C "$CTX" -x

step_start "podman build -f deploy/Containerfile (build stage: toolchains, bpf-linker, release build)"
"${PODMAN[@]}" build \
  --network=host \
  --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 \
  --build-arg BUILD_BASE="$BUILD_BASE" \
  --build-arg RUNTIME_BASE="$RUNTIME_BASE" \
  -f "$CTX/deploy/Containerfile" -t "$TAG" "$CTX" \
  || die "podman build failed"
step_end "podman build"

log "image $TAG: $("${PODMAN[@]}" image inspect -f '{{.Size}} bytes, id {{.Id}}' "$TAG")"
if [ -n "${CHECK:-}" ]; then
  step_start "running the image's binary"
  "${PODMAN[@]}" run --rm --network=none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
    --entrypoint /usr/bin/monitor "$TAG" --version
  "${PODMAN[@]}" run --rm --network=none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
    --entrypoint /usr/bin/monitor "$TAG" rules check /etc/monitor/rules.d
  step_end "image check"
fi
log "done in $(( $(date +%s) - T_ALL )) s"
