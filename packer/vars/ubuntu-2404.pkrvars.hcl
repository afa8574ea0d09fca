# Ubuntu 24.04 LTS (gen2) with upstream containerd 2.x from its release tarball.
# Pin the tarball's digest (its .sha256sum file on the release page) with
# CONTAINERD_SHA256=... packer/build-azure.sh, or -var containerd_sha256=...
image_publisher    = "Canonical"
image_offer        = "ubuntu-24_04-lts"
image_sku          = "server"
containerd_install = "tarball"
containerd_url     = "https://github.com/containerd/containerd/releases/download/v2.1.4/containerd-2.1.4-linux-amd64.tar.gz"
