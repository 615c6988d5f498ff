#!/usr/bin/env bash
# The README's first command: set up (idempotent), build, start `monitor run` with the shipped
# rules, run a real runc container, misbehave inside it, and show the alerts and the metrics.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export RUSTUP_TOOLCHAIN=1.99.1
cargo build --locked -p monitor 2>&1 | tail -1

work=$(mktemp -d /tmp/monitor-demo.XXXXXX)
id=$(head -c 32 /dev/urandom | sha256sum | cut -c1-64)
addr=127.0.0.1:9376
cleanup() {
  runc kill "$id" KILL >/dev/null 2>&1 || true
  sleep 0.3; runc delete -f "$id" >/dev/null 2>&1 || true
  [ -n "${mon:-}" ] && kill -TERM "$mon" 2>/dev/null && wait "$mon" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== starting monitor run (shipped rules, alerts -> $work/alerts.json, metrics on $addr)"
./target/debug/monitor run --metrics-address "$addr" > "$work/alerts.json" 2> "$work/monitor.log" &
mon=$!
for _ in $(seq 1 100); do
  curl -fsS "http://$addr/readyz" >/dev/null 2>&1 && break
  kill -0 "$mon" 2>/dev/null || { cat "$work/monitor.log"; exit 1; }
  sleep 0.2
done
echo "   ready"

echo "== a real runc container (busybox rootfs), pod 'web-7f9c' in namespace 'shop'"
mkdir -p "$work/bundle/rootfs/bin" "$work/bundle/rootfs/etc" "$work/bundle/rootfs/tmp"
cp /bin/busybox "$work/bundle/rootfs/bin/busybox"
for a in sh cat cp chmod ls sleep nc wget id; do ln -sf busybox "$work/bundle/rootfs/bin/$a"; done
echo 'root:$6$demo$hash:19000:0:99999:7:::' > "$work/bundle/rootfs/etc/shadow"
(cd "$work/bundle" && runc spec)
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["sleep", "600"]
c["root"]["readonly"] = False
c["annotations"] = {
    "io.kubernetes.cri.container-type": "container",
    "io.kubernetes.cri.sandbox-name": "web-7f9c",
    "io.kubernetes.cri.sandbox-namespace": "shop",
    "io.kubernetes.cri.container-name": "web",
    "io.kubernetes.cri.image-name": "registry.example/shop/web:1.4.2",
}
json.dump(c, open(p, "w"))
PY
(cd "$work/bundle" && runc run -d "$id" >/dev/null 2>&1 </dev/null)

echo "== misbehaving inside it: an /etc/shadow read, a dropped binary run from /tmp, netcat to the metadata endpoint"
runc exec "$id" sh -c 'cat /etc/shadow >/dev/null' || true
runc exec "$id" sh -c 'cp /bin/busybox /tmp/ls && /tmp/ls / >/dev/null' || true
runc exec "$id" sh -c 'nc -w 1 169.254.169.254 80 </dev/null >/dev/null 2>&1' || true
sleep 1

echo "== alerts (JSON, Falco-compatible; one line each)"
jq -c '{time, rule, priority, output}' "$work/alerts.json" 2>/dev/null || cat "$work/alerts.json"
echo "== metrics (curl http://$addr/metrics | grep monitor_alerts_total)"
curl -fsS "http://$addr/metrics" | grep '^monitor_alerts_total' || true
