package units

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/test/testbin"
)

// verifyRoot builds a node root that systemd-analyze can resolve everything in: the
// host's own system units (targets such as multi-user.target), stub containerd and
// kubelet units, stub executables for every ExecStart, and our units installed by
// Install.
func verifyRoot(t *testing.T) fsroot.Root {
	t.Helper()
	dir := t.TempDir()
	root := fsroot.New(dir)
	if err := os.MkdirAll(root.Path("/usr/lib/systemd"), 0o755); err != nil {
		t.Fatal(err)
	}
	hostUnits, err := filepath.EvalSymlinks("/lib/systemd/system")
	if err != nil {
		t.Skipf("no host unit directory to copy targets from: %v", err)
	}
	if out, err := exec.Command("cp", "-a", hostUnits, root.Path("/usr/lib/systemd/system")).CombinedOutput(); err != nil {
		t.Fatalf("copy host units: %v\n%s", err, out)
	}
	// Stand-ins shaped like upstream's containerd.service and AKS's kubelet.service, so
	// that verifying kubelet.service checks the whole boot chain for ordering cycles.
	stubUnit := func(name, deps, exe string) {
		unit := "[Unit]\nDescription=stub " + name + "\n" + deps + "\n[Service]\nExecStart=" + exe + "\n[Install]\nWantedBy=multi-user.target\n"
		if err := root.WriteFile("/usr/lib/systemd/system/"+name, []byte(unit), fsroot.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	stubUnit("containerd.service", "After=network.target local-fs.target dbus.service", "/usr/bin/containerd")
	stubUnit("kubelet.service", "Wants=network-online.target containerd.service\nAfter=network-online.target containerd.service", "/usr/bin/kubelet")
	for _, exe := range []string{BinaryPath, "/usr/bin/containerd", "/usr/bin/kubelet"} {
		if err := root.WriteFile(exe, []byte("#!/bin/sh\nexit 0\n"), fsroot.WriteOptions{Mode: 0o755}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Install(root, false); err != nil {
		t.Fatal(err)
	}
	return root
}

// analyze runs `systemd-analyze verify` on units under root. It returns the combined
// problems: a non-zero exit or any message at all (systemd only warns, exit 0, about
// unknown keys and unparsable values, which are still broken units).
func analyze(t *testing.T, root fsroot.Root, unitNames ...string) string {
	t.Helper()
	bin := testbin.Require(t, "systemd-analyze")
	args := append([]string{"verify", "--man=no", "--generators=no", "--root=" + root.Dir()}, unitNames...)
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	problems := strings.TrimSpace(out.String())
	if err != nil {
		problems = strings.TrimSpace(err.Error() + "\n" + problems)
	}
	return problems
}

func TestUnitsVerify(t *testing.T) {
	root := verifyRoot(t)
	// kubelet.service is verified with our drop-in applied.
	for _, u := range []string{BootUnit, RepairUnit, PathUnit, "kubelet.service", "containerd.service"} {
		if p := analyze(t, root, u); p != "" {
			t.Errorf("systemd-analyze verify %s:\n%s", u, p)
		}
	}
}

// TestUnitsVerifyRejectsBroken proves the verify test can fail: each case breaks one
// installed file and expects systemd-analyze to complain about it.
func TestUnitsVerifyRejectsBroken(t *testing.T) {
	cases := []struct {
		name, file, old, new, unit string
	}{
		{"bad service type", Dir + "/" + BootUnit, "Type=notify", "Type=notfy", BootUnit},
		{"missing executable", Dir + "/" + RepairUnit, "ExecStart=/usr/local/bin/gvisor-bootstrap", "ExecStart=/usr/local/bin/no-such-tool", RepairUnit},
		{"unknown key in path unit", Dir + "/" + PathUnit, "PathChanged=", "PathChangd=", PathUnit},
		{"ordering cycle", Dir + "/" + BootUnit, "After=local-fs.target", "After=local-fs.target kubelet.service", "kubelet.service"},
		{"drop-in is read", KubeletDropIn, "ExecStartPre=/usr/local/bin/gvisor-bootstrap", "ExecStartPre=/usr/local/bin/no-such-gate", "kubelet.service"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := verifyRoot(t)
			data, err := root.ReadFile(c.file)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(data, []byte(c.old)) {
				t.Fatalf("%s has no %q to break", c.file, c.old)
			}
			data = bytes.Replace(data, []byte(c.old), []byte(c.new), 1)
			if err := root.WriteFile(c.file, data, fsroot.WriteOptions{}); err != nil {
				t.Fatal(err)
			}
			if p := analyze(t, root, c.unit); p == "" {
				t.Fatalf("systemd-analyze verify accepted %s with %q", c.unit, c.new)
			} else {
				t.Logf("rejected as expected: %s", p)
			}
		})
	}
}

func TestUnitsRunTheInstalledBinary(t *testing.T) {
	for p, data := range Files() {
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "ExecStart") && !strings.Contains(line, "="+BinaryPath+" run") {
				t.Errorf("%s: %q does not run %s run", p, line, BinaryPath)
			}
		}
	}
}

func TestLinks(t *testing.T) {
	want := map[string]string{
		"/etc/systemd/system/multi-user.target.wants/gvisor-bootstrap.service": "/etc/systemd/system/gvisor-bootstrap.service",
		"/etc/systemd/system/paths.target.wants/gvisor-bootstrap.path":         "/etc/systemd/system/gvisor-bootstrap.path",
	}
	if got := Links(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Links() = %v, want %v", got, want)
	}
}

func TestInstallIdempotentAndUninstall(t *testing.T) {
	root := fsroot.New(t.TempDir())

	dry, err := Install(root, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(dry) != len(Files())+len(Links()) {
		t.Fatalf("dry run reported %v", dry)
	}
	if root.Exists(Dir) {
		t.Fatalf("dry run wrote %s", root.Path(Dir))
	}

	changed, err := Install(root, false)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(changed, dry) {
		t.Fatalf("Install changed %v, dry run said %v", changed, dry)
	}
	for p, data := range Files() {
		got, err := root.ReadFile(p)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: %v, content equal %v", p, err, bytes.Equal(got, data))
		}
		if st, _ := os.Stat(root.Path(p)); st.Mode().Perm() != 0o644 {
			t.Errorf("%s mode %v, want 0644", p, st.Mode().Perm())
		}
	}
	for l, target := range Links() {
		got, err := os.Readlink(root.LinkPath(l))
		if err != nil || got != target {
			t.Fatalf("link %s -> %q (%v), want %s", l, got, err, target)
		}
	}
	st1, _ := os.Stat(root.Path(Dir + "/" + BootUnit))

	again, err := Install(root, false)
	if err != nil || len(again) != 0 {
		t.Fatalf("second Install changed %v (%v)", again, err)
	}
	if st2, _ := os.Stat(root.Path(Dir + "/" + BootUnit)); !os.SameFile(st1, st2) {
		t.Fatal("second Install replaced an identical file")
	}

	// A tampered unit and a link pointing elsewhere are repaired, nothing else is touched.
	boot := Dir + "/" + BootUnit
	if err := root.WriteFile(boot, []byte("[Service]\nExecStart=/bin/false\n"), fsroot.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	link := Dir + "/paths.target.wants/" + PathUnit
	_ = os.Remove(root.LinkPath(link))
	if err := os.Symlink("/dev/null", root.LinkPath(link)); err != nil {
		t.Fatal(err)
	}
	fixed, err := Install(root, false)
	if err != nil || !reflect.DeepEqual(fixed, []string{boot, link}) {
		t.Fatalf("repair Install changed %v (%v), want [%s %s]", fixed, err, boot, link)
	}

	// Someone else's kubelet drop-in survives Uninstall, and so does its directory.
	other := Dir + "/kubelet.service.d/20-other.conf"
	if err := root.WriteFile(other, []byte("[Service]\n"), fsroot.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	removed, err := Uninstall(root, false)
	if err != nil || len(removed) != len(Files())+len(Links()) {
		t.Fatalf("Uninstall removed %v (%v)", removed, err)
	}
	for p := range Files() {
		if _, err := os.Lstat(root.LinkPath(p)); err == nil {
			t.Errorf("%s still there", p)
		}
	}
	for l := range Links() {
		if _, err := os.Lstat(root.LinkPath(l)); err == nil {
			t.Errorf("%s still there", l)
		}
	}
	if !root.Exists(other) {
		t.Fatal("Uninstall removed someone else's drop-in")
	}
	if again, err := Uninstall(root, false); err != nil || len(again) != 0 {
		t.Fatalf("second Uninstall removed %v (%v)", again, err)
	}
}

// A unit the administrator masked stays masked through install and uninstall:
// its /dev/null symlink is neither replaced by the unit file nor removed, and it
// is not enabled; the other units are installed as usual.
func TestMaskedUnitStaysMasked(t *testing.T) {
	root := fsroot.New(t.TempDir())
	mask := filepath.Join(Dir, PathUnit)
	if err := os.MkdirAll(root.Path(Dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/null", root.LinkPath(mask)); err != nil {
		t.Fatal(err)
	}
	changed, err := Install(root, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := Masked(root); !reflect.DeepEqual(got, []string{mask}) {
		t.Fatalf("Masked = %v", got)
	}
	for _, c := range changed {
		if strings.Contains(c, PathUnit) {
			t.Errorf("install touched the masked unit: %s", c)
		}
	}
	if !root.Exists(filepath.Join(Dir, BootUnit)) {
		t.Error("the other units were not installed")
	}
	if _, err := Uninstall(root, false); err != nil {
		t.Fatal(err)
	}
	if tgt, err := os.Readlink(root.LinkPath(mask)); err != nil || tgt != "/dev/null" {
		t.Errorf("the mask is gone after uninstall: %q %v", tgt, err)
	}
	if root.Exists(filepath.Join(Dir, BootUnit)) {
		t.Error("uninstall left the boot unit")
	}
}
