# Two sources run the same provisioning (build.pkr.hcl):
#  - azure-arm.ubuntu: a build VM from a Canonical base image, captured into an Azure
#    Compute Gallery image version (and, optionally, a managed image);
#  - qemu.local: a local raw disk image booted under qemu, for the end-to-end harness.

locals {
  # A managed image is published only when asked for; null leaves the option unset.
  managed_image_name = var.managed_image_name == "" ? null : var.managed_image_name
  managed_image_rg   = var.managed_image_name == "" ? null : var.resource_group
}

source "azure-arm" "ubuntu" {
  subscription_id    = var.subscription_id
  use_azure_cli_auth = var.use_azure_cli_auth
  client_id          = var.client_id == "" ? null : var.client_id
  client_secret      = var.client_secret == "" ? null : var.client_secret
  tenant_id          = var.tenant_id == "" ? null : var.tenant_id

  os_type         = "Linux"
  image_publisher = var.image_publisher
  image_offer     = var.image_offer
  image_sku       = var.image_sku
  image_version   = var.image_base_version
  vm_size         = var.vm_size
  # location and build_resource_group_name are mutually exclusive: packer creates (and
  # deletes) a temporary resource group in this region.
  location   = var.location
  azure_tags = var.tags

  managed_image_name                = local.managed_image_name
  managed_image_resource_group_name = local.managed_image_rg

  shared_image_gallery_destination {
    subscription        = var.subscription_id
    resource_group      = var.resource_group
    gallery_name        = var.gallery_name
    image_name          = var.image_definition
    image_version       = var.image_version
    replication_regions = var.replication_regions
  }
}

source "qemu" "local" {
  # Boot an existing disk image (no installer): disk_image with a raw file, directly
  # with the guest's kernel and initrd, as the end-to-end harness does.
  iso_url          = var.qemu_disk_image
  iso_checksum     = var.qemu_disk_checksum
  disk_image       = true
  use_backing_file = false
  # Keep the image its own size: packer otherwise grows a disk_image to disk_size
  # (40 GB by default) and copies it densely.
  skip_resize_disk = true
  format           = "raw"
  disk_interface   = "virtio"
  net_device       = "virtio-net"
  accelerator      = var.qemu_accelerator
  headless         = true
  memory           = 2048
  cpus             = 2
  output_directory = var.output_directory
  vm_name          = "gvisor-node.img"
  qemuargs = [
    ["-kernel", var.qemu_kernel],
    ["-initrd", var.qemu_initrd],
    ["-append", "root=/dev/vda rw console=ttyS0"],
  ]
  communicator     = "ssh"
  ssh_username     = var.ssh_username
  ssh_password     = var.ssh_password
  ssh_timeout      = "15m"
  shutdown_command = "systemctl poweroff"
}
