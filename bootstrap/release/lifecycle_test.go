package release

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/release/releasetest"
)

func TestSecondRunMakesNoRequestAndNoWrite(t *testing.T) {
	e := newEnv(t)
	e.srv.AddBundle(rel1, arch, bundleFiles(rel1))
	first := e.install(e.installer(rel1))
	before := snapshot(t, e.root, true)
	e.srv.ResetLog()
	time.Sleep(10 * time.Millisecond) // a write now would show in the timestamps
	for _, deep := range []bool{false, true} {
		in := e.installer(rel1)
		in.Deep = deep
		res := e.install(in)
		if res.Changed {
			t.Errorf("deep=%v: second run changed something", deep)
		}
		if diff := cmp.Diff(first.Digests, res.Digests); diff != "" || res.Dir != first.Dir || res.Layout != LayoutBundle {
			t.Errorf("deep=%v: result differs: %s %+v", deep, diff, res)
		}
	}
	if r := e.srv.Requests(); len(r) != 0 {
		t.Errorf("second run made requests: %v", r)
	}
	if diff := cmp.Diff(before, snapshot(t, e.root, true)); diff != "" {
		t.Errorf("second run wrote (-before +after):\n%s", diff)
	}
	// Dry run of a satisfied install: nothing to do either.
	if res, err := e.installer(rel1).Install(context.Background(), true); err != nil || res.Changed {
		t.Errorf("dry run %+v %v", res, err)
	}
}

