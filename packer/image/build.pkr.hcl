# The provisioning shared by every source: upload the binary, the config and (optionally)
# a gVisor release; install containerd if asked; `gvisor-bootstrap install --units`
# (pre-fetches the pinned release into the image so the first boot needs no network,
# installs and enables the units); clean up for capture. On Azure the VM agent's
# deprovisioning runs last.

build {
  sources = ["source.azure-arm.ubuntu", "source.qemu.local"]

  provisioner "shell" {
    inline = ["mkdir -p /tmp/gvisor-bootstrap-upload/release"]
  }

  provisioner "file" {
    source      = var.binary_path
    destination = "/tmp/gvisor-bootstrap-upload/gvisor-bootstrap"
  }

  provisioner "file" {
    source      = var.config_path
    destination = "/tmp/gvisor-bootstrap-upload/config.toml"
  }

  # An empty directory when no release is given (the trailing slash uploads the
  # directory's contents).
  provisioner "file" {
    source      = var.release_dir == "" ? "${path.root}/../release-placeholder/" : "${var.release_dir}/"
    destination = "/tmp/gvisor-bootstrap-upload/release"
  }

  provisioner "shell" {
    # The Azure base image logs in as an unprivileged user; the qemu image as root.
    execute_command = "chmod +x {{ .Path }}; {{ .Vars }} sudo -E bash '{{ .Path }}'"
    environment_vars = [
      "UPLOAD_DIR=/tmp/gvisor-bootstrap-upload",
      "CONTAINERD_INSTALL=${var.containerd_install}",
      "CONTAINERD_URL=${var.containerd_url}",
      "CONTAINERD_SHA256=${var.containerd_sha256}",
    ]
    scripts = [
      "${path.root}/../scripts/install-containerd.sh",
      "${path.root}/../scripts/install-gvisor-bootstrap.sh",
      "${path.root}/../scripts/cleanup.sh",
    ]
  }

  # Last, Azure only: generalize the VM for capture.
  provisioner "shell" {
    only            = ["azure-arm.ubuntu"]
    execute_command = "chmod +x {{ .Path }}; {{ .Vars }} sudo -E sh '{{ .Path }}'"
    inline_shebang  = "/bin/sh -x"
    inline          = ["/usr/sbin/waagent -force -deprovision+user && export HISTSIZE=0 && sync"]
  }
}
