package reconcile

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/config"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/cri"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/systemd"
)

type fakeBins struct {
	changed bool
	err     error
	present bool
	inside  *int32 // counts concurrent Ensure calls
	maxSeen *int32
	calls   int32
}

func (b *fakeBins) Ensure(context.Context, bool) (bool, string, error) {
	atomic.AddInt32(&b.calls, 1)
	if b.inside != nil {
		n := atomic.AddInt32(b.inside, 1)
		for {
			m := atomic.LoadInt32(b.maxSeen)
			if n <= m || atomic.CompareAndSwapInt32(b.maxSeen, m, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		atomic.AddInt32(b.inside, -1)
	}
	return b.changed, "", b.err
}
func (b *fakeBins) Problems(bool) []Problem { return nil }
func (b *fakeBins) Present() bool           { return b.present }

// fakeConf models containerd's config file: whether it has runsc now, and what the
// running containerd loaded at its last (re)start.
type fakeConf struct {
	root         fsroot.Root // where the config file is, when a test has one
	mu           sync.Mutex
	has, wasBad  bool
	change       ConfigChange
	ensureCalled int
	undone       int
}

func (c *fakeConf) Ensure(_ context.Context, dry bool) (ConfigChange, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ensureCalled++
	ch := c.change
	ch.ConfigPath = "/etc/containerd/config.toml"
	ch.ConfigAfter, _ = c.root.ReadFile(ch.ConfigPath)
	if ch.Changed && !dry {
		prev := c.has
		c.has = true
		ch.Undo = func() error { c.mu.Lock(); c.has = prev; c.undone++; c.mu.Unlock(); return nil }
	}
	return ch, nil
}
func (c *fakeConf) Problems() []Problem { return nil }
func (c *fakeConf) FileHasRunsc() bool  { c.mu.Lock(); defer c.mu.Unlock(); return c.has }
func (c *fakeConf) Expect() cri.Expect {
	return cri.Expect{Handler: "runsc", ConfigPath: "/etc/containerd/runsc.toml"}
}

type node struct {
	r    *Reconciler
	sd   *systemd.Fake
	rt   *cri.Fake
	conf *fakeConf
	bins *fakeBins
}

// newNode wires fakes so that a containerd restart makes the CRI serve whatever
// the config file says at that moment (unless badConfig: then it never serves runsc).
func newNode(t *testing.T, active bool, fileHas, criHas bool) *node {
	cfg := config.Default()
	cfg.Boot.VerifyTimeout = config.Duration(300 * time.Millisecond)
	root := fsroot.New(t.TempDir())
	n := &node{sd: systemd.NewFake(), rt: &cri.Fake{}, conf: &fakeConf{root: root, has: fileHas}, bins: &fakeBins{present: true}}
	if active {
		n.sd.States["containerd.service"] = "active"
	}
	n.rt.Set(statusWith(criHas), nil)
	n.sd.OnRestart = func(string) error {
		n.rt.Set(statusWith(n.conf.FileHasRunsc() && !n.conf.wasBad), nil)
		return nil
	}
	n.r = &Reconciler{
		Root: root, Cfg: cfg, Bins: n.bins, Conf: n.conf,
		Systemd:   func(context.Context) (systemd.Manager, error) { return n.sd, nil },
		CRI:       func() (cri.Runtime, error) { return n.rt, nil },
		Log:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		PollEvery: 10 * time.Millisecond,
	}
	return n
}

func statusWith(runsc bool) cri.Status {
	st := cri.Status{RuntimeReady: true}.WithHandler("runc", cri.RuntimeInfo{Type: "io.containerd.runc.v2"})
	if runsc {
		st = st.WithHandler("runsc", cri.GVisor("/etc/containerd/runsc.toml"))
	}
	return st
}

func TestHealthyNodeNoRestart(t *testing.T) {
	n := newNode(t, true, true, true)
	rep := n.r.Run(context.Background(), Options{})
	if rep.Outcome != Healthy || rep.Restarts != 0 || !rep.HandlerSeen || !rep.RuntimeChecked {
		t.Fatalf("%+v", rep)
	}
	if n.sd.RestartCount("containerd.service") != 0 {
		t.Fatal("restarted a healthy node")
	}
}

func TestConfigChangedRestartsRunningContainerdOnce(t *testing.T) {
	n := newNode(t, true, false, false)
	n.conf.change = ConfigChange{Changed: true, RestartNeeded: true}
	rep := n.r.Run(context.Background(), Options{})
	if rep.Outcome != Repaired || rep.Restarts != 1 || !rep.HandlerSeen {
		t.Fatalf("%+v", rep)
	}
	if got := n.sd.RestartCount("containerd.service"); got != 1 {
		t.Fatalf("restarts = %d", got)
	}
}

func TestOptionsFileOnlyChangeNeedsNoRestart(t *testing.T) {
	n := newNode(t, true, true, true)
	n.conf.change = ConfigChange{Changed: true, RestartNeeded: false}
	rep := n.r.Run(context.Background(), Options{})
	if rep.Outcome != Repaired || n.sd.RestartCount("containerd.service") != 0 {
		t.Fatalf("%+v restarts=%d", rep, n.sd.RestartCount("containerd.service"))
	}
}

func TestEarlyBootWritesButDoesNotRestart(t *testing.T) {
	n := newNode(t, false, false, false)
	n.conf.change = ConfigChange{Changed: true, RestartNeeded: true}
	rep := n.r.Run(context.Background(), Options{})
	if rep.Outcome != Repaired || rep.Restarts != 0 || rep.RuntimeChecked {
		t.Fatalf("%+v", rep)
	}
	if n.sd.RestartCount("containerd.service") != 0 || n.rt.Calls != 0 {
		t.Fatal("touched containerd before it started")
	}
}

func TestRollbackWhenRunscNotServedAfterRestart(t *testing.T) {
	n := newNode(t, true, false, false)
	n.conf.change = ConfigChange{Changed: true, RestartNeeded: true}
	n.conf.wasBad = true // containerd comes back but without runsc
	rep := n.r.Run(context.Background(), Options{})
	if rep.Outcome != Failed || !rep.RolledBack || rep.Restarts != 2 {
		t.Fatalf("%+v", rep)
	}
	if n.conf.undone != 1 || n.conf.FileHasRunsc() {
		t.Fatal("previous config not restored")
	}
	if !strings.Contains(rep.Error, "previous config is restored") {
		t.Fatalf("error does not say what happened: %s", rep.Error)
	}
}

func TestRollbackWhenContainerdFailsToStart(t *testing.T) {
	n := newNode(t, true, false, false)
	n.conf.change = ConfigChange{Changed: true, RestartNeeded: true}
	first := true
	n.sd.OnRestart = func(string) error {
		if first {
			first = false
			n.rt.Set(cri.Status{}, errors.New("connection refused"))
			return errors.New("containerd.service: main process exited, status=1")
		}
		n.rt.Set(statusWith(n.conf.FileHasRunsc()), nil)
		return nil
	}
	rep := n.r.Run(context.Background(), Options{})
	if rep.Outcome != Failed || !rep.RolledBack || n.conf.undone != 1 {
		t.Fatalf("%+v", rep)
	}
	if n.sd.States["containerd.service"] != "active" {
		t.Fatal("containerd not restarted with the old config")
	}
}

func TestStaleRunningConfigIsRestarted(t *testing.T) {
	// The file already registers runsc (a run was killed after writing it), but
	// the running containerd predates the write.
	n := newNode(t, true, true, false)
	rep := n.r.Run(context.Background(), Options{})
	if rep.Outcome != Repaired || rep.Restarts != 1 || !rep.HandlerSeen {
		t.Fatalf("%+v", rep)
	}
}

func TestInstallFailureWithoutBinariesTouchesNothing(t *testing.T) {
	n := newNode(t, true, false, false)
	n.bins.present, n.bins.err = false, errors.New("checksum mismatch for https://x/runsc")
	n.conf.change = ConfigChange{Changed: true, RestartNeeded: true}
	rep := n.r.Run(context.Background(), Options{})
	if rep.Outcome != Failed || n.conf.ensureCalled != 0 || n.sd.RestartCount("containerd.service") != 0 {
		t.Fatalf("%+v", rep)
	}
	if !strings.Contains(rep.Error, "checksum mismatch") {
		t.Fatal(rep.Error)
	}
}

func TestInstallFailureWithOldBinariesStillFails(t *testing.T) {
	n := newNode(t, true, true, true)
	n.bins.err = errors.New("404 for https://x/20991231/x86_64/runsc")
	rep := n.r.Run(context.Background(), Options{})
	if rep.Outcome != Failed || !strings.Contains(rep.Error, "previously installed release is still in place") {
		t.Fatalf("%+v", rep)
	}
}

func TestGateFailsWhenCRINeverAnswers(t *testing.T) {
	n := newNode(t, false, true, false)
	n.rt.Set(cri.Status{}, errors.New("connection refused"))
	rep := n.r.Run(context.Background(), Options{Gate: true})
	if rep.Outcome != Failed || !strings.Contains(rep.Error, "CRI") {
		t.Fatalf("%+v", rep)
	}
}

func TestNoSystemdNeverRestarts(t *testing.T) {
	n := newNode(t, true, false, false)
	n.r.Systemd = func(context.Context) (systemd.Manager, error) { return nil, systemd.ErrUnavailable }
	n.rt.Set(cri.Status{}, errors.New("no socket"))
	n.conf.change = ConfigChange{Changed: true, RestartNeeded: true}
	rep := n.r.Run(context.Background(), Options{})
	if rep.Outcome != Repaired || rep.Restarts != 0 || rep.RuntimeChecked {
		t.Fatalf("%+v", rep)
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	n := newNode(t, true, false, false)
	n.conf.change = ConfigChange{Changed: true, RestartNeeded: true, Diff: "+runsc"}
	rep := n.r.Run(context.Background(), Options{DryRun: true})
	if rep.Outcome != Repaired || rep.Diff != "+runsc" || n.conf.FileHasRunsc() || n.sd.RestartCount("containerd.service") != 0 {
		t.Fatalf("%+v", rep)
	}
}

func TestConcurrentRunsSerialise(t *testing.T) {
	n := newNode(t, true, true, true)
	var inside, maxSeen int32
	n.bins.inside, n.bins.maxSeen = &inside, &maxSeen
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if rep := n.r.Run(context.Background(), Options{}); rep.Outcome != Healthy {
				t.Errorf("%+v", rep)
			}
		}()
	}
	wg.Wait()
	if maxSeen != 1 || n.bins.calls != 8 {
		t.Fatalf("runs overlapped: max %d at once, %d calls", maxSeen, n.bins.calls)
	}
}

func TestRecordAndMetrics(t *testing.T) {
	root := fsroot.New(t.TempDir())
	rep := Report{Outcome: Repaired, Start: time.Unix(1700000000, 0)}
	if _, err := SaveRecord(root, rep, "20260914.0", "/var/lib/node_exporter/textfile"); err != nil {
		t.Fatal(err)
	}
	rec, err := SaveRecord(root, rep, "20260914.0", "/var/lib/node_exporter/textfile")
	if err != nil || rec.RepairsTotal != 2 {
		t.Fatalf("%+v %v", rec, err)
	}
	b, _ := root.ReadFile("/var/lib/node_exporter/textfile/gvisor_bootstrap.prom")
	for _, want := range []string{"gvisor_bootstrap_ready 1", "gvisor_bootstrap_repairs_total 2", `release="20260914.0"`, `result="repaired"} 1`, "gvisor_bootstrap_last_run_timestamp_seconds 1700000000"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q:\n%s", want, b)
		}
	}
	got, err := LoadRecord(root)
	if err != nil || got.Outcome != Repaired || got.Release != "20260914.0" {
		t.Fatalf("%+v %v", got, err)
	}
}

