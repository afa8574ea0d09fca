#!/usr/bin/env bash
# First install from the release bundle (called by `make bench`): gvisor-bootstrap
# install against the shell way, `sha512sum -c && tar -xjf && sync`, and against
# lbzip2 (parallel) in its place, from file:// and from a loopback server pacing
# each response at 100 MB/s; plus the bare transfer (curl -o) of the bundle.
# The bundle is the real runsc and shim of .cache/bin packed with `tar -cjf`.
# Every variant starts from an empty target and after a `sync`; the variants are
# alternated within each round; figures are medians of the rounds.
# Needs: lbzip2, curl, time (Debian packages), .cache/bin (build-binaries.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
CACHE=${GVB_TEST_BIN:-$REPO/.cache/bin}
ROUNDS=${BENCH_BUNDLE_ROUNDS:-5}
RATE=${BENCH_RATE:-100000000}
OUT=${BENCH_OUT:-$REPO/test/bench/out}
mkdir -p "$OUT"
for tool in lbzip2 curl /usr/bin/time sha512sum python3; do
  command -v "$tool" >/dev/null || { echo "bundle.sh: $tool is missing (apt-get install lbzip2 curl time)" >&2; exit 1; }
done
for f in runsc containerd-shim-runsc-v1; do
  [ -x "$CACHE/$f" ] || { echo "bundle.sh: $CACHE/$f is missing (make tools)" >&2; exit 1; }
done

W=$(mktemp -d /tmp/gvb-bundle.XXXX)
SRV_PID=
cleanup() { [ -n "$SRV_PID" ] && kill "$SRV_PID" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
CGO_ENABLED=0 go build -trimpath -o "$W/gvisor-bootstrap" ./cmd/gvisor-bootstrap
go build -o "$W/pacedserve" ./test/bench/pacedserve
BIN=$W/gvisor-bootstrap

# The bundle, packed once per runsc build (bzip2 -9 of 137 MB takes a while).
REL=${GVB_CACHE:-$REPO/.cache}/bench-bundle
if [ ! -s "$REL/gvisor.tar.bz2.sha512" ] || [ "$CACHE/runsc" -nt "$REL/gvisor.tar.bz2" ] || [ "$CACHE/containerd-shim-runsc-v1" -nt "$REL/gvisor.tar.bz2" ]; then
  rm -rf "$REL"; mkdir -p "$REL" "$W/src"
  cp "$CACHE/runsc" "$CACHE/containerd-shim-runsc-v1" "$W/src/"
  tar -cjf "$REL/gvisor.tar.bz2.tmp" -C "$W/src" runsc containerd-shim-runsc-v1
  mv "$REL/gvisor.tar.bz2.tmp" "$REL/gvisor.tar.bz2"
  (cd "$REL" && sha512sum gvisor.tar.bz2 > gvisor.tar.bz2.sha512)
  rm -rf "$W/src"
fi
DIGEST=$(cut -d' ' -f1 "$REL/gvisor.tar.bz2.sha512")
COMP=$(stat -c %s "$REL/gvisor.tar.bz2")
RAW=$(( $(stat -c %s "$CACHE/runsc") + $(stat -c %s "$CACHE/containerd-shim-runsc-v1") ))

"$W/pacedserve" -dir "$REL" -rate "$RATE" -max 2h >"$W/url" 2>"$W/pacedserve.log" &
SRV_PID=$!
for _ in $(seq 100); do [ -s "$W/url" ] && break; sleep 0.05; done
URL=$(head -1 "$W/url")
curl -sf -o /dev/null "$URL/gvisor.tar.bz2.sha512" || { echo "paced server not answering:"; cat "$W/pacedserve.log"; exit 1; }

# One config per source. Plain http needs the digest pinned (the tool refuses
# an unpinned plain-HTTP release); it hashes the download all the same.
cfg() { # root url [pin]
  mkdir -p "$1/etc/gvisor-bootstrap"
  { echo '[release]'; echo 'version = "20260914.0"'; echo "url = \"$2\""; echo 'arch = "x86_64"'
    if [ -n "${3:-}" ]; then echo '[release.sha512]'; echo "\"gvisor.tar.bz2\" = \"$3\""; fi; } > "$1/etc/gvisor-bootstrap/config.toml"
}

declare -A CMD
CMD[file_tool]="$BIN --root $W/t install >/dev/null 2>\$W/err"
CMD[file_tool1]="GOMAXPROCS=1 $BIN --root $W/t install >/dev/null 2>\$W/err"
CMD[file_tar]="cd $REL && sha512sum -c --quiet gvisor.tar.bz2.sha512 && tar -xjf gvisor.tar.bz2 -C $W/t && sync"
CMD[file_lbzip2]="cd $REL && sha512sum -c --quiet gvisor.tar.bz2.sha512 && lbzip2 -dc gvisor.tar.bz2 | tar -x -C $W/t && sync"
CMD[http_curl]="curl -sf -o $W/t/gvisor.tar.bz2 $URL/gvisor.tar.bz2"
CMD[http_tool]="$BIN --root $W/t install >/dev/null 2>\$W/err"
CMD[http_tar]="cd $W/t && curl -sfO $URL/gvisor.tar.bz2.sha512 && curl -sfO $URL/gvisor.tar.bz2 && sha512sum -c --quiet gvisor.tar.bz2.sha512 && tar -xjf gvisor.tar.bz2 -C $W/t && sync"
CMD[http_lbzip2]="cd $W/t && curl -sfO $URL/gvisor.tar.bz2.sha512 && curl -sfO $URL/gvisor.tar.bz2 && sha512sum -c --quiet gvisor.tar.bz2.sha512 && lbzip2 -dc gvisor.tar.bz2 | tar -x -C $W/t && sync"
ORDER=(file_tool file_tar file_lbzip2 file_tool1 http_curl http_tool http_tar http_lbzip2)

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
: > "$OUT/bundle-runs.txt"
for round in $(seq "$ROUNDS"); do
  for v in "${ORDER[@]}"; do
    rm -rf "$W/t"; mkdir -p "$W/t"
    case $v in
      file_tool*) cfg "$W/t" "file://$REL" ;;
      http_tool) cfg "$W/t" "$URL" "$DIGEST" ;;
    esac
    sync
    W=$W /usr/bin/time -f "%e %M" -o "$W/time" bash -c "${CMD[$v]}" || { echo "$v failed:"; cat "$W/err" 2>/dev/null; exit 1; }
    case $v in *tool*) [ -x "$W/t/usr/local/bin/runsc" ] || { echo "$v installed no runsc"; exit 1; } ;; esac
    echo "$round $v $(cat "$W/time")" >> "$OUT/bundle-runs.txt"
  done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$OUT/bundle-runs.txt" "$(nproc)" "$COMP" "$RAW" "$RATE" "$ROUNDS" "$LOAD_START" "$LOAD_END" <<'PY' | tee "$OUT/bundle.txt"
