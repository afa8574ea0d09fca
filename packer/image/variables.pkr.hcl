# Inputs of the image build. The Azure ones are required only for the azure-arm source
# (packer/build-azure.sh checks them before starting); the qemu ones only for the local
# source used by the end-to-end harness.

# --- what goes into the image (every source) ---
variable "binary_path" {
  type        = string
  description = "Local path of the gvisor-bootstrap binary to bake in (make build-all: bin/gvisor-bootstrap-linux-amd64)."
  default     = "bin/gvisor-bootstrap"
}

variable "config_path" {
  type        = string
  description = "Local path of the tool config to bake in as /etc/gvisor-bootstrap/config.toml (gvisor-bootstrap render config -o FILE)."
  default     = "manifests/config.toml"
}

variable "release_dir" {
  type        = string
  description = "Optional local directory holding one gVisor release for the image's arch (runsc, containerd-shim-runsc-v1 and their .sha512). Uploaded and installed from file:// so the build needs no access to the release bucket. Empty: the node config's release source is used."
  default     = ""
}

variable "containerd_install" {
  type        = string
  description = "How containerd gets into the image: \"none\" (the base image has it), \"apt\" (the distribution's package: 1.7 on Ubuntu 22.04 and 24.04) or \"tarball\" (containerd_url, for containerd 2.x)."
  default     = "apt"
}

variable "containerd_url" {
  type        = string
  description = "With containerd_install = \"tarball\": URL of an upstream containerd release tarball (containerd-2.x.y-linux-amd64.tar.gz)."
  default     = ""
}

variable "containerd_sha256" {
  type        = string
  description = "With containerd_install = \"tarball\": sha256 of that tarball (the build fails on a mismatch)."
  default     = ""
}

# --- Azure (azure-arm source) ---
variable "subscription_id" {
  type        = string
  description = "Azure subscription the build VM runs in and the gallery lives in."
  default     = ""
}

variable "use_azure_cli_auth" {
  type        = bool
  description = "Authenticate with the Azure CLI's login (az login) instead of a service principal."
  default     = true
}

variable "client_id" {
  type        = string
  description = "Service principal (when use_azure_cli_auth = false)."
  default     = ""
}

variable "client_secret" {
  type        = string
  description = "Service principal secret (when use_azure_cli_auth = false)."
  default     = ""
  sensitive   = true
}

variable "tenant_id" {
  type        = string
  description = "Azure AD tenant (when use_azure_cli_auth = false)."
  default     = ""
}

variable "location" {
  type        = string
  description = "Region of the build VM (and of the managed image)."
  default     = "westeurope"
}

variable "resource_group" {
  type        = string
  description = "Resource group of the gallery (and of the optional managed image)."
  default     = ""
}

variable "gallery_name" {
  type        = string
  description = "Azure Compute Gallery that receives the image version."
  default     = ""
}

variable "image_definition" {
  type        = string
  description = "Image definition in the gallery (create it first, e.g. ubuntu-2204-gvisor, Linux, generalized, V2)."
  default     = ""
}

variable "image_version" {
  type        = string
  description = "Gallery image version to publish, MAJOR.MINOR.PATCH (e.g. 1.0.0)."
  default     = "0.0.1"
}

variable "replication_regions" {
  type        = list(string)
  description = "Regions the gallery image version is replicated to."
  default     = ["westeurope"]
}

variable "managed_image_name" {
  type        = string
  description = "Optional: also publish a managed image with this name in resource_group. Empty: gallery only."
  default     = ""
}

variable "vm_size" {
  type        = string
  description = "Size of the build VM."
  default     = "Standard_D2s_v5"
}

variable "image_publisher" {
  type        = string
  description = "Base image publisher."
  default     = "Canonical"
}

variable "image_offer" {
  type        = string
  description = "Base image offer: 0001-com-ubuntu-server-jammy (Ubuntu 22.04) or ubuntu-24_04-lts (Ubuntu 24.04). See packer/vars/."
  default     = "0001-com-ubuntu-server-jammy"
}

variable "image_sku" {
  type        = string
  description = "Base image SKU: 22_04-lts-gen2 or server."
  default     = "22_04-lts-gen2"
}

variable "image_base_version" {
  type        = string
  description = "Base image version (pin one for reproducible builds)."
  default     = "latest"
}

variable "tags" {
  type        = map(string)
  description = "Tags on the build resources, the managed image and the gallery image version."
  default     = { "built-by" = "gvisor-bootstrap-packer" }
}

# --- local disk image (qemu source, used by the end-to-end harness) ---
variable "qemu_disk_image" {
  type        = string
  description = "Local raw disk image with an sshd-enabled Linux (systemd, containerd) to provision."
  default     = "test/e2e/.cache/base.img"
}

variable "qemu_disk_checksum" {
  type        = string
  description = "Checksum of qemu_disk_image (e.g. sha256:...), or none for a disk the harness just built."
  default     = "none"
}

variable "qemu_kernel" {
  type        = string
  description = "Kernel to boot the disk image with (direct kernel boot, as the e2e harness does)."
  default     = "test/e2e/.cache/vmlinuz"
}

variable "qemu_initrd" {
  type        = string
  description = "Initrd for qemu_kernel."
  default     = "test/e2e/.cache/initrd.img"
}

variable "qemu_accelerator" {
  type        = string
  description = "qemu accelerator: tcg (works everywhere; kvm hung in the firmware on the CI machine) or kvm."
  default     = "tcg"
}

variable "ssh_username" {
  type        = string
  description = "User the qemu source logs in as."
  default     = "root"
}

variable "ssh_password" {
  type        = string
  description = "Password of ssh_username in the local disk image (a throwaway e2e guest). Packer redacts sensitive values from its output wherever they appear, so keep it distinctive."
  default     = "e2e-local-only-password"
  sensitive   = true
}

variable "output_directory" {
  type        = string
  description = "Where the qemu source writes the provisioned disk image."
  default     = "test/e2e/.cache/packer-out"
}