func TestConfigRewrittenDuringRunIsReconciledAgain(t *testing.T) {
	n := newNode(t, true, true, true)
	path := n.r.Root.Path(n.r.Cfg.Containerd.ConfigPath)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	// Provisioning rewrites the file (without runsc) after the first run's
	// configure step, while that run talks to systemd.
	rewritten := false
	n.r.Systemd = func(context.Context) (systemd.Manager, error) {
		if !rewritten {
			rewritten = true
			_ = os.WriteFile(path, []byte("version = 2\n# rewritten by provisioning\n"), 0o644)
			n.conf.mu.Lock()
			n.conf.has, n.conf.change = false, ConfigChange{Changed: true, RestartNeeded: true}
			n.conf.mu.Unlock()
		} else {
			n.conf.mu.Lock()
			n.conf.change = ConfigChange{}
			n.conf.mu.Unlock()
		}
		return n.sd, nil
	}
	rep := n.r.Run(context.Background(), Options{})
	if n.conf.ensureCalled != 2 || rep.Outcome != Repaired || !n.conf.FileHasRunsc() || rep.Restarts != 1 {
		t.Fatalf("ensure called %d times, %+v", n.conf.ensureCalled, rep)
	}
}

// The boot unit is ordered before containerd: it must report ready before it asks
// systemd to restart containerd, or the start job of that restart waits for it.
func TestReadyIsReportedBeforeTheRestart(t *testing.T) {
	n := newNode(t, true, false, false)
	n.conf.change = ConfigChange{Changed: true, RestartNeeded: true}
	var events []string
	n.r.Ready = func() { events = append(events, "ready") }
	restart := n.sd.OnRestart
	n.sd.OnRestart = func(u string) error { events = append(events, "restart"); return restart(u) }
	if rep := n.r.Run(context.Background(), Options{}); rep.Outcome != Repaired {
		t.Fatalf("%+v", rep)
	}
	if len(events) < 2 || events[0] != "ready" || events[1] != "restart" {
		t.Fatalf("events %v: want ready before restart", events)
	}
}
