#!/usr/bin/env bash
# Builds the real Kubernetes the e2e cluster runs (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kubectl) and etcd, from the Go module proxy.
#
# Same store as build-binaries.sh, keyed by name and version:
#   ${GVB_STORE:-/var/cache/gvisor-bootstrap-test}/<name>-<version>/<files>
# built once per machine (a per-version flock makes concurrent clones wait for one build),
# renamed into place only when complete, hard-linked into the clone's .cache/bin with a
# <name>.version stamp. Nothing here is committed.
#
# Why not `go install`: k8s.io/kubernetes replaces its 33 staging modules with
# ./staging/src/k8s.io/... paths that its module zip does not contain, and etcd's server
# module has replace directives (field-facts §8). So:
#   kubernetes: a writable copy of the module with those replaces dropped and the published
#               k8s.io/* v0.X.Y modules required instead;
#   etcd:       a wrapper module whose main calls etcdmain.Main, as etcd's own server/main.go.
# Cold: ~16 min wall for Kubernetes on 2 busy cores, ~1 min for etcd; warm: nothing.
# Usage: test/tools/build-k8s.sh [kubernetes] [etcd]   (default: both)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CACHE="${GVB_CACHE:-$ROOT/.cache}"
BIN="$CACHE/bin"
STORE="${GVB_STORE:-/var/cache/gvisor-bootstrap-test}"
mkdir -p "$BIN" "$STORE/build"

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.7.3}"
K8S_COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)

export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:-} -trimpath -mod=mod"

log() { printf '[build-k8s] %s\n' "$*" >&2; }

# stored NAME VERSION BUILDER: as in build-binaries.sh — build once into a temporary
# directory, rename it into the store when complete, link its files into BIN, stamp the version.
stored() {
  local name="$1" version="$2" builder="$3" dir tmp f lockfd
  dir="$STORE/$name-$version"
  exec {lockfd}>"$STORE/build/$name-$version.lock"
  flock "$lockfd"
  if [[ ! -f "$dir/.complete" ]]; then
    tmp="$(mktemp -d "$STORE/build/$name.XXXXXX")"
    log "building $name $version (log: this output)"
    local t0=$SECONDS
    if ! "$builder" "$tmp"; then rm -rf "$tmp"; log "building $name $version failed"; return 1; fi
    touch "$tmp/.complete"; chmod 755 "$tmp"
    rm -rf "$dir"; mv "$tmp" "$dir"
    log "built $name $version in $((SECONDS - t0)) s"
  fi
  for f in "$dir"/*; do
    ln -f "$f" "$BIN/$(basename "$f")" 2>/dev/null || cp -f "$f" "$BIN/$(basename "$f")"
  done
  printf '%s\n' "$version" > "$BIN/$name.version"
  exec {lockfd}>&-
}

b_kubernetes() {
  local out="$1" mod src work minor staging m ldflags cmd
  mod="k8s.io/kubernetes@$K8S_VERSION"
  src="$(cd "$STORE/build" && go mod download -json "$mod" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
  [[ -n "$src" && -f "$src/go.mod" ]] || { log "cannot download $mod from the module proxy"; return 1; }
  work="$(mktemp -d "$STORE/build/kubernetes-src.XXXXXX")"
  cp -r "$src/." "$work/"
  chmod -R u+w "$work"
  rm -rf "$work/vendor" "$work"/go.work*
  # The staging modules are published as k8s.io/<name> v0.<minor>.<patch>.
  minor="${K8S_VERSION#v1.}"; staging="v0.$minor"
  ( cd "$work"
    for m in $(sed -nE 's#^[[:space:]]*(replace[[:space:]]+)?(k8s\.io/[^[:space:]]+)[[:space:]]+=>[[:space:]]+\./staging/.*#\2#p' go.mod | sort -u); do
      case "$m" in
        # not served at this version (403) and no command we build imports them
        k8s.io/sample-cli-plugin|k8s.io/sample-controller) go mod edit -dropreplace="$m" -droprequire="$m" ;;
        *) go mod edit -dropreplace="$m" -require="$m@$staging" ;;
      esac
    done
    if grep -q '=> ./staging/' go.mod; then log "staging replaces left in go.mod"; grep '=> ./staging/' go.mod >&2; exit 1; fi
    # without these, --version says v0.0.0-master
    ldflags="-s -w"
    for m in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
      ldflags+=" -X $m.gitVersion=$K8S_VERSION -X $m.gitMajor=1 -X $m.gitMinor=${minor%%.*} -X $m.gitTreeState=clean"
    done
    for cmd in "${K8S_COMMANDS[@]}"; do
      log "go build ./cmd/$cmd"
      go build -tags selinux,notest,grpcnotrace -ldflags "$ldflags" -o "$out/$cmd" "./cmd/$cmd" || exit 1
    done ) || { rm -rf "$work"; return 1; }
  rm -rf "$work"
}

b_etcd() {
  local out="$1" work m
  work="$(mktemp -d "$STORE/build/etcd-src.XXXXXX")"
  cat > "$work/main.go" <<'EOF'
// etcd's server binary: the same entry point as etcd's own server/main.go.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  ( cd "$work"
    go mod init gvisor-bootstrap.test/etcd >/dev/null 2>&1
    for m in server/v3 api/v3 client/pkg/v3 client/v3 pkg/v3; do
      go mod edit -require="go.etcd.io/etcd/$m@$ETCD_VERSION"
    done
    go build -ldflags "-s -w" -o "$out/etcd" . ) || { rm -rf "$work"; return 1; }
  rm -rf "$work"
}

build_kubernetes() { stored kubernetes "$K8S_VERSION" b_kubernetes; }
build_etcd() { stored etcd "$ETCD_VERSION" b_etcd; }

targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(etcd kubernetes)
for t in "${targets[@]}"; do "build_$t"; done
log "stored in $STORE, linked into $BIN"
