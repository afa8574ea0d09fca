# The k8s variant (sourced by build-image.sh): the c2 node plus a real kubelet
# (test/tools/build-k8s.sh), its unit as a real node has it (not enabled: provisioning starts
# it), Debian's CNI plugins (base-packages.txt) with a bridge network, containerd on the
# systemd cgroup driver, and the harness's k8s units. Its e2e-report.service is off: the host
# ends these VMs once it has read the API.
customize_k8s() {
  local r="$1" g="$E2E_DIR/guest-k8s"
  [[ -x "$r/usr/lib/cni/bridge" && -x "$r/usr/lib/cni/host-local" && -x "$r/usr/lib/cni/loopback" ]] \
    || die "k8s: the base root has no CNI plugins in /usr/lib/cni (containernetworking-plugins in base-packages.txt)"
  install -m 755 "$BIN/kubelet" "$r/usr/local/bin/kubelet"
  install -m 644 "$g/config-k8s.toml" "$r/etc/containerd/config.toml"
  echo systemd > "$r/etc/e2e/cgroup-driver"
  install -m 644 "$g/units/kubelet.service" "$r/lib/systemd/system/kubelet.service"
  install -m 644 "$g/units/e2e-k8s-seed.service" "$g/units/e2e-k8s-agent.service" "$r/etc/systemd/system/"
  install -m 755 "$g"/libexec/* "$r/usr/local/lib/e2e/"
  install -d "$r/etc/cni/net.d" "$r/opt/cni" "$r/var/lib/kubelet"
  ln -sfn /usr/lib/cni "$r/opt/cni/bin"
  install -m 644 "$g/10-e2e-bridge.conflist" "$r/etc/cni/net.d/10-e2e-bridge.conflist"
  chroot "$r" systemctl enable -q e2e-k8s-seed.service e2e-k8s-agent.service
  chroot "$r" systemctl disable -q e2e-report.service
}
