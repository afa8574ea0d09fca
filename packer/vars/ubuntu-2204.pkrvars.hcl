# Ubuntu 22.04 LTS (gen2) with the distribution's containerd 1.7.x.
image_publisher    = "Canonical"
image_offer        = "0001-com-ubuntu-server-jammy"
image_sku          = "22_04-lts-gen2"
containerd_install = "apt"
