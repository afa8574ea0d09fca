package faultpoint

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/proctable/proctabletest"
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

// TestStopPausesAtThePoint: with the stop action the child stops (every thread)
// before the statement after the point, and goes on when continued.
func TestStopPausesAtThePoint(t *testing.T) {
	if os.Getenv("FAULTPOINT_CHILD") == "stop" {
		Hit("here")
		os.Stdout.WriteString("resumed\n")
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestStopPausesAtThePoint$")
	cmd.Env = append(os.Environ(), "FAULTPOINT_CHILD=stop", Env+"=here", ActionEnv+"=stop")
	// A file, not a pipe: the test reads it while the child runs.
	outPath := t.TempDir() + "/out"
	f, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd.Stdout = f
	output := func() string { b, _ := os.ReadFile(outPath); return string(b) }
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !proctabletest.Stopped(cmd.Process.Pid) {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatal("the child never stopped")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := output(); got != "" {
		t.Fatalf("the child went on before it was continued: %q", got)
	}
	_ = syscall.Kill(cmd.Process.Pid, syscall.SIGCONT)
	if err := cmd.Wait(); err != nil || output() != "resumed\n" {
		t.Fatalf("after SIGCONT: %v, output %q", err, output())
	}
}
