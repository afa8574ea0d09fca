package cli

import (
	"os"
	"strings"
	"testing"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/cri"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
)

const hostConfig = `version = 2

# kept by hand
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "mcr.microsoft.com/oss/kubernetes/pause:3.6"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = true
`

func TestUninstallRestoresTheNode(t *testing.T) {
	root, rel := t.TempDir(), serveRelease(t)
	r := fsroot.New(root)
	if err := r.WriteFile("/etc/containerd/config.toml", []byte(hostConfig), fsroot.WriteOptions{Mode: 0o640}); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runMain(t, append([]string{"install", "--units"}, nodeArgs(root, rel)[:4]...)...); code != ExitOK {
		t.Fatalf("install: %d %s %s", code, out, errs)
	}
	if code, _, errs := runMain(t, append([]string{"run"}, nodeArgs(root, rel)...)...); code != ExitRepaired {
		t.Fatalf("run: %d %s", code, errs)
	}

	code, out, _ := runMain(t, append([]string{"uninstall", "--dry-run"}, nodeArgs(root, rel)...)...)
	if code != ExitOK || !strings.Contains(out, "would remove") {
		t.Fatalf("dry run: %d %s", code, out)
	}
	if !r.Exists("/etc/containerd/runsc.toml") {
		t.Fatal("dry run removed something")
	}

	code, out, errs := runMain(t, append([]string{"uninstall"}, nodeArgs(root, rel)...)...)
	if code != ExitOK {
		t.Fatalf("uninstall: %d %s %s", code, out, errs)
	}
	got, _ := r.ReadFile("/etc/containerd/config.toml")
	if string(got) != hostConfig {
		t.Fatalf("config not restored byte for byte:\n%s", got)
	}
	if st, _ := os.Stat(r.Path("/etc/containerd/config.toml")); st.Mode().Perm() != 0o640 {
		t.Fatalf("config mode %v", st.Mode())
	}
	for _, p := range []string{"/etc/containerd/runsc.toml", "/usr/local/bin/runsc", "/usr/local/bin/containerd-shim-runsc-v1",
		"/etc/systemd/system/gvisor-bootstrap.service", "/etc/systemd/system/kubelet.service.d/10-gvisor-bootstrap.conf",
		"/var/lib/gvisor-bootstrap/release.json", "/run/gvisor-bootstrap/last-run.json"} {
		if _, err := os.Lstat(r.LinkPath(p)); err == nil {
			t.Errorf("%s left behind", p)
		}
	}
	if code, out, _ := runMain(t, append([]string{"uninstall"}, nodeArgs(root, rel)...)...); code != ExitOK || strings.Contains(out, "removed") {
		t.Fatalf("second uninstall: %d %s", code, out)
	}
}

func TestUninstallRefusesWhileGVisorPodsRun(t *testing.T) {
	root, rel := t.TempDir(), serveRelease(t)
	r := fsroot.New(root)
	if code, _, errs := runMain(t, append([]string{"run"}, nodeArgs(root, rel)...)...); code != ExitRepaired {
		t.Fatalf("run: %d %s", code, errs)
	}
	// A CRI socket answers with one pod under runsc.
	if err := r.WriteFile("/run/containerd/containerd.sock", nil, fsroot.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	fake := &cri.Fake{Sandboxes: map[string][]string{"runsc": {"default/untrusted"}}}
	old := dialCRI
	dialCRI = func(*Globals) (cri.Runtime, error) { return fake, nil }
	defer func() { dialCRI = old }()

	code, _, errs := runMain(t, append([]string{"uninstall"}, nodeArgs(root, rel)...)...)
	if code != ExitFailed || !strings.Contains(errs, "default/untrusted") || !strings.Contains(errs, "--force") {
		t.Fatalf("uninstall with a gVisor pod: %d %s", code, errs)
	}
	if !r.Exists("/etc/containerd/runsc.toml") {
		t.Fatal("refused uninstall removed something")
	}
	if code, _, errs := runMain(t, append([]string{"uninstall", "--force"}, nodeArgs(root, rel)...)...); code != ExitOK {
		t.Fatalf("uninstall --force: %d %s", code, errs)
	}
	if r.Exists("/etc/containerd/runsc.toml") {
		t.Fatal("--force did not uninstall")
	}
}
