#!/usr/bin/env bash
# Builds the e2e guest images (cached under .cache/e2e/images, rebuilt only when an input
# changes):
#   base root   debootstrap bookworm with base-packages.txt         (key: package list + this step;
#               kept in the machine's test store, not the clone)
#   c2          base + containerd 2.x, runc, crictl, images, harness units, version = 3 config
#   c17         base + containerd 1.7, AKS/Ubuntu 22.04 shape (version = 2, SystemdCgroup)
# Each variant is a raw ext4 disk (mkfs.ext4 -d), booted with the base's kernel and initrd;
# scenarios boot qcow2 overlays of it, so every scenario is a fresh boot of the same disk.
#   k8s         c2 + a real kubelet and CNI (guest-k8s/customize.sh), for the k8s-* scenarios
# Usage: build-image.sh [c2|c17|k8s]...   (default: both). Prints nothing on stdout.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$E2E_DIR/guest-k8s/customize.sh"
MIRROR="${E2E_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DISK_SIZE="${E2E_DISK_SIZE:-6G}"
E2E_ROOT_PASSWORD="${E2E_ROOT_PASSWORD:-e2e-local-only-password}"

BASE_STEP_VERSION=1 # bump when build_base changes what it makes
base_key() { echo "$(hash_of "$E2E_DIR/base-packages.txt")-$BASE_STEP_VERSION-$(basename "$MIRROR")" | sha256sum | cut -c1-16; }

# The base root is the same for every clone of the same inputs, and debootstrap is minutes:
# it is kept in the machine's test store next to the binaries (test/tools/build-binaries.sh),
# built under a per-key flock into a temporary directory renamed into place when complete.
BASE_STORE="${GVB_STORE:-/var/cache/gvisor-bootstrap-test}/e2e"
build_base() { # -> prints the base root dir
  local key dir tmp pk t0 lockfd old
  key="$(base_key)"; dir="$BASE_STORE/base-$key"
  mkdir -p "$BASE_STORE"
  exec {lockfd}>"$BASE_STORE/base-$key.lock"
  flock "$lockfd"   # another clone building the same base: wait for its result
  if [[ ! -f "$dir/done" ]]; then
    # bases of other inputs (1.2 GB each) go once a day has passed without their use
    for old in "$BASE_STORE"/base-*/; do
      [[ "${old%/}" != "$dir" && -n "$(find "$old" -maxdepth 0 -mtime +0)" ]] && rm -rf "${old%/}"
    done
    tmp="$dir.tmp"; rm -rf "$tmp"; mkdir -p "$tmp"
    pk="$(grep -v '^#' "$E2E_DIR/base-packages.txt" | paste -sd, -)"
    say "debootstrap bookworm (packages: $pk) -> $dir (log: $LOGS/debootstrap.log)"
    t0=$SECONDS
    debootstrap --variant=minbase --include="$pk" bookworm "$tmp/rootfs" "$MIRROR" >"$LOGS/debootstrap.log" 2>&1 \
      || { tail -20 "$LOGS/debootstrap.log" >&2; umount -R "$tmp/rootfs/proc" 2>/dev/null || true; die "debootstrap failed (see $LOGS/debootstrap.log)"; }
    # leave nothing mounted or cached in the root
    umount -R "$tmp/rootfs/proc" 2>/dev/null || true
    rm -rf "$tmp/rootfs/var/cache/apt/archives/"*.deb "$tmp/rootfs/var/lib/apt/lists/"*_Packages
    touch "$tmp/done"
    rm -rf "$dir"; mv "$tmp" "$dir"
    say "base root built in $((SECONDS - t0))s"
  fi
  touch "$dir"   # in use: not removed by another clone's build for a day
  exec {lockfd}>&-
  echo "$dir/rootfs"
}

need_bin() { [[ -x "$BIN/$1" ]] || die "missing $BIN/$1: run test/tools/build-binaries.sh (make tools)"; }

# variant_inputs VARIANT: what a variant's disk is made from (its cache key).
variant_inputs() {
  local v="$1"
  echo "base=$(base_key)"
  hash_of "$E2E_DIR/guest" "$E2E_DIR/build-image.sh" "$E2E_DIR/mkoci.sh" "$E2E_DIR/lib.sh"
  case "$v" in
    c2) cat "$BIN/containerd-2.version" ;;
    c17) cat "$BIN/containerd-1.7.version" "$BIN/containerd-2.version" ;;
    k8s) cat "$BIN/containerd-2.version" "$BIN/kubernetes.version"; hash_of "$E2E_DIR/guest-k8s" ;;
  esac
  cat "$BIN/crictl.version"
}

