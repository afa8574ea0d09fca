package nodelock

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
)

const lock = "/run/gvisor-bootstrap/run.lock"

func TestExclusiveAndWaitEndsWithContext(t *testing.T) {
	root := fsroot.New(t.TempDir())
	unlock, err := Acquire(context.Background(), root, lock, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Dir(root.Path(lock)))
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("lock directory: %v mode %v, want 0700", err, st.Mode())
	}
	waited := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := Acquire(ctx, root, lock, func() { close(waited) })
		errc <- err
	}()
	<-waited // the second Acquire saw the lock held
	cancel()
	if err := <-errc; err == nil || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "gave up waiting") {
		t.Fatalf("second Acquire after cancel: %v", err)
	}
	unlock()
	again, err := Acquire(context.Background(), root, lock, func() { t.Error("waited for a released lock") })
	if err != nil {
		t.Fatal(err)
	}
	again()
}

func TestDeadlineIsHonoured(t *testing.T) {
	root := fsroot.New(t.TempDir())
	unlock, err := Acquire(context.Background(), root, lock, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := Acquire(ctx, root, lock, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want the deadline's error, got %v", err)
	}
}

func TestRefusesWhatOthersControl(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	for name, setup := range map[string]func(t *testing.T, dir string){
		"symlinked lock file": func(t *testing.T, dir string) {
			must(t, os.MkdirAll(filepath.Join(dir, "run/gvisor-bootstrap"), 0o700))
			must(t, os.Symlink("/etc/passwd", filepath.Join(dir, lock)))
		},
		"lock file owned by another user": func(t *testing.T, dir string) {
			must(t, os.MkdirAll(filepath.Join(dir, "run/gvisor-bootstrap"), 0o700))
			must(t, os.WriteFile(filepath.Join(dir, lock), nil, 0o600))
			must(t, os.Chown(filepath.Join(dir, lock), 1000, 1000))
		},
		"directory owned by another user": func(t *testing.T, dir string) {
			must(t, os.MkdirAll(filepath.Join(dir, "run/gvisor-bootstrap"), 0o700))
			must(t, os.Chown(filepath.Join(dir, "run/gvisor-bootstrap"), 1000, 1000))
		},
		"world-writable directory (like /run/lock)": func(t *testing.T, dir string) {
			must(t, os.MkdirAll(filepath.Join(dir, "run/gvisor-bootstrap"), 0o700))
			must(t, os.Chmod(filepath.Join(dir, "run/gvisor-bootstrap"), 0o1777))
		},
		"directory is a symlink": func(t *testing.T, dir string) {
			must(t, os.MkdirAll(filepath.Join(dir, "run"), 0o755))
			must(t, os.MkdirAll(filepath.Join(dir, "elsewhere"), 0o700))
			must(t, os.Symlink("/elsewhere", filepath.Join(dir, "run/gvisor-bootstrap")))
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			setup(t, dir)
			unlock, err := Acquire(context.Background(), fsroot.New(dir), lock, nil)
			if err == nil {
				unlock()
				t.Fatal("lock taken")
			}
			if !strings.Contains(err.Error(), "refusing") {
				t.Errorf("error does not say it refuses: %v", err)
			}
			t.Logf("user sees: %v", err)
		})
	}
}

// A user other than root cannot hold the lock: the directory is root's, 0700.
func TestOtherUsersCannotHoldIt(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) not installed")
	}
	flock, err := exec.LookPath("flock")
	if err != nil {
		t.Skip("flock (util-linux) not installed")
	}
	dir := t.TempDir()
	must(t, os.Chmod(dir, 0o755))
	root := fsroot.New(dir)
	unlock, err := Acquire(context.Background(), root, lock, nil)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	out, err := exec.Command(setpriv, "--reuid", "65534", "--regid", "65534", "--clear-groups", flock, "-n", root.Path(lock), "true").CombinedOutput()
	if err == nil {
		t.Fatalf("user 65534 took the lock: %s", out)
	}
	if !strings.Contains(string(out), "ermission denied") {
		t.Fatalf("want permission denied, got %v: %s", err, out)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
