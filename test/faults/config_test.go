package faults

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/proctable/proctabletest"
)

// Bad containerd configs are refused with the file and what to do; nothing of
// containerd's is written (the binaries may be installed: they are whole).
func TestBadContainerdConfig(t *testing.T) {
	cases := []struct {
		name, config string
		says         []string
	}{
		{"invalid TOML", "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"\n  sandbox_image = 1\n", []string{"line 2"}},
		{"unknown dialect", "version = 7\n", []string{"version = 7", "1 to 4"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := newNode(t)
			n.install(oldRel)
			n.writeFile("/etc/containerd/config.toml", c.config, 0o644)
			r := n.run()
			if r.code != 1 && r.code != 2 {
				t.Fatalf("want a failure: %s", r)
			}
			mustContain(t, r.stderr, append([]string{"FAILED", n.path("/etc/containerd/config.toml")}, c.says...)...)
			if got := string(n.read("/etc/containerd/config.toml")); got != c.config {
				t.Fatalf("bad config was rewritten:\n%s", got)
			}
			if _, err := os.Stat(n.path("/etc/containerd/runsc.toml")); err == nil {
				t.Fatal("runsc options written for a refused config")
			}
			t.Logf("binaries: %s", n.binState())
		})
	}
}

// TestContainerdTooOld feeds the real `containerd --version` of Debian's 1.6 through
// --containerd-version: refused (the shim cannot talk to it), nothing written.
func TestContainerdTooOld(t *testing.T) {
	out, err := exec.Command("/usr/bin/containerd", "--version").Output()
	if err != nil {
		t.Fatalf("Debian's containerd 1.6 (apt-get install containerd): %v", err)
	}
	ver := strings.TrimSpace(string(out))
	if !strings.Contains(ver, " 1.6.") {
		t.Fatalf("/usr/bin/containerd is not 1.6: %q", ver)
	}
	n := newNode(t)
	n.install(oldRel)
	r := n.run("--containerd-version", ver)
	if r.code != 1 && r.code != 2 {
		t.Fatalf("want a failure: %s", r)
	}
	mustContain(t, r.stderr, "FAILED", "1.6", "1.7")
	if n.configState([]byte(oldContainerdConfig), nil) != "old" {
		t.Fatal("config changed for a too-old containerd")
	}
}

// TestConfigRewrittenDuringRun is the reimage race, with the real binary: the run
// is paused (SIGSTOP via GVB_FAULTPOINT_ACTION=stop) at a fault point; another
// agent then replaces containerd's config with a fresh file without runsc (as
// Azure's provisioning does, atomically); the run is resumed.
//
// After the config step (the window the reconcile covers, and the long one: the
// restart and CRI verification run there), the run must notice the file changed
// behind it and reconcile again, so the final file is the agent's file plus runsc,
// byte-equal to what a clean run makes of it.
//
// The two narrower windows inside the config write are covered too:
//   - between the rename of the config and the end of the run: the run compares the
//     file with the content it left there and goes again;
//   - between the plan's read and the rename: Apply re-reads the file and refuses to
//     replace content it did not plan from (containerd.ErrChangedSincePlan); the
//     reconcile plans again from the agent's file.
func TestConfigRewrittenDuringRun(t *testing.T) {
	agents := strings.Replace(oldContainerdConfig, "pause:3.6", "pause:3.10", 1)
	ref := newNode(t)
	ref.writeFile("/etc/containerd/config.toml", agents, 0o644)
	if r := ref.run(); r.code != 10 {
		t.Fatalf("reference: %s", r)
	}
	want := string(ref.read("/etc/containerd/config.toml"))
	cases := []struct {
		point string
		stops int
	}{
		{"reconcile-config-done", 2},
		{"containerd-after-write:/etc/containerd/config.toml", 2},
		{"containerd-before-write:/etc/containerd/config.toml", 2},
	}
	for _, c := range cases {
		t.Run(c.point, func(t *testing.T) {
			n := newNode(t)
			n.install(newRel)
			code, stops, stderr := runPausedRewrite(t, n, c.point, agents)
			final := string(n.read("/etc/containerd/config.toml"))
			fixed := code == 10 && final == want
			if !fixed || stops != c.stops {
				t.Fatalf("exit %d, config written %d times (want %d), final config:\n%s\nlog:\n%s", code, stops, c.stops, final, stderr)
			}
			if !strings.Contains(stderr, "rewritten during the run") {
				t.Errorf("the re-run is not logged:\n%s", stderr)
			}
		})
	}
}

// runPausedRewrite runs `run` paused at point each time it passes it; at the first
// pause it atomically replaces containerd's config with agents. It returns the exit
// code and how many times the run passed the point.
func runPausedRewrite(t *testing.T, n *node, point, agents string) (int, int, string) {
	t.Helper()
	cmd := exec.Command(bin, "--root", n.dir, "run")
	cmd.Env = append(os.Environ(), "GVB_FAULTPOINT="+point, "GVB_FAULTPOINT_ACTION=stop")
	var errb strings.Builder
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stops := 0
	for {
		select {
		case err := <-done:
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			return code, stops, errb.String()
		case <-time.After(5 * time.Millisecond):
		}
		if !proctabletest.Stopped(cmd.Process.Pid) {
			continue
		}
		stops++
		if stops == 1 {
			n.writeFile("/etc/containerd/config.toml.agent", agents, 0o644)
			if err := os.Rename(n.path("/etc/containerd/config.toml.agent"), n.path("/etc/containerd/config.toml")); err != nil {
				t.Fatal(err)
			}
		}
		if stops > 4 {
			_ = cmd.Process.Kill()
			t.Fatal("the run keeps passing the point")
		}
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGCONT)
	}
}

