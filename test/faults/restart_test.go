package faults

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/cri"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/reconcile"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/test/containerdproc"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/test/faults/fakesystemd"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/test/testbin"
)

// serviceNode is a node whose containerd is a real containerd 2 process serving
// the CRI under the root, managed by a fake systemd on a real D-Bus (fakesystemd),
// so the real binary restarts it exactly as on a node.
type serviceNode struct {
	*node
	proc   *containerdproc.Proc
	sd     *fakesystemd.Manager
	old    []byte // containerd's config before the run
	newCfg []byte // what a clean run makes of it
}

func newServiceNode(t *testing.T) *serviceNode {
	t.Helper()
	cd := testbin.Require(t, "containerd-2")
	dir, err := os.MkdirTemp("", "gvbf")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n := newNodeIn(t, dir)
	n.cdVers = "2.3.7"
	n.extra = "\n[boot]\nverify_timeout = \"15s\"\n"
	n.writeToolConfig()
	sock := n.path("/run/containerd")
	s := &serviceNode{node: n, old: []byte("version = 2\n" + containerdproc.Settings(sock) + containerdproc.AKS2404Body)}
	s.newCfg, _ = wantNewFor(t, string(s.old), "2.3.7")
	n.writeFile("/etc/containerd/config.toml", string(s.old), 0o644)
	if err := os.MkdirAll(sock, 0o755); err != nil {
		t.Fatal(err)
	}
	s.proc = containerdproc.New(t, cd, n.path("/etc/containerd/config.toml"), sock)
	if err := s.proc.Start(); err != nil {
		t.Fatal(err)
	}
	s.sd = fakesystemd.Start(t, dir, map[string]*fakesystemd.Unit{
		"containerd.service": {Restart: s.proc.Restart, Active: s.proc.Running, Stop: s.proc.Stop},
	})
	return s
}

// criServes reports whether the running containerd's CRI lists handler.
func (s *serviceNode) criServes(handler string) bool {
	s.t.Helper()
	rt, err := cri.Dial(s.root, "/run/containerd/containerd.sock")
	if err != nil {
		s.t.Fatal(err)
	}
	defer rt.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := cri.WaitStatus(ctx, rt, 20*time.Millisecond)
	if err != nil {
		s.t.Fatalf("CRI: %v\n%s", err, s.proc.Log())
	}
	return st.HasHandler(handler)
}

// TestRunRestartsThroughSystemdDBus is the baseline: the real binary restarts
// the real containerd once through systemd's D-Bus API, the CRI serves runsc, and
// a second run restarts nothing.
func TestRunRestartsThroughSystemdDBus(t *testing.T) {
	s := newServiceNode(t)
	s.install(oldRel)
	if r := s.run(); r.code != 10 {
		t.Fatalf("want exit 10: %s", r)
	}
	if s.sd.Restarts("containerd.service") != 1 || !s.criServes("runsc") || !s.criServes("runc") {
		t.Fatalf("restarts %d", s.sd.Restarts("containerd.service"))
	}
	if s.configState(s.old, s.newCfg) != "new" {
		t.Fatal("config")
	}
	if r := s.run(); r.code != 0 || s.sd.Restarts("containerd.service") != 1 {
		t.Fatalf("second run: %s (restarts %d)", r, s.sd.Restarts("containerd.service"))
	}
}

// TestSIGKILLAroundRestart kills the run just before it asks systemd to restart
// containerd and just after the restart, before the CRI check. The binaries are
// the new release, the config is the new file, and the next run completes: it
// restarts containerd itself when the running one does not serve runsc yet.
func TestSIGKILLAroundRestart(t *testing.T) {
	for _, c := range []struct {
		point         string
		servesAfter   bool
		nextCode      int
		totalRestarts int
	}{
		{"reconcile-before-restart", false, 10, 1},
		{"reconcile-after-restart", true, 0, 1},
	} {
		t.Run(c.point, func(t *testing.T) {
			s := newServiceNode(t)
			s.install(oldRel)
			r := s.exec([]string{"GVB_FAULTPOINT=" + c.point}, "run")
			if !r.killed {
				t.Fatalf("never reached %s: %s", c.point, r)
			}
			if b := s.binState(); b != newRel {
				t.Fatalf("binaries %q", b)
			}
			if s.configState(s.old, s.newCfg) != "new" {
				t.Fatal("config is not the new file")
			}
			if got := s.criServes("runsc"); got != c.servesAfter {
				t.Fatalf("after the crash the CRI serves runsc: %v, want %v", got, c.servesAfter)
			}
			r = s.run()
			if r.code != c.nextCode {
				t.Fatalf("next run: want exit %d: %s", c.nextCode, r)
			}
			if !s.criServes("runsc") || !bytes.Equal(s.read("/etc/containerd/config.toml"), s.newCfg) {
				t.Fatal("the next run did not complete the job")
			}
			if got := s.sd.Restarts("containerd.service"); got != c.totalRestarts {
				t.Fatalf("containerd restarted %d times in all, want %d", got, c.totalRestarts)
			}
			if v := s.exec(nil, "verify", "--deep"); v.code != 0 {
				t.Fatalf("verify --deep: %s", v)
			}
		})
	}
}

