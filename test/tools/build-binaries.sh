#!/usr/bin/env bash
# Builds the real third-party binaries the tests run against (runsc, the runsc shim,
# containerd 1.7 and 2.x, crictl) from the Go module proxy and caches them under
# .cache/bin. A binary is rebuilt only when its pinned version below changes.
# Usage: test/tools/build-binaries.sh [name...]   (default: all)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CACHE="${GVB_CACHE:-$ROOT/.cache}"
BIN="$CACHE/bin"
mkdir -p "$BIN" "$CACHE/build"

# Pinned versions. gVisor publishes its Go-buildable tree (the "go" branch) as pseudo-versions;
# the proxy here refuses the branch name itself, so pin the newest one it serves.
GVISOR_REF="${GVISOR_REF:-v0.0.0-20260905035102-160fafc42237}"
CONTAINERD2_VERSION="${CONTAINERD2_VERSION:-v2.3.7}"
CONTAINERD17_VERSION="${CONTAINERD17_VERSION:-v1.7.35}"
CRICTL_VERSION="${CRICTL_VERSION:-v1.34.0}"

export CGO_ENABLED="${CGO_ENABLED:-0}"
export GOFLAGS="${GOFLAGS:-} -trimpath"

log() { printf '[build-binaries] %s\n' "$*" >&2; }

# stamp NAME VERSION: true when BIN/NAME was built from VERSION already.
fresh() { [[ -x "$BIN/$1" && -f "$BIN/$1.version" && "$(cat "$BIN/$1.version")" == "$2" ]]; }
mark() { printf '%s\n' "$2" > "$BIN/$1.version"; }

goinstall() { # goinstall OUTNAME PKG@VERSION [tags]
  local out="$1" pkg="$2" tags="${3:-}" tmp
  tmp="$(mktemp -d "$CACHE/build/gobin.XXXXXX")"
  log "building $out from $pkg"
  GOBIN="$tmp" go install ${tags:+-tags "$tags"} "$pkg"
  mv "$tmp"/* "$BIN/$out"
  rm -rf "$tmp"
}

build_runsc() {
  fresh runsc "$GVISOR_REF" && return
  goinstall runsc "gvisor.dev/gvisor/runsc@$GVISOR_REF"; mark runsc "$GVISOR_REF"
}
build_shim() {
  fresh containerd-shim-runsc-v1 "$GVISOR_REF" && return
  goinstall containerd-shim-runsc-v1 "gvisor.dev/gvisor/shim@$GVISOR_REF"; mark containerd-shim-runsc-v1 "$GVISOR_REF"
}
build_containerd2() {
  fresh containerd-2 "$CONTAINERD2_VERSION" && return
  goinstall containerd-2 "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD2_VERSION" no_btrfs
  goinstall ctr-2 "github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD2_VERSION" no_btrfs
  goinstall containerd-shim-runc-v2-2 "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD2_VERSION" no_btrfs
  mark containerd-2 "$CONTAINERD2_VERSION"
}
build_containerd17() {
  fresh containerd-1.7 "$CONTAINERD17_VERSION" && return
  # go install refuses containerd 1.7 (replace directives in its go.mod): build inside
  # its module folder instead.
  log "building containerd-1.7 from github.com/containerd/containerd@$CONTAINERD17_VERSION"
  local dir
  dir="$(cd "$CACHE/build" && GOFLAGS=-mod=mod go mod download -json "github.com/containerd/containerd@$CONTAINERD17_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
  (cd "$dir" && go build -tags no_btrfs -o "$BIN/containerd-1.7" ./cmd/containerd \
              && go build -tags no_btrfs -o "$BIN/ctr-1.7" ./cmd/ctr)
  mark containerd-1.7 "$CONTAINERD17_VERSION"
}
build_crictl() {
  fresh crictl "$CRICTL_VERSION" && return
  goinstall crictl "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"; mark crictl "$CRICTL_VERSION"
}

targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(containerd2 containerd17 crictl runsc shim)
for t in "${targets[@]}"; do "build_$t"; done
log "cached in $BIN"