func TestTamperingIsDetectedAndRepaired(t *testing.T) {
	e := newEnv(t)
	e.srv.AddBundle(rel1, arch, bundleFiles(rel1))
	res := e.install(e.installer(rel1))
	side := e.root.Path(res.Dir + "/gvisor-bin/checkpointgofer")
	fi, _ := os.Stat(side)
	// Same size, different bytes, mtime put back: ctime still moves.
	orig, _ := os.ReadFile(side)
	evil := []byte(strings.Replace(string(orig), "checkpointgofer", "checkpointEVILr", 1))
	if err := os.WriteFile(side, evil, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(side, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	ps := e.installer(rel1).Verify(false)
	if len(ps) != 1 || ps[0].Path != res.Dir+"/gvisor-bin/checkpointgofer" || !strings.Contains(ps[0].What, "content changed") {
		t.Fatalf("verify: %v", ps)
	}
	// A link pointed elsewhere is found as well.
	e.srv.ResetLog()
	res2 := e.install(e.installer(rel1))
	if !res2.Changed || len(e.srv.Requests()) == 0 {
		t.Fatal("install did not repair")
	}
	if ps := e.installer(rel1).Verify(true); len(ps) != 0 {
		t.Errorf("after repair: %v", ps)
	}
	if err := os.Remove(e.root.LinkPath(bin + "/runsc")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/bin/true", e.root.LinkPath(bin+"/runsc")); err != nil {
		t.Fatal(err)
	}
	if ps := e.installer(rel1).Verify(false); len(ps) != 1 || !strings.Contains(ps[0].What, "points to /bin/true") {
		t.Errorf("verify: %v", ps)
	}
}

func TestUpgradeKeepsPreviousReleaseOnly(t *testing.T) {
	e := newEnv(t)
	rel3 := "20261101.0"
	for _, r := range []string{rel1, rel2, rel3} {
		e.srv.AddBundle(r, arch, bundleFiles(r))
	}
	r1 := e.install(e.installer(rel1))
	r2 := e.install(e.installer(rel2))
	if _, err := os.Stat(e.root.Path(r1.Dir)); err != nil {
		t.Errorf("previous release removed right after the upgrade: %v", err)
	}
	st, _ := LoadState(e.root)
	if st.Previous != r1.Dir || st.Dir != r2.Dir {
		t.Errorf("state dirs %s %s", st.Dir, st.Previous)
	}
	r3 := e.install(e.installer(rel3))
	if _, err := os.Stat(e.root.Path(r1.Dir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("release before the previous one kept: %v", err)
	}
	for _, d := range []string{r2.Dir, r3.Dir} {
		if _, err := os.Stat(e.root.Path(d)); err != nil {
			t.Error(err)
		}
	}
	if got := e.runInstalled("gvisor-bin/checkpointgofer"); !strings.Contains(got, rel3) {
		t.Errorf("gvisor-bin is %q", got)
	}
	// Bundle to loose: our gvisor-bin link goes away with the bundle layout.
	rel4 := "20261201.0"
	e.srv.AddLoose(rel4, arch, releasetest.Script("runsc", rel4), releasetest.Script("shim", rel4))
	e.install(e.installer(rel4))
	if _, err := os.Lstat(e.root.LinkPath(bin + "/gvisor-bin")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale gvisor-bin link: %v", err)
	}
	entries, _ := os.ReadDir(e.root.Path(bin))
	for _, en := range entries {
		if strings.HasPrefix(en.Name(), ".") && en.Name() != CurrentLink {
			t.Errorf("leftover %s", en.Name())
		}
	}
}

func TestReplacesAManualFlatInstall(t *testing.T) {
	e := newEnv(t)
	b := e.root.Path(bin)
	if err := os.MkdirAll(filepath.Join(b, "gvisor-bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"runsc", "containerd-shim-runsc-v1", "gvisor-bin/checkpointgofer"} {
		if err := os.WriteFile(filepath.Join(b, f), releasetest.Script(f, "manual"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	old, _ := os.Open(filepath.Join(b, "runsc")) // a "running" runsc holds its inode
	defer old.Close()
	e.srv.AddBundle(rel1, arch, bundleFiles(rel1))
	e.install(e.installer(rel1))
	if got := e.runInstalled("gvisor-bin/checkpointgofer"); !strings.Contains(got, rel1) {
		t.Errorf("gvisor-bin: %q", got)
	}
	buf := make([]byte, 64)
	n, _ := old.ReadAt(buf, 0)
	if !strings.Contains(string(buf[:n]), "manual") {
		t.Errorf("the running runsc's inode changed: %q", buf[:n])
	}
	entries, _ := os.ReadDir(b)
	for _, en := range entries {
		if strings.HasPrefix(en.Name(), ".") && en.Name() != CurrentLink {
			t.Errorf("leftover %s", en.Name())
		}
	}
}

func TestUninstall(t *testing.T) {
	e := newEnv(t)
	e.srv.AddBundle(rel1, arch, bundleFiles(rel1))
	e.srv.AddBundle(rel2, arch, bundleFiles(rel2))
	e.install(e.installer(rel1))
	e.install(e.installer(rel2))
	in := e.installer(rel2)
	dry, err := in.Uninstall(context.Background(), true)
	if err != nil || len(dry) != 7 { // 3 entry points, .gvisor-current, 2 release dirs, the state
		t.Fatalf("dry run: %v %v", dry, err)
	}
	if _, err := os.Lstat(e.root.LinkPath(bin + "/runsc")); err != nil {
		t.Fatal("dry run removed runsc")
	}
	removed, err := in.Uninstall(context.Background(), false)
	if err != nil || !cmp.Equal(dry, removed) {
		t.Fatalf("removed %v, dry run said %v, %v", removed, dry, err)
	}
	entries, _ := os.ReadDir(e.root.Path(bin))
	if len(entries) != 0 {
		t.Errorf("left in bin dir: %v", entries)
	}
	if st, err := LoadState(e.root); err != nil || st.Release != "" {
		t.Errorf("state %+v %v", st, err)
	}
	if ps := in.Verify(false); len(ps) != 1 || ps[0].Path != StatePath {
		t.Errorf("verify after uninstall: %v", ps)
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	e := newEnv(t)
	e.srv.AddBundle(rel1, arch, bundleFiles(rel1))
	res, err := e.installer(rel1).Install(context.Background(), true)
	if err != nil || !res.Changed || !res.DryRun || len(res.WouldFetch) != 6 || !strings.HasSuffix(res.WouldFetch[1], "/gvisor.tar.bz2") {
		t.Fatalf("%+v %v", res, err)
	}
	if len(e.srv.Requests()) != 0 {
		t.Errorf("dry run made requests")
	}
	if _, err := os.Stat(e.root.Path("/usr")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dry run wrote: %v", err)
	}
}

func TestConcurrentInstallsDownloadOnce(t *testing.T) {
	e := newEnv(t)
	e.srv.AddBundle(rel1, arch, bundleFiles(rel1))
	results := make(chan Result, 2)
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			res, err := e.installer(rel1).Install(context.Background(), false)
			results <- res
			errs <- err
		}()
	}
	changed := 0
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		if (<-results).Changed {
			changed++
		}
	}
	if n := e.srv.Count(releasetest.BasePath + "/" + rel1 + "/" + arch + "/gvisor.tar.bz2"); changed != 1 || n != 1 {
		t.Errorf("%d installs changed the node, bundle downloaded %d times; want 1 and 1", changed, n)
	}
}

func TestUninstallLeavesForeignFiles(t *testing.T) {
	e := newEnv(t)
	e.srv.AddLoose(rel1, arch, releasetest.Script("runsc", rel1), releasetest.Script("shim", rel1))
	e.install(e.installer(rel1))
	p := e.root.LinkPath(bin + "/runsc")
	os.Remove(p)
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho mine\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	removed, err := e.installer(rel1).Uninstall(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range removed {
		if r == bin+"/runsc" {
			t.Error("removed a runsc gvisor-bootstrap did not put there")
		}
	}
	if got := e.runInstalled("runsc"); !strings.Contains(got, "mine") {
		t.Errorf("runsc %q", got)
	}
}