// TestRollbackWhenContainerdFailsWithNewConfig: systemd reports the restart job
// failed and containerd is down (as when containerd exits at start: injected in
// the fake manager, which stops the real process and does not start it). The run restores the previous
// config, restarts containerd with it (real process), and fails saying so; the
// old config is byte-equal and served. bootstrap/cli/run_integration_test.go
// (TestRollbackWhenRealContainerdRejectsNewConfig) covers the variant where the
// real containerd rejects the file itself.
func TestRollbackWhenContainerdFailsWithNewConfig(t *testing.T) {
	s := newServiceNode(t)
	s.install(newRel)
	s.sd.FailNext = 1
	r := s.run()
	if r.code != 1 {
		t.Fatalf("want exit 1: %s", r)
	}
	mustContain(t, r.stderr, "FAILED", "previous config is restored", "journalctl -u containerd.service")
	if s.configState(s.old, s.newCfg) != "old" {
		t.Fatal("old config not restored")
	}
	if s.sd.Restarts("containerd.service") != 2 || !s.proc.Running() {
		t.Fatalf("restarts %d, running %v", s.sd.Restarts("containerd.service"), s.proc.Running())
	}
	if s.criServes("runsc") || !s.criServes("runc") {
		t.Fatal("the old config is not what containerd serves")
	}
	// Never a loop: the identical input is not tried again (kubelet's gate
	// would restart containerd every few seconds), and the run says so.
	restarts := s.sd.Restarts("containerd.service")
	if r := s.run(); r.code != 1 || !strings.Contains(r.stderr, "already failed") || s.sd.Restarts("containerd.service") != restarts {
		t.Fatalf("identical next run: %s (restarts %d -> %d)", r, restarts, s.sd.Restarts("containerd.service"))
	}
	// Once the operator clears the record (as the message says), it repairs.
	if err := s.root.Remove(reconcile.FailedAttemptPath); err != nil {
		t.Fatal(err)
	}
	if r := s.run(); r.code != 10 || !s.criServes("runsc") {
		t.Fatalf("next run: %s", r)
	}
}

// TestUninstallStopsTheRepairUnitsFirst: uninstall's edit of containerd's config
// would trigger the path unit, and a repair run waiting for the lock would put
// runsc back; so the path and repair units are stopped (over systemd's D-Bus
// API) before anything is removed, and containerd is restarted once, after the
// edit, and then serves no runsc.
func TestUninstallStopsTheRepairUnitsFirst(t *testing.T) {
	s := newServiceNode(t)
	s.install(oldRel)
	if r := s.run(); r.code != 10 {
		t.Fatalf("want exit 10: %s", r)
	}
	before := len(s.sd.Calls())
	if r := s.exec([]string{"KUBERNETES_SERVICE_HOST="}, "uninstall", "--force"); r.code != 0 {
		t.Fatalf("uninstall: %s", r)
	}
	calls := s.sd.Calls()[before:]
	want := []string{"StopUnit gvisor-bootstrap.path", "StopUnit gvisor-bootstrap-repair.service"}
	if len(calls) < 2 || calls[0] != want[0] || calls[1] != want[1] {
		t.Fatalf("systemd calls during uninstall %q: want %q first", calls, want)
	}
	if got := s.sd.Restarts("containerd.service"); got != 2 {
		t.Errorf("containerd restarted %d times in all, want 2 (run, uninstall)", got)
	}
	if s.criServes("runsc") || !s.criServes("runc") {
		t.Error("after uninstall the CRI must serve runc and not runsc")
	}
}
