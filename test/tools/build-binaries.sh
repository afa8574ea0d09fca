#!/usr/bin/env bash
# Builds the real third-party binaries the tests run against (runsc, the runsc shim,
# containerd 1.7 and 2.x, crictl) from the Go module proxy.
#
# Each build lands once in a store outside the clone, keyed by name and version:
#   ${GVB_STORE:-/var/cache/gvisor-bootstrap-test}/<name>-<version>/<files>
# so a fresh clone on a machine that built them already builds nothing. The clone's
# .cache/bin holds hard links into the store (plus <name>.version stamps), which is
# what the tests and the e2e harness read.
# Usage: test/tools/build-binaries.sh [name...]   (default: all)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CACHE="${GVB_CACHE:-$ROOT/.cache}"
BIN="$CACHE/bin"
STORE="${GVB_STORE:-/var/cache/gvisor-bootstrap-test}"
mkdir -p "$BIN" "$STORE/build"

# Pinned versions. gVisor publishes its Go-buildable tree (the "go" branch) as pseudo-versions;
# the proxy here refuses the branch name itself, so pin the newest one it serves.
GVISOR_REF="${GVISOR_REF:-v0.0.0-20260905035102-160fafc42237}"
CONTAINERD2_VERSION="${CONTAINERD2_VERSION:-v2.3.7}"
CONTAINERD17_VERSION="${CONTAINERD17_VERSION:-v1.7.35}"
# Every containerd 2 minor line, for the merge-order tests (2.0-2.2 merge imports then
# migrate; 2.3+ migrate each file): containerd-2.N, next to containerd-2 (= 2.3).
CONTAINERD20_VERSION="${CONTAINERD20_VERSION:-v2.0.14}"
CONTAINERD21_VERSION="${CONTAINERD21_VERSION:-v2.1.9}"
CONTAINERD22_VERSION="${CONTAINERD22_VERSION:-v2.2.9}"
CONTAINERD24_VERSION="${CONTAINERD24_VERSION:-v2.4.2}"
CRICTL_VERSION="${CRICTL_VERSION:-v1.34.0}"

export CGO_ENABLED="${CGO_ENABLED:-0}"
export GOFLAGS="${GOFLAGS:-} -trimpath"

log() { printf '[build-binaries] %s\n' "$*" >&2; }

# stored NAME VERSION BUILDER: runs "BUILDER OUTDIR" once per NAME-VERSION into a temporary
# directory that is renamed into the store only when the build succeeded (an interrupted
# build leaves nothing that looks finished), then links every file it made into BIN and
# stamps BIN/NAME.version.
stored() {
  local name="$1" version="$2" builder="$3" dir tmp f
  dir="$STORE/$name-$version"
  exec {lockfd}>"$STORE/build/$name-$version.lock"
  flock "$lockfd"   # another clone building the same version: wait for its result
  if [[ ! -f "$dir/.complete" ]]; then
    tmp="$(mktemp -d "$STORE/build/$name.XXXXXX")"
    log "building $name $version"
    "$builder" "$tmp"
    touch "$tmp/.complete"
    rm -rf "$dir"; mv "$tmp" "$dir"
  fi
  for f in "$dir"/*; do
    ln -f "$f" "$BIN/$(basename "$f")" 2>/dev/null || cp -f "$f" "$BIN/$(basename "$f")"
  done
  printf '%s\n' "$version" > "$BIN/$name.version"
  exec {lockfd}>&-
}

goinstall() { # goinstall OUTDIR OUTNAME PKG@VERSION [tags]
  local dir="$1" out="$2" pkg="$3" tags="${4:-}" tmp
  tmp="$(mktemp -d "$STORE/build/gobin.XXXXXX")"
  GOBIN="$tmp" go install ${tags:+-tags "$tags"} "$pkg"
  mv "$tmp"/* "$dir/$out"
  rm -rf "$tmp"
}

# modbuild OUTDIR MODULE@VERSION OUT=PKG...: for modules `go install` refuses (replace or
# exclude directives in their go.mod), build inside the downloaded module folder.
modbuild() {
  local dir="$1" mod="$2" src pair; shift 2
  src="$(cd "$STORE/build" && GOFLAGS=-mod=mod go mod download -json "$mod" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
  [[ -n "$src" ]] || { log "cannot download $mod"; return 1; }
  for pair in "$@"; do
    (cd "$src" && GOFLAGS="$GOFLAGS -mod=mod" go build -tags no_btrfs -o "$dir/${pair%%=*}" "${pair#*=}")
  done
}

b_runsc() { goinstall "$1" runsc "gvisor.dev/gvisor/runsc@$GVISOR_REF"; }
b_shim() { goinstall "$1" containerd-shim-runsc-v1 "gvisor.dev/gvisor/shim@$GVISOR_REF"; }
b_containerd2() {
  goinstall "$1" containerd-2 "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD2_VERSION" no_btrfs
  goinstall "$1" ctr-2 "github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD2_VERSION" no_btrfs
  goinstall "$1" containerd-shim-runc-v2-2 "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD2_VERSION" no_btrfs
}
b_containerd17() {
  modbuild "$1" "github.com/containerd/containerd@$CONTAINERD17_VERSION" containerd-1.7=./cmd/containerd ctr-1.7=./cmd/ctr
}
# 2.0.14 and 2.1.9: `go install` refuses them (exclude/replace directives in go.mod).
b_containerd20() { modbuild "$1" "github.com/containerd/containerd/v2@$CONTAINERD20_VERSION" containerd-2.0=./cmd/containerd; }
b_containerd21() { modbuild "$1" "github.com/containerd/containerd/v2@$CONTAINERD21_VERSION" containerd-2.1=./cmd/containerd; }
b_containerd22() { goinstall "$1" containerd-2.2 "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD22_VERSION" no_btrfs; }
b_containerd24() { goinstall "$1" containerd-2.4 "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD24_VERSION" no_btrfs; }
b_crictl() { goinstall "$1" crictl "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"; }

build_runsc() { stored runsc "$GVISOR_REF" b_runsc; }
build_shim() { stored containerd-shim-runsc-v1 "$GVISOR_REF" b_shim; }
build_containerd2() { stored containerd-2 "$CONTAINERD2_VERSION" b_containerd2; }
build_containerd17() { stored containerd-1.7 "$CONTAINERD17_VERSION" b_containerd17; }
build_containerd20() { stored containerd-2.0 "$CONTAINERD20_VERSION" b_containerd20; }
build_containerd21() { stored containerd-2.1 "$CONTAINERD21_VERSION" b_containerd21; }
build_containerd22() { stored containerd-2.2 "$CONTAINERD22_VERSION" b_containerd22; }
build_containerd24() { stored containerd-2.4 "$CONTAINERD24_VERSION" b_containerd24; }
build_crictl() { stored crictl "$CRICTL_VERSION" b_crictl; }

targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(containerd2 containerd17 crictl runsc shim containerd20 containerd21 containerd22 containerd24)
for t in "${targets[@]}"; do "build_$t"; done
log "stored in $STORE, linked into $BIN"
