#!/usr/bin/env bash
# Bakes the scenario-2 image: the c2 node image provisioned with the project's Packer
# provisioning. First choice: a real `packer build -only=qemu.local packer/image` (Debian's
# packer 1.6.6 has the qemu builder built in: it boots the c2 disk under tcg, logs in over
# SSH, uploads the binary, config and release, and runs packer/scripts/*). If that fails
# (or E2E_BAKE=chroot), the same scripts run in a chroot of the image's root, in the same
# order and with the same environment build.pkr.hcl gives them; the reason is recorded.
# Result: .cache/e2e/images/baked.raw (+ baked.method), cached until an input changes.
# Usage: bake.sh REL CONFIG_TOML     (the release dir is taken from the served tree)
# BAKE_VARIANT=k8s bakes the real-kubelet variant instead (-> baked-k8s.raw, for k8s-baked).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
rel="$1" cfg="$2"
variant="${BAKE_VARIANT:-c2}"
out_name=baked; [[ "$variant" == c2 ]] || out_name="baked-$variant"
src="$E2E_CACHE/work/$variant"
plog="$LOGS/packer.log"; [[ "$variant" == c2 ]] || plog="$LOGS/packer-$variant.log"
reldir="$E2E_CACHE/www/gvisor/releases/release/$rel/x86_64"
gvb="$REPO/bin/gvisor-bootstrap"
scripts="$REPO/packer/scripts"
for f in "$src/etc/os-release" "$reldir/runsc" "$gvb" "$cfg" "$scripts/install-containerd.sh" \
         "$scripts/install-gvisor-bootstrap.sh" "$scripts/cleanup.sh"; do
  [[ -e "$f" ]] || die "bake: missing $f"
done
key="$( { cat "$IMAGES/$variant.key"; hash_of "$scripts" "$REPO/packer/image" "$gvb" "$cfg" "$E2E_DIR/bake.sh"; cat "$E2E_CACHE/www/release.key"; echo "${E2E_BAKE:-packer}"; } | sha256sum | cut -c1-16)"
if [[ -f "$IMAGES/$out_name.raw" && "$(cat "$IMAGES/$out_name.key" 2>/dev/null)" == "$key" ]]; then
  say "bake: reusing $IMAGES/$out_name.raw"; exit 0
fi

bake_packer() {
  command -v packer >/dev/null || { echo "packer is not installed" > "$IMAGES/$out_name.why"; return 1; }
  local out="$E2E_CACHE/packer-out-$variant" t0=$SECONDS
  rm -rf "$out"
  say "bake: packer build -only=qemu.local packer/image (log $plog)"
  # packer 1.6.6 resolves template-relative paths itself; every path given here is absolute
  if ! (cd "$REPO" && CHECKPOINT_DISABLE=1 PACKER_CACHE_DIR="$E2E_CACHE/packer-cache-$variant" PACKER_NO_COLOR=1 \
        timeout -k 10 "${E2E_PACKER_TIMEOUT:-1200}" packer build -color=false -only=qemu.local \
        -var "binary_path=$gvb" -var "config_path=$cfg" -var "release_dir=$reldir" \
        -var "containerd_install=none" -var "qemu_disk_image=$IMAGES/$variant.raw" \
        -var "qemu_kernel=$IMAGES/vmlinuz" -var "qemu_initrd=$IMAGES/initrd.img" \
        -var "qemu_accelerator=tcg" -var "output_directory=$out" \
        -var "ssh_password=${E2E_ROOT_PASSWORD:-e2e-local-only-password}" \
        packer/image) >"$plog" 2>&1; then
    { echo "packer build failed: $(grep -aE 'Error|error|failed' "$plog" | tail -2 | tr '\n' ' ' | cut -c1-300)"; } > "$IMAGES/$out_name.why"
    return 1
  fi
  [[ -s "$out/gvisor-node.img" ]] || { echo "packer build made no $out/gvisor-node.img" > "$IMAGES/$out_name.why"; return 1; }
  mv "$out/gvisor-node.img" "$IMAGES/$out_name.raw"
  # packer copies the disk densely (6 GB written for a ~1 GB root): punch the zeros out
  fallocate --dig-holes "$IMAGES/$out_name.raw" 2>/dev/null || true
  rm -rf "$out"
  echo "packer build -only=qemu.local ($((SECONDS - t0))s)" > "$IMAGES/$out_name.method"
}

root="$E2E_CACHE/work/$out_name"
bake_chroot() {
  local t0=$SECONDS
  umounts() { local m; for m in dev/pts dev sys proc; do umount "$root/$m" 2>/dev/null || true; done; }
  trap umounts EXIT
  umounts; rm -rf "$root"
  cp -a "$src" "$root"
  # what packer's file provisioners upload
  local up="$root/tmp/gvisor-bootstrap-upload" s
  mkdir -p "$up/release"
  cp "$gvb" "$up/gvisor-bootstrap"; cp "$cfg" "$up/config.toml"
  cp "$reldir"/* "$up/release/"
  mount -t proc proc "$root/proc"; mount -t sysfs sys "$root/sys"
  mount --bind /dev "$root/dev"; mount --bind /dev/pts "$root/dev/pts"
  for s in install-containerd.sh install-gvisor-bootstrap.sh cleanup.sh; do
    say "bake: packer/scripts/$s (chroot)"
    cp "$scripts/$s" "$root/tmp/$s"
    chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
      UPLOAD_DIR=/tmp/gvisor-bootstrap-upload CONTAINERD_INSTALL=none CONTAINERD_URL= CONTAINERD_SHA256= \
      bash "/tmp/$s" || { umounts; die "bake: packer/scripts/$s failed in the chroot"; }
    rm -f "$root/tmp/$s"
  done
  umounts
  rm -f "$IMAGES/$out_name.raw.tmp"
  mkfs.ext4 -q -F -L e2e-root -d "$root" "$IMAGES/$out_name.raw.tmp" "${E2E_DISK_SIZE:-6G}"
  mv "$IMAGES/$out_name.raw.tmp" "$IMAGES/$out_name.raw"
  rm -rf "$root"
  echo "packer/scripts/* in a chroot ($((SECONDS - t0))s; $(cat "$IMAGES/$out_name.why" 2>/dev/null || echo "E2E_BAKE=chroot"))" > "$IMAGES/$out_name.method"
}

rm -f "$IMAGES/$out_name.raw" "$IMAGES/$out_name.key" "$IMAGES/$out_name.method" "$IMAGES/$out_name.why"
if [[ "${E2E_BAKE:-packer}" == chroot ]] || ! bake_packer; then
  [[ -f "$IMAGES/$out_name.why" ]] && say "bake: $(cat "$IMAGES/$out_name.why"); falling back to a chroot"
  bake_chroot
fi
echo "$key" > "$IMAGES/$out_name.key"
say "bake: $IMAGES/$out_name.raw by $(cat "$IMAGES/$out_name.method")"
