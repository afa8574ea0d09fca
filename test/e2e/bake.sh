#!/usr/bin/env bash
# Bakes the scenario-2 image: the c2 node image provisioned with the project's Packer
# provisioning (packer/scripts/install-containerd.sh, install-gvisor-bootstrap.sh,
# cleanup.sh, in that order, with the same environment packer/image/build.pkr.hcl gives
# them), run in a chroot of the image's root. Result: .cache/e2e/images/baked.raw, cached
# until an input changes.
# Why a chroot and not `packer build -only=qemu.local`: see test/e2e/README.md.
# Usage: bake.sh REL CONFIG_TOML     (the release dir is taken from the served tree)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
rel="$1" cfg="$2"
src="$E2E_CACHE/work/c2"
reldir="$E2E_CACHE/www/gvisor/releases/release/$rel/x86_64"
gvb="$REPO/bin/gvisor-bootstrap"
scripts="$REPO/packer/scripts"
for f in "$src/etc/os-release" "$reldir/runsc" "$gvb" "$cfg" "$scripts/install-containerd.sh" \
         "$scripts/install-gvisor-bootstrap.sh" "$scripts/cleanup.sh"; do
  [[ -e "$f" ]] || die "bake: missing $f"
done
key="$( { cat "$IMAGES/c2.key"; hash_of "$scripts" "$gvb" "$cfg" "$E2E_DIR/bake.sh"; cat "$E2E_CACHE/www/release.key"; } | sha256sum | cut -c1-16)"
if [[ -f "$IMAGES/baked.raw" && "$(cat "$IMAGES/baked.key" 2>/dev/null)" == "$key" ]]; then
  say "bake: reusing $IMAGES/baked.raw"; exit 0
fi
t0=$SECONDS
root="$E2E_CACHE/work/baked"
cleanup() { for m in dev/pts dev sys proc; do umount "$root/$m" 2>/dev/null || true; done; }
trap cleanup EXIT
cleanup; rm -rf "$root"
cp -a "$src" "$root"
# what packer's file provisioners upload
up="$root/tmp/gvisor-bootstrap-upload"
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
    bash "/tmp/$s" || die "bake: packer/scripts/$s failed in the chroot"
  rm -f "$root/tmp/$s"
done
cleanup
rm -f "$IMAGES/baked.raw.tmp"
mkfs.ext4 -q -F -L e2e-root -d "$root" "$IMAGES/baked.raw.tmp" "${E2E_DISK_SIZE:-6G}"
mv "$IMAGES/baked.raw.tmp" "$IMAGES/baked.raw"
echo "$key" > "$IMAGES/baked.key"
rm -rf "$root"
say "bake: $IMAGES/baked.raw in $((SECONDS - t0))s"
