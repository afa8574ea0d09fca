package proctabletest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// CopySleeper copies the machine's sleep(1) to p: a stand-in for a sandbox
// executing from a release directory.
func CopySleeper(t testing.TB, p string) {
	t.Helper()
	src, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

// StartSleeper runs p (a CopySleeper copy); the process is killed and reaped at
// the end of the test.
func StartSleeper(t testing.TB, p string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(p, "600")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p, err)
	}
	t.Cleanup(func() { StopSleeper(cmd) })
	return cmd
}

// StopSleeper kills and reaps a StartSleeper process, once.
func StopSleeper(cmd *exec.Cmd) {
	if cmd.ProcessState == nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
}