import statistics, sys
runs, cores, comp, raw, rate, rounds, l0, l1 = sys.argv[1:]
wall, rss = {}, {}
for line in open(runs):
    _, v, e, m = line.split()
    wall.setdefault(v, []).append(float(e)); rss.setdefault(v, []).append(int(m))
med = {v: statistics.median(x) for v, x in wall.items()}
mb = lambda n: int(n) / 1e6
print(f"machine: {cores} cores (nproc); load average {l0} at the start, {l1} at the end (shared machine)")
print(f"bundle: {mb(comp):.1f} MB compressed (tar -cjf of the real runsc + shim), {mb(raw):.1f} MB unpacked; medians of {rounds} rounds, variants alternated")
print(f"{'':44}{'file://':>10}{'http ' + str(int(float(rate)/1e6)) + ' MB/s':>16}")
rows = [("gvisor-bootstrap install", "file_tool", "http_tool"),
        ("sha512sum -c && tar -xjf && sync", "file_tar", "http_tar"),
        ("sha512sum -c && lbzip2 -dc | tar -x && sync", "file_lbzip2", "http_lbzip2"),
        ("gvisor-bootstrap install, GOMAXPROCS=1", "file_tool1", None),
        ("curl -o (the transfer alone)", None, "http_curl")]
for name, a, b in rows:
    fa = f"{med[a]:.2f} s" if a else "-"
    fb = f"{med[b]:.2f} s" if b else "-"
    print(f"{name:44}{fa:>10}{fb:>16}")
print(f"tool / tar -xjf: {med['file_tool']/med['file_tar']:.2f} (file://), {med['http_tool']/med['http_tar']:.2f} (http)  [target <= 0.55]")
print(f"tool / lbzip2:   {med['file_tool']/med['file_lbzip2']:.2f} (file://), {med['http_tool']/med['http_lbzip2']:.2f} (http)")
print(f"tool / transfer of the compressed bundle (http): {med['http_tool']/med['http_curl']:.2f}  [target <= 1.10]")
print(f"scaling: GOMAXPROCS=1 / default = {med['file_tool1']/med['file_tool']:.2f}")
r = sorted(rss['file_tool'] + rss['http_tool'])
print(f"tool peak RSS: median {statistics.median(r)/1024:.1f} MiB, max {max(r)/1024:.1f} MiB  [target <= 64 MiB]")
PY
