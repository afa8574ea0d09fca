# Plugins the image templates need, kept in their own file because Debian's packer
# 1.6.6 (which validates the templates in `make test`) does not know this block.
# Packer >= 1.7 installs them with:  packer init packer/plugins.pkr.hcl
packer {
  required_version = ">= 1.7.0"
  required_plugins {
    azure = {
      source  = "github.com/hashicorp/azure"
      version = ">= 2.1.0"
    }
    qemu = {
      source  = "github.com/hashicorp/qemu"
      version = ">= 1.1.0"
    }
  }
}
