package release

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/release/releasetest"
)

// mountTmpfs mounts a tmpfs on the node's bin dir. Tests run as root here; only
// a kernel or sandbox that refuses mounts (EPERM) skips them.
func mountTmpfs(t *testing.T, e *env, opts string) string {
	t.Helper()
	dir := e.root.Path(bin)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
		if errors.Is(err, syscall.EPERM) {
			t.Skipf("mount tmpfs: %v (not allowed to mount here)", err)
		}
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// A read-only bin dir: a tmpfs remounted read-only after the first install
// (chmod 0555 means nothing to root, who runs these tests).
func TestReadOnlyBinDir(t *testing.T) {
	e := newEnv(t)
	dir := mountTmpfs(t, e, "size=8m,mode=0755")
	e.srv.AddBundle(rel1, arch, bundleFiles(rel1))
	e.install(e.installer(rel1))
	before := snapshot(t, e.root, false)
	if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Fatalf("remount read-only: %v", err)
	}
	e.srv.AddBundle(rel2, arch, bundleFiles(rel2))
	e.srv.ResetLog()
	_, err := e.installer(rel2).Install(context.Background(), false)

	t.Logf("error: %v", err)
	if err == nil || !strings.Contains(err.Error(), "read-only file system") || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "writable") {
		t.Fatalf("err %v", err)
	}
	if r := e.srv.Requests(); len(r) != 0 {
		t.Errorf("downloaded into nowhere: %v", r)
	}
	e.unchanged(before)
	if got := e.runInstalled(RunscName); !strings.Contains(got, rel1) {
		t.Errorf("runsc %q", got)
	}
}

// A full disk: a 1 MiB tmpfs holds release 1, release 2 does not fit.
func TestFullDisk(t *testing.T) {
	e := newEnv(t)
	mountTmpfs(t, e, "size=1m,mode=0755")
	e.srv.AddBundle(rel1, arch, bundleFiles(rel1))
	e.install(e.installer(rel1))
	before := snapshot(t, e.root, false)

	big := make([]byte, 3<<20) // random: bzip2 cannot shrink it below the tmpfs
	_, _ = rand.Read(big)
	files := bundleFiles(rel2)
	files["gvisor-bin/gvisor_sentry"] = big
	e.srv.AddBundle(rel2, arch, files)
	_, err := e.installer(rel2).Install(context.Background(), false)

	t.Logf("error: %v", err)
	if err == nil || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("err %v", err)
	}
	var fe *FetchError
	if errors.As(err, &fe) && fe.Kind != KindLocal {
		t.Errorf("a full disk is not the server's fault: kind %v", fe.Kind)
	}
	e.unchanged(before)

	// A bundle that downloads fine (zeros compress to nothing) but does not
	// fit once unpacked.
	zeros := bundleFiles("20261201.0")
	zeros["gvisor-bin/gvisor_sentry"] = make([]byte, 3<<20)
	e.srv.AddBundle("20261201.0", arch, zeros)
	_, err = e.installer("20261201.0").Install(context.Background(), false)
	t.Logf("error: %v", err)
	if err == nil || !strings.Contains(err.Error(), "unpack gvisor.tar.bz2") || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("err %v", err)
	}
	e.unchanged(before)

	// Loose files that fit the download but not the disk: same.
	e.srv.AddLoose("20261101.0", arch, big, releasetest.Script("shim", "x"))
	if _, err := e.installer("20261101.0").Install(context.Background(), false); err == nil {
		t.Fatal("installed 3 MiB into 1 MiB")
	}
	e.unchanged(before)
	entries, _ := os.ReadDir(e.root.Path(bin))
	for _, en := range entries {
		if strings.HasPrefix(en.Name(), ".") && en.Name() != CurrentLink {
			t.Errorf("leftover %s fills the disk", en.Name())
		}
	}
}
