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

// A crash right after .gvisor-current moved: the entry points are the new
// release, the state still describes the old one, so verify reports the node
// and the next install finishes the job. (Every other crash point:
// TestCrashAtEveryPlacementStep.)
func TestCrashAfterSwapBeforeState(t *testing.T) {
	e := newEnv(t)
	e.srv.AddBundle(rel1, arch, bundleFiles(rel1))
	e.srv.AddBundle(rel2, arch, bundleFiles(rel2))
	r1 := e.install(e.installer(rel1))
	if !crash(e, e.installer(rel2), "release-current-swapped") {
		t.Fatal("never reached the swap")
	}
	real, _ := filepath.EvalSymlinks(e.root.Path(bin + "/runsc"))
	out, _ := execOutput(filepath.Join(filepath.Dir(real), "gvisor-bin", "checkpointgofer"))
	if !strings.Contains(out, rel2) || !strings.Contains(e.runInstalled(RunscName), rel2) {
		t.Errorf("runsc %s sits beside sidecars saying %q", real, out)
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
	noLeftovers(t, e, filepath.Base(r1.Dir), filepath.Base(r2.Dir))
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
