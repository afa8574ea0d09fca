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

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/config"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/release/releasetest"
)

func TestInstallLooseLayout(t *testing.T) {
	e := newEnv(t)
	e.srv.AddLoose(rel1, arch, releasetest.Script("runsc", rel1), releasetest.Script("shim", rel1))
	res := e.install(e.installer(rel1))
	if !res.Changed || res.Layout != LayoutLoose || res.Release != rel1 || res.Arch != arch {
		t.Fatalf("result %+v", res)
	}
	if got := e.runInstalled(RunscName); !strings.Contains(got, "runsc version "+rel1) {
		t.Errorf("installed runsc says %q", got)
	}
	if got := e.runInstalled(ShimName); !strings.Contains(got, "shim version "+rel1) {
		t.Errorf("installed shim says %q", got)
	}
	// The missing bundle was probed first (its small .sha512), then loose files.
	dir := releasetest.BasePath + "/" + rel1 + "/" + arch
	want := []string{
		"GET " + dir + "/gvisor.tar.bz2.sha512", "GET " + dir + "/gvisor.tar.bz2",
		"GET " + dir + "/runsc.sha512", "GET " + dir + "/runsc",
		"GET " + dir + "/containerd-shim-runsc-v1.sha512", "GET " + dir + "/containerd-shim-runsc-v1",
	}
	if diff := cmp.Diff(want, e.srv.Requests()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	st, err := LoadState(e.root)
	if err != nil || st.Release != rel1 || st.Layout != LayoutLoose || st.Artifacts[RunscName] != releasetest.Digest(releasetest.Script("runsc", rel1)) {
		t.Fatalf("state %+v, %v", st, err)
	}
	for p, fs := range st.Files {
		fi, err := os.Stat(e.root.Path(p))
		if err != nil || fi.Mode().Perm() != 0o755 || fs.Size != fi.Size() {
			t.Errorf("%s: %v %v", p, fi, err)
		}
	}
	if _, err := os.Lstat(e.root.Path(bin + "/" + SidecarDir)); err == nil {
		t.Error("loose layout created gvisor-bin")
	}
	if ps := e.installer(rel1).Verify(true); len(ps) != 0 {
		t.Errorf("verify after install: %v", ps)
	}
}

func TestInstallBundleLayout(t *testing.T) {
	e := newEnv(t)
	e.srv.AddBundle(rel1, arch, bundleFiles(rel1))
	e.srv.AddLoose(rel1, arch, []byte("loose files must not be used"), []byte("x"))
	res := e.install(e.installer(rel1))
	if res.Layout != LayoutBundle {
		t.Fatalf("layout %q", res.Layout)
	}
	for _, n := range []string{"runsc", "containerd-shim-runsc-v1", "gvisor-bin/checkpointgofer", "gvisor-bin/runsc-metric-server"} {
		if res.Digests[n] != releasetest.Digest(bundleFiles(rel1)[n]) {
			t.Errorf("digest of %s = %q", n, res.Digests[n])
		}
	}
	if e.srv.Count(releasetest.BasePath+"/"+rel1+"/"+arch+"/runsc") != 0 {
		t.Error("fetched loose runsc although the bundle exists")
	}
	// runsc finds gvisor-bin next to its real path: the sidecars must be there,
	// and BinDir/gvisor-bin (the documented layout) must show the same files.
	real, err := filepath.EvalSymlinks(e.root.Path(bin + "/runsc"))
	if err != nil {
		t.Fatal(err)
	}
	for _, side := range []string{filepath.Join(filepath.Dir(real), "gvisor-bin", "checkpointgofer"), e.root.Path(bin + "/gvisor-bin/checkpointgofer")} {
		out, err := execOutput(side)
		if err != nil || !strings.Contains(out, "checkpointgofer version "+rel1) {
			t.Errorf("sidecar %s: %q %v", side, out, err)
		}
	}
	if got := e.runInstalled(RunscName); !strings.Contains(got, rel1) {
		t.Errorf("runsc says %q", got)
	}
}

func TestInstallFromFileURL(t *testing.T) {
	e := newEnv(t)
	e.srv.AddBundle(rel1, arch, bundleFiles(rel1))
	dir := t.TempDir()
	e.srv.WriteTree(rel1, arch, dir)
	in := e.installer(rel1)
	in.Cfg.URL = "file://" + dir
	res := e.install(in)
	if res.Layout != LayoutBundle || res.Source != "file://"+dir {
		t.Fatalf("result %+v", res)
	}
	if len(e.srv.Requests()) != 0 {
		t.Errorf("file:// install talked to the server: %v", e.srv.Requests())
	}
	// The loose layout from a directory, too; the installed file is a copy,
	// never a symlink into the source directory.
	dir2 := t.TempDir()
	e2 := newEnv(t)
	e2.srv.AddLoose(rel1, arch, releasetest.Script("runsc", rel1), releasetest.Script("shim", rel1))
	e2.srv.WriteTree(rel1, arch, dir2)
	in2 := e2.installer(rel1)
	in2.Cfg.URL = "file://" + dir2
	if res := e2.install(in2); res.Layout != LayoutLoose {
		t.Fatalf("layout %q", res.Layout)
	}
	real, _ := filepath.EvalSymlinks(e2.root.Path(bin + "/runsc"))
	if strings.HasPrefix(real, dir2) {
		t.Errorf("runsc resolves into the source directory: %s", real)
	}
	// A wrong file:// directory is a clear error.
	in3 := e2.installer(rel2)
	in3.Cfg.URL = "file://" + t.TempDir()
	if _, err := in3.Install(context.Background(), false); err == nil || !strings.Contains(err.Error(), "--release-url") {
		t.Errorf("empty file:// dir: %v", err)
	}
}

func TestPinnedDigests(t *testing.T) {
	e := newEnv(t)
	files := bundleFiles(rel1)
	bundle := e.srv.AddBundle(rel1, arch, files)
	pin := releasetest.Digest(bundle)

	// Matching pin: installed; the pin is recorded as the artifact's digest.
	in := e.installer(rel1)
	in.Cfg.SHA512 = map[string]string{BundleName: strings.ToUpper(pin)}
	res := e.install(in)
	if res.Layout != LayoutBundle {
		t.Fatalf("layout %s", res.Layout)
	}
	before := snapshot(t, e.root, false)

	// A published .sha512 that disagrees with the pin is an error naming the
	// URL and both digests, raised before the big download.
	e.srv.AddBundle(rel2, arch, bundleFiles(rel2))
	in2 := e.installer(rel2)
	in2.Cfg.SHA512 = map[string]string{BundleName: pin}
	e.srv.ResetLog()
	_, err := in2.Install(context.Background(), false)

	t.Logf("error: %v", err)
	var ce *ChecksumError
	if !errors.As(err, &ce) || !ce.PinConflicts || !strings.Contains(err.Error(), "gvisor.tar.bz2.sha512") || !strings.Contains(err.Error(), pin) {
		t.Fatalf("want a pin conflict naming the URL and digests, got %v", err)
	}
	if n := e.srv.Count(releasetest.BasePath + "/" + rel2 + "/" + arch + "/gvisor.tar.bz2"); n != 0 {
		t.Errorf("downloaded the bundle %d times despite the conflict", n)
	}
	e.unchanged(before)

	// Pinned and no published checksum at all: the pin suffices.
	e.srv.Delete(releasetest.BasePath + "/" + rel2 + "/" + arch + "/gvisor.tar.bz2.sha512")
	bundle2 := e.srv.AddBundle(rel2, arch, bundleFiles(rel2))
	e.srv.Delete(releasetest.BasePath + "/" + rel2 + "/" + arch + "/gvisor.tar.bz2.sha512")
	in2.Cfg.SHA512 = map[string]string{BundleName: releasetest.Digest(bundle2)}
	if res := e.install(in2); !res.Changed || res.Release != rel2 {
		t.Fatalf("result %+v", res)
	}

	// Unpinned and unpublished: checksums are mandatory.
	e3 := newEnv(t)
	e3.srv.AddLoose(rel1, arch, releasetest.Script("runsc", rel1), releasetest.Script("shim", rel1))
	e3.srv.Delete(releasetest.BasePath + "/" + rel1 + "/" + arch + "/runsc.sha512")
	if _, err := e3.installer(rel1).Install(context.Background(), false); err == nil || !strings.Contains(err.Error(), "checksums are mandatory") {
		t.Errorf("missing .sha512: %v", err)
	}

	// Pins for the loose files only: the loose layout is used (the bundle's
	// sidecars would have no pinned anchor), and the pins are checked.
	e4 := newEnv(t)
	runsc, shim := releasetest.Script("runsc", rel1), releasetest.Script("shim", rel1)
	e4.srv.AddLoose(rel1, arch, runsc, shim)
	e4.srv.AddBundle(rel1, arch, bundleFiles(rel1))
	in4 := e4.installer(rel1)
	in4.Cfg.SHA512 = map[string]string{RunscName: releasetest.Digest(runsc), ShimName: releasetest.Digest(shim)}
	if res := e4.install(in4); res.Layout != LayoutLoose {
		t.Errorf("layout %s with loose pins", res.Layout)
	}
	in4.Cfg.SHA512[RunscName] = releasetest.Digest([]byte("something else"))
	if ps := in4.Verify(false); len(ps) == 0 {
		t.Error("verify accepted an install whose digest differs from the pin")
	}
}

func TestNotFound(t *testing.T) {
	e := newEnv(t)
	e.srv.AddLoose(rel1, arch, releasetest.Script("runsc", rel1), releasetest.Script("shim", rel1))
	e.install(e.installer(rel1))
	before := snapshot(t, e.root, false)
	_, err := e.installer("20990101.0").Install(context.Background(), false)

	t.Logf("error: %v", err)
	if err == nil || !strings.Contains(err.Error(), "no gVisor release 20990101.0") || !strings.Contains(err.Error(), "--release") {
		t.Fatalf("err %v", err)
	}
	var fe *FetchError
	if !errors.As(err, &fe) || fe.Attempts != 1 || fe.Kind != KindNotFound {
		t.Errorf("404 must not be retried: %+v", fe)
	}
	e.unchanged(before)
}

func TestWrongArch(t *testing.T) {
	e := newEnv(t)
	e.srv.AddBundle(rel1, arch, bundleFiles(rel1))
	e.install(e.installer(rel1))
	before := snapshot(t, e.root, false)
	in := e.installer(rel1)
	in.Cfg.Arch = "aarch64"
	_, err := in.Install(context.Background(), false)

	t.Logf("error: %v", err)
	if err == nil || !strings.Contains(err.Error(), "wrong architecture") || !strings.Contains(err.Error(), "aarch64") {
		t.Fatalf("err %v", err)
	}
	e.unchanged(before)
}

func TestConnectionResetIsRetried(t *testing.T) {
	e := newEnv(t)
	e.srv.AddLoose(rel1, arch, releasetest.Script("runsc", rel1), releasetest.Script("shim", rel1))
	p := releasetest.BasePath + "/" + rel1 + "/" + arch + "/runsc"
	e.srv.SetFault(p, releasetest.Fault{Times: 2, Reset: true})
	e.install(e.installer(rel1))
	if n := e.srv.Count(p); n < 3 {
		t.Errorf("runsc requested %d times, want at least 3 (two resets, then success)", n)
	}
	if !strings.Contains(e.logs.String(), "retrying") {
		t.Errorf("no retry logged:\n%s", e.logs)
	}
}

func TestServerErrorThenSuccessIsRetried(t *testing.T) {
	e := newEnv(t)
	e.srv.AddBundle(rel1, arch, bundleFiles(rel1))
	p := releasetest.BasePath + "/" + rel1 + "/" + arch + "/gvisor.tar.bz2"
	e.srv.SetFault(p, releasetest.Fault{Times: 2, Code: 503})
	e.install(e.installer(rel1))
	if n := e.srv.Count(p); n != 3 {
		t.Errorf("bundle requested %d times, want 3 (two 503s, then success)", n)
	}
	// More failures than retries: an error naming the URL and the attempts.
	e2 := newEnv(t)
	e2.srv.AddLoose(rel2, arch, releasetest.Script("runsc", rel2), releasetest.Script("shim", rel2))
	e2.install(e2.installer(rel2))
	before := snapshot(t, e2.root, false)
	e2.srv.AddBundle(rel1, arch, bundleFiles(rel1))
	e2.srv.SetFault(p, releasetest.Fault{Code: 500})
	_, err := e2.installer(rel1).Install(context.Background(), false)

	t.Logf("error: %v", err)
	if err == nil || !strings.Contains(err.Error(), "HTTP 500") || !strings.Contains(err.Error(), "(3 attempts)") || !strings.Contains(err.Error(), "gvisor.tar.bz2") {
		t.Fatalf("err %v", err)
	}
	e2.unchanged(before)
}

// failedUpgrade installs rel1, breaks rel2 with fault, tries to upgrade and
// checks the error and that rel1 is untouched.
func failedUpgrade(t *testing.T, fault releasetest.Fault, timeout time.Duration, wantErr string, wantAttempts int) {
	t.Helper()
	e := newEnv(t)
	e.srv.AddBundle(rel1, arch, bundleFiles(rel1))
	e.install(e.installer(rel1))
	before := snapshot(t, e.root, false)
	st1, _ := LoadState(e.root)

	e.srv.AddBundle(rel2, arch, bundleFiles(rel2))
	p := releasetest.BasePath + "/" + rel2 + "/" + arch + "/gvisor.tar.bz2"
	e.srv.SetFault(p, fault)
	in := e.installer(rel2)
	in.Cfg.Retries = wantAttempts - 1
	in.Cfg.Timeout = config.Duration(timeout)
	_, err := in.Install(context.Background(), false)

	t.Logf("error: %v", err)
	if err == nil || !strings.Contains(err.Error(), wantErr) {
		t.Fatalf("err %v, want %q", err, wantErr)
	}
	if n := e.srv.Count(p); n != wantAttempts {
		t.Errorf("%d attempts, want %d", n, wantAttempts)
	}
	e.unchanged(before)
	if st2, _ := LoadState(e.root); !cmp.Equal(st1, st2) {
		t.Errorf("state changed")
	}
	if got := e.runInstalled(RunscName); !strings.Contains(got, rel1) {
		t.Errorf("runsc now says %q", got)
	}
}

func TestStallTimesOut(t *testing.T) {
	failedUpgrade(t, releasetest.Fault{Stall: true}, 300*time.Millisecond, "timed out", 2)
}

func TestTruncatedBody(t *testing.T) {
	failedUpgrade(t, releasetest.Fault{Truncate: true}, 10*time.Second, "truncated", 3)
}

func TestChecksumMismatchNotRetried(t *testing.T) {
	e := newEnv(t)
	e.srv.AddBundle(rel1, arch, bundleFiles(rel1))
	e.install(e.installer(rel1))
	before := snapshot(t, e.root, false)
	e.srv.AddBundle(rel2, arch, bundleFiles(rel2))
	p := releasetest.BasePath + "/" + rel2 + "/" + arch + "/gvisor.tar.bz2"
	e.srv.Put(p+".sha512", releasetest.SHA512Line([]byte("another bundle"), "gvisor.tar.bz2"))
	_, err := e.installer(rel2).Install(context.Background(), false)

	t.Logf("error: %v", err)
	var ce *ChecksumError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), releasetest.Digest([]byte("another bundle"))) {
		t.Fatalf("err %v", err)
	}
	if n := e.srv.Count(p); n != 1 {
		t.Errorf("bundle fetched %d times; a checksum mismatch must not be retried", n)
	}
	e.unchanged(before)
	// A .sha512 that names another file is refused too.
	e.srv.Put(p+".sha512", releasetest.SHA512Line(bundleFiles(rel2)[RunscName], "runsc"))
	if _, err := e.installer(rel2).Install(context.Background(), false); err == nil || !strings.Contains(err.Error(), `digest is for "runsc"`) {
		t.Errorf("err %v", err)
	}
	e.unchanged(before)
}

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
	if err := os.Remove(e.root.Path(bin + "/runsc")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/bin/true", e.root.Path(bin+"/runsc")); err != nil {
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
	if _, err := os.Lstat(e.root.Path(bin + "/gvisor-bin")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale gvisor-bin link: %v", err)
	}
	entries, _ := os.ReadDir(e.root.Path(bin))
	for _, en := range entries {
		if strings.HasPrefix(en.Name(), ".") {
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
		if strings.HasPrefix(en.Name(), ".") {
			t.Errorf("leftover %s", en.Name())
		}
	}
}

func TestFailureWritingStateRollsBack(t *testing.T) {
	e := newEnv(t)
	e.srv.AddBundle(rel1, arch, bundleFiles(rel1))
	e.install(e.installer(rel1))
	before := snapshot(t, e.root, false)
	// Make the state unwritable: its directory becomes read-only for this
	// write by replacing the state file with a directory.
	sp := e.root.Path(StatePath)
	data, _ := os.ReadFile(sp)
	if err := os.Remove(sp); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(sp, "block"), 0o755); err != nil {
		t.Fatal(err)
	}
	e.srv.AddBundle(rel2, arch, bundleFiles(rel2))
	in := e.installer(rel2)
	// LoadState fails on a directory; write a state the installer can read by
	// pointing it through the same path is impossible, so the old state is
	// gone: the installer must still restore the entry points it replaced.
	_, err := in.Install(context.Background(), false)

	t.Logf("error: %v", err)
	if err == nil || !strings.Contains(err.Error(), "previous installation was restored") {
		t.Fatalf("err %v", err)
	}
	os.RemoveAll(sp)
	if err := os.WriteFile(sp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	e.unchanged(before)
	if got := e.runInstalled(RunscName); !strings.Contains(got, rel1) {
		t.Errorf("runsc is %q", got)
	}
}

func TestUninstall(t *testing.T) {
	e := newEnv(t)
	e.srv.AddBundle(rel1, arch, bundleFiles(rel1))
	e.srv.AddBundle(rel2, arch, bundleFiles(rel2))
	e.install(e.installer(rel1))
	e.install(e.installer(rel2))
	in := e.installer(rel2)
	dry, err := in.Uninstall(true)
	if err != nil || len(dry) != 6 {
		t.Fatalf("dry run: %v %v", dry, err)
	}
	if _, err := os.Lstat(e.root.Path(bin + "/runsc")); err != nil {
		t.Fatal("dry run removed runsc")
	}
	removed, err := in.Uninstall(false)
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

// A mirror URL with a credential in its query (an Azure SAS token): it is sent
// with every file, never written to the state or the log, and a rotated token
// is not a reason to reinstall.
func TestSourceWithTokenIsNotRecorded(t *testing.T) {
	e := newEnv(t)
	e.srv.AddBundle(rel1, arch, bundleFiles(rel1))
	in := e.installer(rel1)
	in.Cfg.URL = e.srv.DirURL(rel1, arch) + "?sv=2024&sig=SECRET1"
	e.install(in)
	data, _ := os.ReadFile(e.root.Path(StatePath))
	if strings.Contains(string(data), "SECRET") || strings.Contains(e.logs.String(), "SECRET") {
		t.Errorf("token leaked:\n%s\n%s", data, e.logs)
	}
	e.srv.ResetLog()
	in.Cfg.URL = e.srv.DirURL(rel1, arch) + "?sv=2024&sig=SECRET2"
	if res := e.install(in); res.Changed || len(e.srv.Requests()) != 0 {
		t.Errorf("rotated token caused a reinstall")
	}
}

// A crash between the shim's and runsc's swaps: runsc and its sidecars still
// come from one release, the state still describes it, verify says what is
// off, and the next install finishes the job and cleans up after the crash.
func TestCrashBetweenSwaps(t *testing.T) {
	e := newEnv(t)
	e.srv.AddBundle(rel1, arch, bundleFiles(rel1))
	e.srv.AddBundle(rel2, arch, bundleFiles(rel2))
	r1 := e.install(e.installer(rel1))

	testHookAfterSwap = func(name string) {
		if name == ShimName {
			panic("simulated crash")
		}
	}
	func() {
		defer func() { _ = recover() }()
		_, _ = e.installer(rel2).Install(context.Background(), false)
	}()
	testHookAfterSwap = nil

	real, _ := filepath.EvalSymlinks(e.root.Path(bin + "/runsc"))
	if real != e.root.Path(r1.Dir+"/runsc") {
		t.Fatalf("runsc resolves to %s", real)
	}
	out, _ := execOutput(filepath.Join(filepath.Dir(real), "gvisor-bin", "checkpointgofer"))
	if !strings.Contains(out, rel1) {
		t.Errorf("runsc of %s sits beside sidecars saying %q", rel1, out)
	}
	if st, _ := LoadState(e.root); st.Release != rel1 {
		t.Errorf("state says %s", st.Release)
	}
	ps := e.installer(rel1).Verify(false)
	if len(ps) == 0 {
		t.Error("verify found nothing after a half-finished upgrade")
	}
	for _, p := range ps {
		t.Logf("verify: %s", p)
	}

	r2 := e.install(e.installer(rel2))
	if ps := e.installer(rel2).Verify(true); len(ps) != 0 {
		t.Errorf("after finishing: %v", ps)
	}
	entries, _ := os.ReadDir(e.root.Path(bin))
	var names []string
	for _, en := range entries {
		names = append(names, en.Name())
	}
	want := []string{"containerd-shim-runsc-v1", "gvisor-bin", filepath.Base(r1.Dir), filepath.Base(r2.Dir), "runsc"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("bin dir after recovery (-want +got):\n%s", diff)
	}
}

// Two installs at once (the boot unit and an operator) serialize on the bin
// directory's lock; the second finds the work done.
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

func TestOversizedChecksumFileRefused(t *testing.T) {
	e := newEnv(t)
	e.srv.AddBundle(rel1, arch, bundleFiles(rel1))
	e.srv.Put(releasetest.BasePath+"/"+rel1+"/"+arch+"/gvisor.tar.bz2.sha512", make([]byte, 1<<20))
	_, err := e.installer(rel1).Install(context.Background(), false)
	var fe *FetchError
	if !errors.As(err, &fe) || fe.Kind != KindPermanent || fe.Attempts != 1 || !strings.Contains(err.Error(), "larger than allowed") {
		t.Fatalf("err %v", err)
	}
}

// Uninstall leaves alone an entry point someone replaced after the install.
func TestUninstallLeavesForeignFiles(t *testing.T) {
	e := newEnv(t)
	e.srv.AddLoose(rel1, arch, releasetest.Script("runsc", rel1), releasetest.Script("shim", rel1))
	e.install(e.installer(rel1))
	p := e.root.Path(bin + "/runsc")
	os.Remove(p)
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho mine\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	removed, err := e.installer(rel1).Uninstall(false)
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
