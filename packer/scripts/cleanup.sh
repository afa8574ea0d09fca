#!/bin/bash
# Leaves the image ready for capture: no upload leftovers, no package caches, and no
# cloud-init state, so that customData runs again on every VM made from the image.
# (On Azure the VM agent's deprovisioning runs after this, as the last step.)
set -euo pipefail
rm -rf "${UPLOAD_DIR:-/tmp/gvisor-bootstrap-upload}"
if command -v apt-get >/dev/null; then
  apt-get clean
  rm -rf /var/lib/apt/lists/*
fi
if command -v cloud-init >/dev/null; then
  cloud-init clean --logs --seed || rm -rf /var/lib/cloud
else
  rm -rf /var/lib/cloud
fi
# Every VM gets its own machine-id on first boot.
if [[ -e /etc/machine-id ]]; then
  truncate -s 0 /etc/machine-id
fi
rm -f /var/lib/dbus/machine-id
sync
