package release

import (
	"crypto/sha512"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/test/testbin"
)

// realBinary returns a real gVisor program from the test cache (`make test` builds
// it first with test/tools/build-binaries.sh).
func realBinary(t *testing.T, name string) string {
	t.Helper()
	return testbin.Require(t, name)
}

// realBundle packs the real runsc and shim with the `tar` and `bzip2` commands
// (Go has no bzip2 writer), in the release layout, with a gvisor-bin/ sidecar.
// Packing 140 MB takes seconds, so the bundle is cached by the binaries' identity.
func realBundle(t *testing.T, runsc, shim string) []byte {
	t.Helper()
	// The files' identity, not their paths: every clone links the same cached
	// binaries under its own .cache/bin.
	h := sha512.New()
	for _, p := range []string{runsc, shim} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		fmt.Fprintf(h, "%d %d %d %d\n", st.Dev, st.Ino, fi.Size(), fi.ModTime().UnixNano())
	}
	cacheDir := filepath.Join(os.TempDir(), "gvisor-bootstrap-test")
	cache := filepath.Join(cacheDir, fmt.Sprintf("gvisor-%x.tar.bz2", h.Sum(nil)[:8]))
	if b, err := os.ReadFile(cache); err == nil {
		return b
	}
	dir := t.TempDir()
	for src, dst := range map[string]string{runsc: "runsc", shim: "containerd-shim-runsc-v1"} {
		if err := os.Link(src, filepath.Join(dir, dst)); err != nil {
			if out, err := exec.Command("cp", src, filepath.Join(dir, dst)).CombinedOutput(); err != nil {
				t.Fatalf("cp: %v %s", err, out)
			}
		}
	}
	os.MkdirAll(filepath.Join(dir, "gvisor-bin"), 0o755)
	os.WriteFile(filepath.Join(dir, "gvisor-bin", "runsc-metric-server"), []byte("#!/bin/sh\necho sidecar\n"), 0o755)
	out := filepath.Join(t.TempDir(), "gvisor.tar.bz2")
	cmd := exec.Command("sh", "-c", `tar -C "$1" -cf - runsc containerd-shim-runsc-v1 gvisor-bin | bzip2 -1 > "$2"`, "sh", dir, out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar | bzip2: %v %s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	storeBundle(cacheDir, cache, b)
	return b
}

// storeBundle keeps b as the one cached bundle (57 MB each: the bundles of
// older binaries go), written under a temporary name of its own so that a
// concurrent test process never reads a partial file.
func storeBundle(dir, cache string, b []byte) {
	if os.MkdirAll(dir, 0o755) != nil {
		return
	}
	f, err := os.CreateTemp(dir, ".gvisor-*.tmp")
	if err != nil {
		return
	}
	_, werr := f.Write(b)
	if cerr := f.Close(); werr != nil || cerr != nil || os.Rename(f.Name(), cache) != nil {
		_ = os.Remove(f.Name())
		return
	}
	old, _ := filepath.Glob(filepath.Join(dir, "gvisor-*.tar.bz2"))
	for _, o := range old {
		if o != cache {
			_ = os.Remove(o)
		}
	}
}

// The real runsc and shim, served as a bundle by the loopback server, installed
// and run.
func TestIntegrationRealRunscBundle(t *testing.T) {
	if testing.Short() {
		t.Skip("packs and unpacks 140 MB")
	}
	runsc := realBinary(t, "runsc")
	shim := realBinary(t, "containerd-shim-runsc-v1")
	e := newEnv(t)
	e.srv.PutBundle(rel1, arch, realBundle(t, runsc, shim))
	res := e.install(e.installer(rel1))
	if res.Layout != LayoutBundle || !res.Changed {
		t.Fatalf("result %+v", res)
	}
	for name, src := range map[string]string{"runsc": runsc, "containerd-shim-runsc-v1": shim} {
		want, _ := hashFile(src)
		if res.Digests[name] != want {
			t.Errorf("%s installed with sha512 %s, built binary has %s", name, res.Digests[name], want)
		}
	}
	out, err := execOutput(e.root.Path(bin+"/runsc"), "--version")
	if err != nil || !strings.Contains(out, "runsc version") || !strings.Contains(out, "spec:") {
		t.Fatalf("installed runsc --version: %v\n%s", err, out)
	}
	t.Logf("installed runsc --version: %s", strings.TrimSpace(out))
	out, err = execOutput(e.root.Path(bin+"/containerd-shim-runsc-v1"), "-v")
	if err != nil || !strings.Contains(out, "Version") {
		t.Errorf("installed shim -v: %v\n%s", err, out)
	}
	// runsc's sidecar lookup (the directory of its resolved executable) finds
	// the release's gvisor-bin.
	real, _ := filepath.EvalSymlinks(e.root.Path(bin + "/runsc"))
	if _, err := os.Stat(filepath.Join(filepath.Dir(real), "gvisor-bin", "runsc-metric-server")); err != nil {
		t.Errorf("sidecar not next to runsc's real path: %v", err)
	}
	if ps := e.installer(rel1).Verify(true); len(ps) != 0 {
		t.Errorf("deep verify: %v", ps)
	}
}