# build_variant VARIANT: -> .cache/e2e/images/VARIANT.raw (+ vmlinuz, initrd.img)
build_variant() {
  local v="$1" base key stamp root t0
  case "$v" in c2) need_bin containerd-2; need_bin ctr-2 ;; c17) need_bin containerd-1.7; need_bin ctr-1.7 ;; k8s) need_bin containerd-2; need_bin ctr-2; need_bin kubelet ;; *) die "unknown variant $v" ;; esac
  need_bin containerd-shim-runc-v2-2; need_bin crictl
  base="$(build_base)"
  key="$(variant_inputs "$v" | sha256sum | cut -c1-16)"
  stamp="$IMAGES/$v.key"
  if [[ -f "$IMAGES/$v.raw" && -d "$E2E_CACHE/work/$v" && -f "$stamp" && "$(cat "$stamp")" == "$key" ]]; then return; fi
  t0=$SECONDS
  root="$E2E_CACHE/work/$v"
  rm -rf "$root"; mkdir -p "$(dirname "$root")"
  cp -a "$base" "$root"
  customize "$v" "$root"
  say "$v: mkfs.ext4 -d ($DISK_SIZE)"
  rm -f "$IMAGES/$v.raw.tmp"
  mkfs.ext4 -q -F -L e2e-root -d "$root" "$IMAGES/$v.raw.tmp" "$DISK_SIZE"
  mv "$IMAGES/$v.raw.tmp" "$IMAGES/$v.raw"
  cp "$root"/boot/vmlinuz-* "$IMAGES/vmlinuz"; cp "$root"/boot/initrd.img-* "$IMAGES/initrd.img"
  echo "$key" > "$stamp"
  # the variant's root stays (bake.sh provisions a copy of it in a chroot)
  say "$v: image built in $((SECONDS - t0))s -> $IMAGES/$v.raw"
}

customize() {
  local v="$1" r="$2" g="$E2E_DIR/guest"
  say "$v: installing containerd, runc, crictl, images and harness units"
  install -d "$r/usr/local/bin" "$r/usr/local/lib/e2e" "$r/usr/local/share/e2e/images" "$r/etc/containerd" "$r/etc/e2e"
  case "$v" in
    c2|k8s) install -m 755 "$BIN/containerd-2" "$r/usr/local/bin/containerd"
         install -m 755 "$BIN/ctr-2" "$r/usr/local/bin/ctr"
         install -m 644 "$g/containerd/config-c2.toml" "$r/etc/containerd/config.toml"
         echo cgroupfs > "$r/etc/e2e/cgroup-driver" ;;
    c17) install -m 755 "$BIN/containerd-1.7" "$r/usr/local/bin/containerd"
         install -m 755 "$BIN/ctr-1.7" "$r/usr/local/bin/ctr"
         install -m 644 "$g/containerd/config-c17.toml" "$r/etc/containerd/config.toml"
         echo systemd > "$r/etc/e2e/cgroup-driver" ;;
  esac
  # containerd 1.7 and 2.x both drive this shim (ttrpc task API v2)
  install -m 755 "$BIN/containerd-shim-runc-v2-2" "$r/usr/local/bin/containerd-shim-runc-v2"
  install -m 755 "$BIN/crictl" "$r/usr/local/bin/crictl"
  printf 'runtime-endpoint: unix:///run/containerd/containerd.sock\nimage-endpoint: unix:///run/containerd/containerd.sock\ntimeout: 300\n' > "$r/etc/crictl.yaml"
  printf '127.0.0.1\tlocalhost\n127.0.1.1\te2e-node\n10.0.2.100\te2e-server\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$r/etc/hosts"
  echo e2e-node > "$r/etc/hostname"
  : > "$r/etc/fstab"
  "$E2E_DIR/mkoci.sh" "$r/usr/local/share/e2e/images/busybox.tar" docker.io/library/busybox:e2e '["/bin/sh"]'
  "$E2E_DIR/mkoci.sh" "$r/usr/local/share/e2e/images/pause.tar" registry.k8s.io/pause:3.10 '["/bin/sleep","2147483647"]'
  install -m 755 "$g"/libexec/* "$r/usr/local/lib/e2e/"
  install -m 644 "$g/units/kubelet.service" "$r/lib/systemd/system/kubelet.service"
  local u
  for u in "$g"/units/*.service; do
    [[ "$(basename "$u")" == kubelet.service ]] && continue
    install -m 644 "$u" "$r/etc/systemd/system/"
  done
  install -d "$r/etc/cloud/cloud.cfg.d"
  install -m 644 "$g/cloud-e2e.cfg" "$r/etc/cloud/cloud.cfg.d/90-e2e.cfg"
  chroot "$r" systemctl enable -q containerd.service e2e-seed.service e2e-net.service \
    e2e-images.service e2e-provision.service e2e-report.service e2e-journal-follow.service
  # quiet, quick boots: no login prompts, timers or scrubbers on the serial line
  chroot "$r" systemctl mask -q serial-getty@ttyS0.service getty@tty1.service e2scrub_reap.service \
    apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer \
    systemd-timesyncd.service 2>/dev/null || true
  # root logs in with this password on the console (debugging by hand) and over SSH for the
  # image's `packer build` (packer/image/variables.pkr.hcl ssh_password)
  echo "root:$E2E_ROOT_PASSWORD" | chroot "$r" chpasswd
  install -d "$r/etc/ssh/sshd_config.d" "$r/etc/systemd/system/ssh.service.d"
  install -m 644 "$g/ssh/e2e.conf" "$r/etc/ssh/sshd_config.d/e2e.conf"
  install -m 644 "$g/ssh/ssh-only-without-seed.conf" "$r/etc/systemd/system/ssh.service.d/e2e.conf"
  if [[ "$v" == k8s ]]; then customize_k8s "$r"; fi
}

main() {
  local vs=("$@")
  [[ ${#vs[@]} -eq 0 ]] && vs=(c2 c17)
  [[ $EUID -eq 0 ]] || die "build-image.sh needs root (debootstrap, chroot)"
  local v; for v in "${vs[@]}"; do build_variant "$v"; done
}
main "$@"
