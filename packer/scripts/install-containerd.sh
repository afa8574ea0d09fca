#!/bin/bash
# Puts containerd into the image, per CONTAINERD_INSTALL:
#   none     the base image already has it (e.g. a Cluster API image-builder image)
#   apt      the distribution's package (containerd 1.7.x on Ubuntu 22.04 and 24.04)
#   tarball  an upstream release tarball (containerd 2.x) from CONTAINERD_URL, checked
#            against CONTAINERD_SHA256, with upstream's containerd.service
# and makes sure /etc/containerd/config.toml exists (gvisor-bootstrap edits it).
set -euo pipefail
fail() { echo "install-containerd: $*" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive

case "${CONTAINERD_INSTALL:-none}" in
none)
  command -v containerd >/dev/null || fail "CONTAINERD_INSTALL=none but the base image has no containerd; use apt or tarball"
  ;;
apt)
  apt-get update -q
  apt-get install -y -q containerd runc
  ;;
tarball)
  [[ -n ${CONTAINERD_URL:-} && ${CONTAINERD_SHA256:-} =~ ^[0-9a-f]{64}$ ]] ||
    fail "CONTAINERD_INSTALL=tarball needs containerd_url and containerd_sha256 (64 hex digits)"
  apt-get update -q
  apt-get install -y -q runc curl
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  curl -fsSL --retry 5 --retry-connrefused -o "$tmp/containerd.tar.gz" "$CONTAINERD_URL" ||
    fail "download of $CONTAINERD_URL failed"
  echo "$CONTAINERD_SHA256  $tmp/containerd.tar.gz" | sha256sum -c --quiet - ||
    fail "$CONTAINERD_URL does not have sha256 $CONTAINERD_SHA256"
  tar -C /usr/local -xzf "$tmp/containerd.tar.gz"
  # Upstream's unit (containerd.service in the containerd repository). KillMode=process
  # keeps running shims and pods alive across a containerd restart.
  cat >/etc/systemd/system/containerd.service <<'UNIT'
[Unit]
Description=containerd container runtime
Documentation=https://containerd.io
After=network.target local-fs.target dbus.service

[Service]
ExecStartPre=-/sbin/modprobe overlay
ExecStart=/usr/local/bin/containerd
Type=notify
Delegate=yes
KillMode=process
Restart=always
RestartSec=5
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
OOMScoreAdjust=-999

[Install]
WantedBy=multi-user.target
UNIT
  systemctl daemon-reload
  ;;
*)
  fail "CONTAINERD_INSTALL=${CONTAINERD_INSTALL}: want none, apt or tarball"
  ;;
esac

# kubelet runs with the systemd cgroup driver on cgroup v2: start from containerd's own
# defaults with SystemdCgroup on, unless the image already has a config.
if [[ ! -s /etc/containerd/config.toml ]]; then
  mkdir -p /etc/containerd
  containerd config default | sed 's/SystemdCgroup = false/SystemdCgroup = true/' >/etc/containerd/config.toml
fi
systemctl enable containerd.service
containerd --version
