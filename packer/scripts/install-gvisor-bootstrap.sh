#!/bin/bash
# Installs the uploaded gvisor-bootstrap binary and config, then
# `gvisor-bootstrap install --units`: pre-fetches the pinned gVisor release into the
# image (from the uploaded release directory when there is one, over file://, so the
# build needs no access to the bucket) and installs and enables the systemd units.
# The first boot then needs no network, and the boot unit registers runsc before
# containerd first starts.
set -euo pipefail
fail() { echo "install-gvisor-bootstrap: $*" >&2; exit 1; }
upload=${UPLOAD_DIR:-/tmp/gvisor-bootstrap-upload}
bin=/usr/local/bin/gvisor-bootstrap

[[ -s $upload/gvisor-bootstrap ]] || fail "no binary at $upload/gvisor-bootstrap (packer variable binary_path)"
[[ -s $upload/config.toml ]] || fail "no config at $upload/config.toml (packer variable config_path)"
install -D -m 0755 "$upload/gvisor-bootstrap" "$bin"
install -D -m 0600 "$upload/config.toml" /etc/gvisor-bootstrap/config.toml # may hold a SAS URL
"$bin" version

args=(install --units)
if [[ -e $upload/release/runsc ]]; then
  args+=(--release-url "file://$upload/release")
fi
"$bin" "${args[@]}" || fail "$bin ${args[*]} failed (see above)"
systemctl daemon-reload || true   # no systemd manager when building in a chroot

# When containerd runs during the build, reconcile and verify now so that a broken image
# fails the build instead of a node. 10 = repaired and verified.
if systemctl is-active --quiet containerd.service; then
  rc=0
  "$bin" run || rc=$?
  [[ $rc == 0 || $rc == 10 ]] || fail "gvisor-bootstrap run exited $rc: the image would not serve runsc"
fi
