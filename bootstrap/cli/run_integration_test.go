package cli

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/config"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/containerd"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/cri"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/reconcile"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/release"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/systemd"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/test/containerdproc"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/test/testbin"
)

// A node root with a real containerd 2.x serving the CRI from
// <root>/run/containerd/containerd.sock, its config at <root>/etc/containerd/config.toml,
// and a systemd seam whose restart really restarts that process.
type realNode struct {
	root   fsroot.Root
	proc   *containerdproc.Proc
	sd     *systemd.Fake
	cfg    config.Config
	config string // the config file's original content
}

func newRealNode(t *testing.T) *realNode { return newRealNodeWith(t, "", nil) }

// newRealNodeWith is newRealNode with top-level keys (e.g. an imports line) at the
// start of the config and files in /etc/containerd/conf.d, all in place before
// containerd first starts.
func newRealNodeWith(t *testing.T, top string, confd map[string]string) *realNode {
	bin := testbin.Require(t, "containerd-2")
	dir := shortTempDir(t) // unix socket paths are limited to ~104 bytes
	root := fsroot.New(dir)
	sockDir := root.Path("/run/containerd")
	if err := os.MkdirAll(sockDir, 0o755); err != nil {
		t.Fatal(err)
	}
	n := &realNode{root: root, cfg: config.Default()}
	n.config = "version = 2\n" + top + containerdproc.Settings(sockDir) + containerdproc.AKS2404Body
	if err := root.WriteFile("/etc/containerd/config.toml", []byte(n.config), fsroot.WriteOptions{Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	for name, body := range confd {
		if err := root.WriteFile("/etc/containerd/conf.d/"+name, []byte(body), fsroot.WriteOptions{Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
	}
	n.proc = containerdproc.New(t, bin, root.Path("/etc/containerd/config.toml"), sockDir)
	if err := n.proc.Start(); err != nil {
		t.Fatal(err)
	}
	n.sd = systemd.NewFake("containerd.service")
	n.sd.OnRestart = func(string) error { return n.proc.Restart() }

	rel := serveRelease(t)
	n.cfg.Release.URL = "file://" + rel
	n.cfg.Containerd.Version = "2.3.7"
	n.cfg.Boot.VerifyTimeout = config.Duration(20 * time.Second)
	return n
}

// serveRelease lays out a release directory (loose layout) with sha512 files. The
// binaries are small stand-ins: this test is about containerd, not about running runsc.
func serveRelease(t *testing.T) string {
	dir := t.TempDir()
	for _, name := range []string{"runsc", "containerd-shim-runsc-v1"} {
		body := []byte("#!/bin/sh\necho " + name + " stand-in\n")
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o755); err != nil {
			t.Fatal(err)
		}
		sum := sha512.Sum512(body)
		if err := os.WriteFile(filepath.Join(dir, name+".sha512"), []byte(hex.EncodeToString(sum[:])+"  "+name+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func (n *realNode) reconciler(t *testing.T, conf reconcile.ContainerdConfig) *reconcile.Reconciler {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if conf == nil {
		v, err := containerd.ParseVersion(n.cfg.Containerd.Version)
		if err != nil {
			t.Fatal(err)
		}
		conf = &containerd.Configurator{Root: n.root, Containerd: n.cfg.Containerd, Runsc: n.cfg.Runsc, BinDir: n.cfg.Release.BinDir, Version: v, Log: log}
	}
	return &reconcile.Reconciler{
		Root: n.root, Cfg: n.cfg, Log: log, PollEvery: 50 * time.Millisecond,
		Bins:    &binaries{inst: &release.Installer{Root: n.root, Cfg: n.cfg.Release, Log: log}},
		Conf:    conf,
		Systemd: func(context.Context) (systemd.Manager, error) { return n.sd, nil },
		CRI:     func() (cri.Runtime, error) { return cri.Dial(n.root, n.cfg.Containerd.Address) },
	}
}

func (n *realNode) criStatus(t *testing.T) cri.Status {
	rt, err := cri.Dial(n.root, n.cfg.Containerd.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := cri.WaitStatus(ctx, rt, 50*time.Millisecond)
	if err != nil {
		t.Fatalf("%v\n%s", err, n.proc.Log())
	}
	return st
}

func TestRunRestartsRealContainerdOnceAndCRIServesRunsc(t *testing.T) {
	n := newRealNode(t)
	if n.criStatus(t).HasHandler("runsc") {
		t.Fatal("runsc served before the bootstrap ran")
	}
	rep := n.reconciler(t, nil).Run(context.Background(), reconcile.Options{})
	if rep.Outcome != reconcile.Repaired || rep.Restarts != 1 || !rep.HandlerSeen || !rep.RuntimeChecked {
		t.Fatalf("%+v\n%s", rep, n.proc.Log())
	}
	st := n.criStatus(t)
	if !st.HasHandler("runsc") || st.ConfigRuntimes["runsc"] != "io.containerd.runsc.v1" {
		t.Fatalf("CRI after run: %+v", st)
	}
	if !st.HasHandler("runc") {
		t.Fatalf("runc lost: %+v", st)
	}

	// The path unit fires on the run's own write: the re-run finds nothing to do.
	p := n.root.Path("/etc/containerd/config.toml")
	before, _ := os.Stat(p)
	starts := n.proc.Starts
	rep = n.reconciler(t, nil).Run(context.Background(), reconcile.Options{})
	after, _ := os.Stat(p)
	if rep.Outcome != reconcile.Healthy || rep.Restarts != 0 || n.proc.Starts != starts {
		t.Fatalf("second run: %+v (starts %d -> %d)", rep, starts, n.proc.Starts)
	}
	if !after.ModTime().Equal(before.ModTime()) || !os.SameFile(before, after) {
		t.Fatal("second run rewrote containerd's config")
	}
}

// breakingConfig makes containerd fail with the new config: it runs the real
// configurator, then adds a top-level key containerd refuses at start. Its undo
// first puts back what the configurator wrote (the configurator's own undo
// leaves alone a file that no longer holds what it wrote).
type breakingConfig struct{ *containerd.Configurator }

func (b breakingConfig) Ensure(ctx context.Context, dry bool) (reconcile.ConfigChange, error) {
	ch, err := b.Configurator.Ensure(ctx, dry)
	if err != nil || dry {
		return ch, err
	}
	p := b.Root.Path(b.Containerd.ConfigPath)
	data, _ := os.ReadFile(p)
	undo := ch.Undo
	ch.Undo = func() error {
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
		return undo()
	}
	return ch, os.WriteFile(p, append([]byte("oom_score = \"not-a-number\"\n"), data...), 0o644)
}

func TestRollbackWhenRealContainerdRejectsNewConfig(t *testing.T) {
	n := newRealNode(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	v, _ := containerd.ParseVersion("2.3.7")
	real := &containerd.Configurator{Root: n.root, Containerd: n.cfg.Containerd, Runsc: n.cfg.Runsc, BinDir: n.cfg.Release.BinDir, Version: v, Log: log}
	n.cfg.Boot.VerifyTimeout = config.Duration(3 * time.Second)
	rep := n.reconciler(t, breakingConfig{real}).Run(context.Background(), reconcile.Options{})
	if rep.Outcome != reconcile.Failed || !rep.RolledBack || rep.Restarts != 2 {
		t.Fatalf("%+v", rep)
	}
	if !strings.Contains(rep.Error, "previous config is restored") {
		t.Fatalf("error does not say what happened: %s", rep.Error)
	}
	got, _ := n.root.ReadFile("/etc/containerd/config.toml")
	if !bytes.Equal(got, []byte(n.config)) {
		t.Fatalf("config not restored:\n%s", got)
	}
	if !n.proc.Running() {
		t.Fatalf("containerd not running after rollback:\n%s", n.proc.Log())
	}
	st := n.criStatus(t)
	if st.HasHandler("runsc") || !st.HasHandler("runc") {
		t.Fatalf("old config not served after rollback: %+v", st)
	}
}

// naiveConfig is the mistake field-facts §2 describes: a v2-style runsc table added
// to AKS's containerd-2 file. containerd starts, but the handler is silently
// dropped; the CRI check must catch it and roll back.
type naiveConfig struct{ root fsroot.Root }

func (c naiveConfig) Ensure(_ context.Context, dry bool) (reconcile.ConfigChange, error) {
	p := c.root.Path("/etc/containerd/config.toml")
	old, _ := os.ReadFile(p)
	naive := string(old) + "\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runsc]\n  runtime_type = \"io.containerd.runsc.v1\"\n"
	if err := os.WriteFile(p, []byte(naive), 0o644); err != nil {
		return reconcile.ConfigChange{}, err
	}
	return reconcile.ConfigChange{Changed: true, RestartNeeded: true, Undo: func() error { return os.WriteFile(p, old, 0o644) }}, nil
}
func (c naiveConfig) Problems() []reconcile.Problem { return nil }
func (c naiveConfig) FileHasRunsc() bool            { return true }
func (c naiveConfig) Expect() cri.Expect {
	return cri.Expect{Handler: "runsc", ConfigPath: "/etc/containerd/runsc.toml"}
}

func TestCRICheckCatchesSilentlyDroppedHandler(t *testing.T) {
	n := newRealNode(t)
	n.cfg.Boot.VerifyTimeout = config.Duration(3 * time.Second)
	rep := n.reconciler(t, naiveConfig{n.root}).Run(context.Background(), reconcile.Options{})
	if rep.Outcome != reconcile.Failed || !rep.RolledBack || rep.HandlerSeen {
		t.Fatalf("%+v", rep)
	}
	if !strings.Contains(rep.Error, `does not list the "runsc" handler`) {
		t.Fatalf("error: %s", rep.Error)
	}
	got, _ := n.root.ReadFile("/etc/containerd/config.toml")
	if string(got) != n.config {
		t.Fatal("naive edit not rolled back")
	}
}

func shortTempDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "gvb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
