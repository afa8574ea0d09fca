package release

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

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
	if _, err := os.Lstat(e.root.LinkPath(bin + "/" + SidecarDir)); err == nil {
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

// failedUpgrade installs rel1, breaks rel2 with fault, tries to upgrade and

// checks the error and that rel1 is untouched.

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

// Two installs at once (the boot unit and an operator) serialize on the bin

// directory's lock; the second finds the work done.

// Uninstall leaves alone an entry point someone replaced after the install.

// An image build installs from an uploaded copy; the node's config names the real
// mirror. The same release from another source is not fetched again: no request,
// no write (a baked image's first boot needs no network).
func TestSameReleaseFromAnotherSourceIsANoop(t *testing.T) {
	e := newEnv(t)
	e.srv.AddLoose(rel1, arch, releasetest.Script("runsc", rel1), releasetest.Script("shim", rel1))
	first := e.installer(rel1)
	first.Cfg.URL = e.srv.DirURL(rel1, arch)
	e.install(first)
	before := snapshot(t, e.root, true)
	e.srv.ResetLog()

	mirror := e.installer(rel1)
	mirror.Cfg.URL = "https://mirror.invalid/gvisor/" + rel1 + "/" + arch
	res := e.install(mirror)
	if res.Changed || len(e.srv.Requests()) != 0 {
		t.Fatalf("reinstalled the same release from another source: %+v, requests %v", res, e.srv.Requests())
	}
	if diff := cmp.Diff(before, snapshot(t, e.root, true)); diff != "" {
		t.Fatalf("the no-op wrote (-before +after):\n%s", diff)
	}
	if ps := mirror.Verify(false); len(ps) != 0 {
		t.Fatalf("verify: %+v", ps)
	}
}
