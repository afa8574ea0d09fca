package faults

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// mountTmpfs mounts a small tmpfs at a node path (root needed), unmounted at the end.
func mountTmpfs(t *testing.T, n *node, nodePath, size string) string {
	t.Helper()
	dir := n.path(nodePath)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Fatalf("mount tmpfs on %s (the fault matrix runs as root): %v", dir, err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// fill writes zeros into dir until the filesystem is full; returns the filler.
func fill(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, ".filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = io.Copy(f, zeroReader{})
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("fill %s: %v", dir, err)
	}
	return p
}

type zeroReader struct{}

func (zeroReader) Read(b []byte) (int, error) { clear(b); return len(b), nil }

func remount(t *testing.T, dir string, ro bool) {
	t.Helper()
	flags := uintptr(syscall.MS_REMOUNT)
	if ro {
		flags |= syscall.MS_RDONLY
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", flags, ""); err != nil {
		t.Fatalf("remount %s ro=%v: %v", dir, ro, err)
	}
}

func TestDiskFullBinDir(t *testing.T) {
	newConfig, _ := wantNew(t)
	n := newNode(t)
	dir := mountTmpfs(t, n, "/usr/local/bin", "1m")
	n.install(oldRel)
	filler := fill(t, dir)
	r := n.run()
	if r.code != 1 {
		t.Fatalf("want exit 1: %s", r)
	}
	mustContain(t, r.stderr, "FAILED", dir, "no space left on device", "free space", "not changed")
	if n.binState() != oldRel {
		t.Fatal("old release not whole")
	}
	t.Logf("config: %s", n.configState([]byte(oldContainerdConfig), newConfig))
	os.Remove(filler)
	n.completes(newConfig)
}

func TestDiskFullConfigDir(t *testing.T) {
	newConfig, _ := wantNew(t)
	n := newNode(t)
	dir := mountTmpfs(t, n, "/etc/containerd", "256k")
	n.writeFile("/etc/containerd/config.toml", oldContainerdConfig, 0o644)
	n.install(oldRel)
	filler := fill(t, dir)
	r := n.run()
	if r.code != 1 {
		t.Fatalf("want exit 1: %s", r)
	}
	mustContain(t, r.stderr, "FAILED", dir, "no space left on device")
	if n.configState([]byte(oldContainerdConfig), newConfig) != "old" {
		t.Fatal("config changed on a full disk")
	}
	if b := n.binState(); b != newRel {
		t.Fatalf("binaries %q (they live on another filesystem and should be new)", b)
	}
	os.Remove(filler)
	n.completes(newConfig)
}

func TestReadOnlyBinDir(t *testing.T) {
	newConfig, _ := wantNew(t)
	n := newNode(t)
	dir := mountTmpfs(t, n, "/usr/local/bin", "4m")
	n.install(oldRel)
	remount(t, dir, true)
	r := n.run()
	if r.code != 1 {
		t.Fatalf("want exit 1: %s", r)
	}
	mustContain(t, r.stderr, "FAILED", dir, "read-only file system", "writable")
	if n.binState() != oldRel {
		t.Fatal("old release not whole")
	}
	t.Logf("config: %s", n.configState([]byte(oldContainerdConfig), newConfig))
	remount(t, dir, false)
	n.completes(newConfig)
}

func TestReadOnlyConfigDir(t *testing.T) {
	newConfig, _ := wantNew(t)
	n := newNode(t)
	dir := mountTmpfs(t, n, "/etc/containerd", "1m")
	n.writeFile("/etc/containerd/config.toml", oldContainerdConfig, 0o644)
	remount(t, dir, true)
	r := n.run()
	if r.code != 1 {
		t.Fatalf("want exit 1: %s", r)
	}
	mustContain(t, r.stderr, "FAILED", dir, "read-only file system")
	if n.configState([]byte(oldContainerdConfig), newConfig) != "old" {
		t.Fatal("config changed")
	}
	remount(t, dir, false)
	n.completes(newConfig)
}

// TestMissingDirectories: a bare root (no /etc/containerd, /usr/local/bin or
// /var/lib/gvisor-bootstrap) is not a fault for run: it creates what it needs and
// writes a minimal config for the containerd version.
func TestMissingDirectories(t *testing.T) {
	n := newNode(t)
	for _, d := range []string{"/etc/containerd", "/usr/local", "/var"} {
		if err := os.RemoveAll(n.path(d)); err != nil {
			t.Fatal(err)
		}
	}
	r := n.run()
	if r.code != 10 {
		t.Fatalf("want exit 10: %s", r)
	}
	if n.binState() != newRel {
		t.Fatal("release not installed")
	}
	cfg := string(n.read("/etc/containerd/config.toml"))
	if !strings.Contains(cfg, "io.containerd.runsc.v1") {
		t.Fatalf("minimal config lacks runsc:\n%s", cfg)
	}
	n.configState([]byte(cfg), nil) // parses
	if v := n.exec(nil, "verify", "--deep"); v.code != 0 {
		t.Fatalf("verify: %s", v)
	}
	if r := n.run(); r.code != 0 {
		t.Fatalf("second run: %s", r)
	}
}

// TestConfigIsADirectory: a directory where containerd's config should be fails as
// root too (unlike mode bits), and names the path.
func TestConfigIsADirectory(t *testing.T) {
	n := newNode(t)
	p := n.path("/etc/containerd/config.toml")
	os.Remove(p)
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
	r := n.run()
	if r.code != 1 {
		t.Fatalf("want exit 1: %s", r)
	}
	mustContain(t, r.stderr, "FAILED", p)
	if st, err := os.Stat(p); err != nil || !st.IsDir() {
		t.Fatal("the directory was replaced")
	}
	os.Remove(p)
	n.writeFile("/etc/containerd/config.toml", oldContainerdConfig, 0o644)
	newConfig, _ := wantNew(t)
	n.completes(newConfig)
}

// TestConfigModeZero: mode 0000 does not stop root (run and containerd both run as
// root), so it is not a failure: the run succeeds and keeps the file's mode.
func TestConfigModeZero(t *testing.T) {
	newConfig, _ := wantNew(t)
	n := newNode(t)
	p := n.path("/etc/containerd/config.toml")
	if err := os.Chmod(p, 0); err != nil {
		t.Fatal(err)
	}
	if r := n.run(); r.code != 10 {
		t.Fatalf("want exit 10: %s", r)
	}
	if n.configState(nil, newConfig) != "new" {
		t.Fatal("not the new config")
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0 {
		t.Fatalf("mode changed to %v", st.Mode())
	}
}

// TestConfigImmutable: chattr +i is the permission fault that stops root: the file
// cannot be replaced. The run fails naming the file; the config stays old.
func TestConfigImmutable(t *testing.T) {
	newConfig, _ := wantNew(t)
	n := newNode(t)
	p := n.path("/etc/containerd/config.toml")
	if out, err := exec.Command("chattr", "+i", p).CombinedOutput(); err != nil {
		t.Fatalf("chattr +i (needs e2fsprogs and a filesystem with attributes): %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("chattr", "-i", p).Run() })
	r := n.run()
	if r.code != 1 {
		t.Fatalf("want exit 1: %s", r)
	}
	mustContain(t, r.stderr, "FAILED", "config.toml", "operation not permitted")
	if n.configState([]byte(oldContainerdConfig), newConfig) != "old" {
		t.Fatal("immutable config changed")
	}
	if err := exec.Command("chattr", "-i", p).Run(); err != nil {
		t.Fatal(err)
	}
	n.completes(newConfig)
}
