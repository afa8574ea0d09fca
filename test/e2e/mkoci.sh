#!/usr/bin/env bash
# Makes an OCI image layout tar (oci-layout, index.json, blobs/sha256/...) from the host's
# busybox-static, importable with `ctr -n k8s.io images import` (no registry needed).
# Usage: mkoci.sh OUT.tar REF ENTRYPOINT_JSON
#   mkoci.sh busybox.tar docker.io/library/busybox:e2e '["/bin/sh"]'
set -euo pipefail
out="$1" ref="$2" entry="$3"
bb="$(command -v busybox)"
file -L "$bb" 2>/dev/null | grep -q 'statically linked' || ldd "$bb" 2>&1 | grep -q 'not a dynamic' \
  || { echo "mkoci: $bb is not static; install busybox-static" >&2; exit 1; }
w="$(mktemp -d)"; trap 'rm -rf "$w"' EXIT
mkdir -p "$w/root/bin" "$w/root/etc" "$w/root/tmp" "$w/root/proc" "$w/root/sys" "$w/root/dev" "$w/layout/blobs/sha256"
cp "$bb" "$w/root/bin/busybox"
for a in sh ls cat dmesg uname sleep echo true id ps mount; do ln -s busybox "$w/root/bin/$a"; done
echo 'root:x:0:0:root:/:/bin/sh' > "$w/root/etc/passwd"
echo 'root:x:0:' > "$w/root/etc/group"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$w/root" -cf "$w/layer.tar" .
blob() { # blob FILE -> prints "sha256:<hex> <size>" and stores the blob
  local h; h="$(sha256sum "$1" | cut -d' ' -f1)"; cp "$1" "$w/layout/blobs/sha256/$h"
  echo "sha256:$h $(stat -c %s "$1")"
}
read -r ldig lsize < <(blob "$w/layer.tar")
printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Entrypoint":%s,"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["%s"]}}' \
  "$entry" "$ldig" > "$w/config.json"
read -r cdig csize < <(blob "$w/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}]}' \
  "$cdig" "$csize" "$ldig" "$lsize" > "$w/manifest.json"
read -r mdig msize < <(blob "$w/manifest.json")
printf '{"imageLayoutVersion":"1.0.0"}' > "$w/layout/oci-layout"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
  "$mdig" "$msize" "$ref" "${ref##*:}" > "$w/layout/index.json"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$w/layout" -cf "$out" .
