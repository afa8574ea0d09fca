package release

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/release/releasetest"
)

// kubelet's gate retries every few seconds: a bundle that failed verification
// is not downloaded again until its back-off has passed, unless what is asked
// for changed; a success forgets the failure.
func TestFailedVerificationIsNotDownloadedAgainInALoop(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	timeNow = func() time.Time { return now }
	t.Cleanup(func() { timeNow = time.Now })

	e := newEnv(t)
	bundle := e.srv.AddBundle(rel1, arch, bundleFiles(rel1))
	p := releasetest.BasePath + "/" + rel1 + "/" + arch + "/gvisor.tar.bz2"
	good := releasetest.SHA512Line(bundle, "gvisor.tar.bz2")
	e.srv.Put(p+".sha512", releasetest.SHA512Line([]byte("another bundle"), "gvisor.tar.bz2"))
	install := func() error {
		_, err := e.installer(rel1).Install(context.Background(), false)
		t.Logf("install: %v", err)
		return err
	}

	var ce *ChecksumError
	if err := install(); !errors.As(err, &ce) {
		t.Fatalf("first attempt: want a checksum error, got %v", err)
	}
	if n := e.srv.Count(p); n != 1 {
		t.Fatalf("bundle requested %d times, want 1", n)
	}
	if fi, err := os.Stat(e.root.Path(FailedDownloadPath)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("failure record: %v %v, want mode 0600", fi, err)
	}

	// Within the back-off: refused at once, naming the earlier checksum failure.
	now = now.Add(fetchBackoffBase - time.Second)
	var nr *NotRetriedError
	err := install()
	if !errors.As(err, &nr) || !strings.Contains(err.Error(), "sha512 is") || !strings.Contains(err.Error(), e.root.Path(FailedDownloadPath)) {
		t.Fatalf("within the back-off: got %v", err)
	}
	if n := e.srv.Count(p); n != 1 {
		t.Fatalf("bundle downloaded again within the back-off (%d requests)", n)
	}

	// Past it: one more download, which fails again and doubles the pause.
	now = now.Add(2 * time.Second)
	if err := install(); !errors.As(err, &ce) {
		t.Fatalf("after the back-off: want a checksum error, got %v", err)
	}
	if n := e.srv.Count(p); n != 2 {
		t.Fatalf("bundle requested %d times after the back-off, want 2", n)
	}
	now = now.Add(fetchBackoffBase + time.Second)
	if err := install(); !errors.As(err, &nr) || nr.Last.Count != 2 {
		t.Fatalf("the second failure must double the pause: got %v", err)
	}

	// The mirror is fixed (another published digest): tried at once, installed, forgotten.
	e.srv.Put(p+".sha512", good)
	if err := install(); err != nil {
		t.Fatalf("fixed mirror: %v", err)
	}
	if n := e.srv.Count(p); n != 3 {
		t.Fatalf("bundle requested %d times, want 3", n)
	}
	if _, err := os.Stat(e.root.Path(FailedDownloadPath)); !os.IsNotExist(err) {
		t.Fatalf("the failure record outlived a successful install: %v", err)
	}
}

func TestFetchBackoffIsBounded(t *testing.T) {
	if got := fetchBackoff(1); got != fetchBackoffBase {
		t.Errorf("first pause %v", got)
	}
	if got := fetchBackoff(50); got != fetchBackoffMax {
		t.Errorf("pause after 50 failures %v, want %v", got, fetchBackoffMax)
	}
}
