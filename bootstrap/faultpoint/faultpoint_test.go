package faultpoint

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
)

func TestHitOnlyTheArmedName(t *testing.T) {
	hits := 0
	old, oldArmed := kill, armed
	t.Cleanup(func() { kill, armed = old, oldArmed })
	kill = func() { hits++ }
	armed = "config-before-rename"
	Hit("download-done")
	Hit("")
	if hits != 0 {
		t.Fatalf("unarmed name hit %d times", hits)
	}
	Hit("config-before-rename")
	if hits != 1 {
		t.Fatalf("armed name hit %d times", hits)
	}
	armed = ""
	Hit("")
	if hits != 1 {
		t.Fatal("an empty name must never hit")
	}
}

// TestHitKillsTheProcess re-runs this test binary with the variable set: the
// child must die of SIGKILL at the point, before printing what follows it.
func TestHitKillsTheProcess(t *testing.T) {
	if os.Getenv("FAULTPOINT_CHILD") == "1" {
		Hit("here")
		os.Stdout.WriteString("survived\n")
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestHitKillsTheProcess$")
	cmd.Env = append(os.Environ(), "FAULTPOINT_CHILD=1", Env+"=here")
	out, err := cmd.Output()
	ee, ok := err.(*exec.ExitError)
	if !ok {
		t.Fatalf("child did not die: %v, output %q", err, out)
	}
	ws := ee.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want SIGKILL", ws)
	}
	if len(out) != 0 {
		t.Fatalf("child went on after the point: %q", out)
	}
}

func BenchmarkHitUnarmed(b *testing.B) {
	armed = ""
	for b.Loop() {
		Hit("config-before-rename")
	}
}
