#!/bin/bash
# Regenerates the committed manifests/ and cloud-init/ files from the built-in defaults
# (and cloud-init/example.toml for the customData that downloads the binary), exactly as
# `gvisor-bootstrap render` prints them. bootstrap/render's TestCommittedFilesMatchRender
# fails when they drift. Run by `make render`.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
# Built here without the Makefile's ldflags: the committed files name the image tag of an
# unversioned build (:dev), as the in-process defaults the drift test compares with do.
bin=${GVB_BIN:-}
if [[ -z $bin ]]; then
  bin=$(mktemp -d)/gvisor-bootstrap
  CGO_ENABLED=0 go build -o "$bin" ./cmd/gvisor-bootstrap
fi
# An empty root: no config file under it, so only the built-in defaults apply (a
# developer's own /etc/gvisor-bootstrap/config.toml must not leak into the files).
empty=$(mktemp -d)
trap 'rm -rf "$empty"' EXIT
defaults=(--root "$empty")
example=(--root "$repo" --config /cloud-init/example.toml)

"$bin" render runtimeclass "${defaults[@]}" -o manifests/runtimeclass.yaml
"$bin" render daemonset "${defaults[@]}" -o manifests/daemonset.yaml
"$bin" render config "${defaults[@]}" -o manifests/config.toml
"$bin" render cloud-init "${example[@]}" -o cloud-init/customdata.yaml
"$bin" render cloud-init --baked "${defaults[@]}" -o cloud-init/customdata-baked.yaml
