// Package proctabletest runs a test where the process table is the test's own:
// in a fresh pid and mount namespace, with a procfs of that namespace mounted
// under a node root. The machine's other processes are then out of sight (here,
// process 1 of the test machine cannot even be inspected), so whether a release
// directory is in use depends only on what the test starts.
package proctabletest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

const envInside = "GVB_PROCTABLE_TEST"

// InOwnPIDNamespace re-runs the calling test (a top-level test, no subtest) in
// a child process that is process 1 of a new pid namespace, in a private mount
// namespace, and reports the child's result. It returns true in the child,
// where the test body runs, and false in the parent, which must return.
func InOwnPIDNamespace(t *testing.T) bool {
	t.Helper()
	if os.Getenv(envInside) == t.Name() {
		// Mounts made here (the procfs) must not reach the machine's namespace.
		if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
			t.Fatalf("make the mount namespace private: %v", err)
		}
		return true
	}
	if strings.Contains(t.Name(), "/") {
		t.Fatalf("InOwnPIDNamespace runs top-level tests only, not %s", t.Name())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.v", "-test.count=1", "-test.timeout=3m")
	cmd.Env = append(os.Environ(), envInside+"="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if errors.Is(err, syscall.EPERM) {
		t.Skipf("cannot create a pid namespace here: %v", err)
	}
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()+" ") {
		t.Fatalf("%s in its own pid namespace: %v\n%s", t.Name(), err, out)
	}
	t.Logf("ran in its own pid namespace:\n%s", out)
	return false
}

// MountProc mounts a procfs of the test's pid namespace at dir (a root's
// /proc), unmounted at the end of the test. Only a kernel or sandbox that
// refuses mounts (EPERM) skips the test.
func MountProc(t testing.TB, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("proc", dir, "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		if errors.Is(err, syscall.EPERM) {
			t.Skipf("mount a procfs on %s: %v (not allowed to mount here)", dir, err)
		}
		t.Fatalf("mount a procfs on %s: %v", dir, err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
}