// SIGTERM while the run plans a large containerd config (systemd stopping it,
// the kubelet gate's start timeout) stops the planning: the run fails at once
// saying so, and nothing of containerd's is written. The run is paused right
// after it read the config (fault point, SIGSTOP), sent SIGTERM, and resumed:
// the rest of the plan (the edit and its self-check of ~10 MB) is still ahead.
func TestSIGTERMStopsPlanning(t *testing.T) {
	n := newNode(t)
	n.install(newRel)
	var b strings.Builder
	b.WriteString(oldContainerdConfig)
	for i := 0; b.Len() < 10<<20; i++ {
		fmt.Fprintf(&b, "[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"registry-%d.example.com\"]\n  endpoint = [\"https://mirror-%d.example.com\"]\n", i, i)
	}
	big := b.String()
	n.writeFile("/etc/containerd/config.toml", big, 0o644)

	cmd := exec.Command(bin, "--root", n.dir, "run")
	cmd.Env = append(os.Environ(), "GVB_FAULTPOINT=containerd-plan-read", "GVB_FAULTPOINT_ACTION=stop")
	var errb strings.Builder
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.After(2 * time.Minute)
	for !proctabletest.Stopped(cmd.Process.Pid) {
		select {
		case err := <-done:
			t.Fatalf("the run ended (%v) before it reached the plan:\n%s", err, errb.String())
		case <-deadline:
			_ = cmd.Process.Kill()
			t.Fatalf("the run did not reach the plan:\n%s", errb.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	_ = syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
	_ = syscall.Kill(cmd.Process.Pid, syscall.SIGCONT)
	var err error
	select {
	case err = <-done:
	case <-deadline:
		_ = cmd.Process.Kill()
		t.Fatalf("the run did not end after SIGTERM:\n%s", errb.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	stderr := errb.String()
	if code == 0 || !strings.Contains(stderr, "stopped before it finished") || !strings.Contains(stderr, "nothing was written") {
		t.Fatalf("exit %d, want a failure saying the plan was stopped:\n%s", code, stderr)
	}
	if got := string(n.read("/etc/containerd/config.toml")); got != big {
		t.Fatal("containerd's config was changed by a stopped run")
	}
	if _, err := os.Stat(n.path("/etc/containerd/runsc.toml")); err == nil {
		t.Fatal("runsc options written by a stopped run")
	}
	t.Logf("user sees (exit %d): %s", code, lastLine(stderr, "stopped"))
}

// lastLine is the last line of s that contains sub.
func lastLine(s, sub string) string {
	lines := strings.Split(s, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], sub) {
			return lines[i]
		}
	}
	return ""
}
