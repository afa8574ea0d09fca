#!/usr/bin/env bash
# Healthy-node figures for `gvisor-bootstrap run` (called by `make bench` after the
# Go benchmarks): wall time (hyperfine median), file writes (strace), containerd
# restarts, peak RSS (/usr/bin/time). A temp node root holds the installed real
# runsc and shim and a real containerd 2.x serving the CRI under the root, so run
# does its CRI check; no systemd is reachable under a temp root, which run treats
# as "never restart" (the restart count below is the containerd PID staying put).
# Needs: hyperfine, strace, time (Debian packages), .cache/bin (build-binaries.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
CACHE=${GVB_TEST_BIN:-$REPO/.cache/bin}
RUNS=${BENCH_RUNS:-200}
OUT=${BENCH_OUT:-$REPO/test/bench/out}
mkdir -p "$OUT"
for tool in hyperfine strace /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is missing (apt-get install hyperfine strace time)" >&2; exit 1; }
done
BIN=$(mktemp -d /tmp/gvb-bench-bin.XXXX)/gvisor-bootstrap
CGO_ENABLED=0 go build -trimpath -o "$BIN" ./cmd/gvisor-bootstrap

R=$(mktemp -d /tmp/gvbb.XXXX)   # short: the CRI socket path must fit in 108 bytes
CD_PID=
cleanup() { [ -n "$CD_PID" ] && kill "$CD_PID" 2>/dev/null && wait "$CD_PID" 2>/dev/null; rm -rf "$R" "$(dirname "$BIN")"; }
trap cleanup EXIT

# A release directory (loose layout) with the real binaries and their sha512 files.
REL=$R/release; mkdir -p "$REL"
for f in runsc containerd-shim-runsc-v1; do
  cp "$CACHE/$f" "$REL/$f"
  (cd "$REL" && sha512sum "$f" > "$f.sha512")
done
mkdir -p "$R/etc/gvisor-bootstrap" "$R/etc/containerd" "$R/run/containerd"
cat > "$R/etc/gvisor-bootstrap/config.toml" <<TOML
[release]
version = "20260914.0"
url = "file://$REL"
arch = "x86_64"
TOML
cat > "$R/etc/containerd/config.toml" <<TOML
version = 2
root = "$R/var/lib/containerd"
state = "$R/run/containerd/state"

[grpc]
  address = "$R/run/containerd/containerd.sock"

[ttrpc]
  address = "$R/run/containerd/containerd.sock.ttrpc"

[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "mcr.microsoft.com/oss/kubernetes/pause:3.6"
[plugins."io.containerd.cri.v1.runtime".containerd]
  default_runtime_name = "runc"
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
  BinaryName = "/usr/bin/runc"
  SystemdCgroup = true
TOML

start_containerd() {
  "$CACHE/containerd-2" --config "$R/etc/containerd/config.toml" >"$R/containerd.log" 2>&1 &
  CD_PID=$!
  for _ in $(seq 200); do [ -S "$R/run/containerd/containerd.sock" ] && return; sleep 0.05; done
  echo "containerd did not start:" >&2; tail "$R/containerd.log" >&2; exit 1
}
start_containerd
# First run installs and registers runsc; with no systemd it cannot restart
# containerd, so it fails the CRI check (expected): restart containerd by hand.
"$BIN" --root "$R" run >/dev/null 2>&1 || true
kill "$CD_PID"; wait "$CD_PID" 2>/dev/null || true
start_containerd
"$BIN" --root "$R" run --json > "$OUT/healthy-run.json" 2>/dev/null || { echo "the node is not healthy:"; cat "$OUT/healthy-run.json"; exit 1; }
grep -q '"handler_in_cri": *true' "$OUT/healthy-run.json" || { echo "CRI does not serve runsc"; cat "$OUT/healthy-run.json"; exit 1; }
PID_BEFORE=$CD_PID

echo "== healthy node: gvisor-bootstrap run ($RUNS runs, hyperfine)"
hyperfine -N --warmup 10 --runs "$RUNS" --export-json "$OUT/healthy-hyperfine.json" \
  "$BIN --root $R run" >/dev/null
MEDIAN_MS=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print("%.2f"%(r["median"]*1000))' "$OUT/healthy-hyperfine.json")
MEAN_MS=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print("%.2f ± %.2f"%(r["mean"]*1000, r["stddev"]*1000))' "$OUT/healthy-hyperfine.json")

# Writes: every syscall that can change a file, with its path (strace -f).
strace -f -qq -e trace=openat,creat,rename,renameat,renameat2,unlink,unlinkat,mkdir,mkdirat,truncate,ftruncate,fchmod,fchmodat,utimensat,link,linkat,symlink,symlinkat \
  -o "$OUT/healthy-strace.txt" "$BIN" --root "$R" run >/dev/null 2>&1
grep -E 'O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|rename|unlink|mkdir|truncate|chmod|utimensat|link\(|symlink' "$OUT/healthy-strace.txt" \
  | grep -v ' = -1 ' > "$OUT/healthy-writes.txt" || true
WRITES_ALL=$(wc -l < "$OUT/healthy-writes.txt")
# fchmod/ftruncate act on the fd of the file opened just before; count paths only.
WRITES_PERSIST=$(grep -F "\"$R/" "$OUT/healthy-writes.txt" | grep -v -F "\"$R/run/" | wc -l || true)

# Peak RSS (KiB), median of 21.
RSS=$(for _ in $(seq 21); do /usr/bin/time -f %M "$BIN" --root "$R" run 2>&1 >/dev/null | tail -1; done | sort -n | sed -n 11p)

RESTARTS=0; [ "$CD_PID" = "$PID_BEFORE" ] && kill -0 "$CD_PID" || RESTARTS="containerd died"

echo "== deep verification (re-hash ~140 MB), for comparison: gvisor-bootstrap run --deep"
hyperfine -N --warmup 2 --runs 15 --export-json "$OUT/healthy-deep-hyperfine.json" "$BIN --root $R run --deep" >/dev/null
DEEP_MS=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print("%.1f"%(r["median"]*1000))' "$OUT/healthy-deep-hyperfine.json")

{
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "healthy run, median of $RUNS: ${MEDIAN_MS} ms (mean ${MEAN_MS} ms)  [target <= 20 ms]"
echo "healthy run --deep (re-hash), median of 15: ${DEEP_MS} ms"
echo "file-changing syscalls per healthy run: $WRITES_ALL in total, $WRITES_PERSIST outside /run (tmpfs)  [target 0]"
sed "s|$R||g; s/^[0-9]* */  /" "$OUT/healthy-writes.txt"
echo "containerd restarts: $RESTARTS  [target 0] (no systemd under a temp root: run never restarts there; PID unchanged)"
echo "peak RSS, median of 21: $((RSS / 1024)) MiB ($RSS KiB)  [target <= 30 MiB]"
} | tee "$OUT/healthy.txt"
