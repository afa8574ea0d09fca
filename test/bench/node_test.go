// Package bench holds the Go benchmarks of issue 7 (`make bench`): the reimage
// case (config rewritten, containerd restarted, runsc verified through the CRI)
// against a real containerd 2 process, the reference blog's script on the same
// inputs, and a release download against curl. run.sh measures the healthy
// node's `gvisor-bootstrap run` as a process. RESULTS.md holds the figures.
package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
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
)

// realBin finds a program built by test/tools/build-binaries.sh. `make bench`
// does not set GVB_TEST_BIN, so the repository's .cache/bin is the fallback.
func realBin(b *testing.B, name string) string {
	b.Helper()
	for _, dir := range []string{os.Getenv("GVB_TEST_BIN"), "../../.cache/bin"} {
		if dir == "" {
			continue
		}
		if p, err := filepath.Abs(filepath.Join(dir, name)); err == nil {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	b.Skipf("%s not built: run test/tools/build-binaries.sh", name)
	return ""
}

var (
	buildOnce sync.Once
	toolBin   string
	buildErr  error
)

// tool is gvisor-bootstrap built from this tree, once per benchmark binary.
func tool(b *testing.B) string {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gvb-bench-tool")
		if err != nil {
			buildErr = err
			return
		}
		toolBin = filepath.Join(dir, "gvisor-bootstrap")
		cmd := exec.Command("go", "build", "-o", toolBin, "github.com/gvisor-bootstrap/gvisor-bootstrap/cmd/gvisor-bootstrap")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		b.Fatal(buildErr)
	}
	return toolBin
}

// node is a temp root with the real runsc and shim installed and a real
// containerd 2 whose restart is the seam's restart, timed.
type node struct {
	root      fsroot.Root
	proc      *containerdproc.Proc
	sd        *systemd.Fake
	cfg       config.Config
	azure     []byte        // the config as Azure writes it (no runsc)
	restarted time.Duration // time spent in restarts since the last reset
	relDir    string        // the release directory (file:// source) with sha512 files
}

func newNode(b *testing.B) *node {
	b.Helper()
	cd := realBin(b, "containerd-2")
	dir, err := os.MkdirTemp("", "gvbb") // short: unix socket paths are limited
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	n := &node{root: fsroot.New(dir), cfg: config.Default()}
	sock := n.root.Path("/run/containerd")
	if err := os.MkdirAll(sock, 0o755); err != nil {
		b.Fatal(err)
	}
	n.azure = []byte("version = 2\n" + containerdproc.Settings(sock) + containerdproc.AKS2404Body)
	n.relDir = releaseDir(b, dir+"/release")
	n.cfg.Release.Version = "20260914.0"
	n.cfg.Release.URL = "file://" + n.relDir
	n.cfg.Release.Arch = "x86_64"
	n.cfg.Containerd.Version = "2.3.7"
	n.cfg.Boot.VerifyTimeout = config.Duration(30 * time.Second)
	if err := n.root.WriteFile(n.cfg.Containerd.ConfigPath, n.azure, fsroot.WriteOptions{Mode: 0o644}); err != nil {
		b.Fatal(err)
	}
	n.proc = containerdproc.New(b, cd, n.root.Path(n.cfg.Containerd.ConfigPath), sock)
	if err := n.proc.Start(); err != nil {
		b.Fatal(err)
	}
	n.sd = systemd.NewFake(n.cfg.Containerd.Unit)
	n.sd.OnRestart = func(string) error {
		t0 := time.Now()
		err := n.proc.Restart()
		n.restarted += time.Since(t0)
		return err
	}
	if _, err := n.installer().Install(context.Background(), false); err != nil {
		b.Fatal(err)
	}
	return n
}

// releaseDir lays out the real runsc and shim (loose layout) with sha512 files.
func releaseDir(b *testing.B, dir string) string {
	b.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	for _, f := range []string{"runsc", "containerd-shim-runsc-v1"} {
		src := realBin(b, f)
		if err := exec.Command("cp", src, filepath.Join(dir, f)).Run(); err != nil {
			b.Fatal(err)
		}
		cmd := exec.Command("sha512sum", f)
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f+".sha512"), out, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return dir
}

var quiet = slog.New(slog.DiscardHandler)

func (n *node) installer() *release.Installer {
	return &release.Installer{Root: n.root, Cfg: n.cfg.Release, Log: quiet}
}

// reconciler wires the real packages behind the reconcile's seams, as
// bootstrap/cli/node.go does.
func (n *node) reconciler(b *testing.B) *reconcile.Reconciler {
	v, err := containerd.ParseVersion(n.cfg.Containerd.Version)
	if err != nil {
		b.Fatal(err)
	}
	return &reconcile.Reconciler{
		Root: n.root, Cfg: n.cfg, Log: quiet,
		Bins:    bins{n.installer()},
		Conf:    &containerd.Configurator{Root: n.root, Containerd: n.cfg.Containerd, Runsc: n.cfg.Runsc, BinDir: n.cfg.Release.BinDir, Version: v, Log: quiet},
		Systemd: func(context.Context) (systemd.Manager, error) { return n.sd, nil },
		CRI:     func() (cri.Runtime, error) { return cri.Dial(n.root, n.cfg.Containerd.Address) },
	}
}

// reimage puts the node in the state Azure's provisioning leaves: its own config
// (no runsc) and containerd restarted with it. Not timed.
func (n *node) reimage(b *testing.B) {
	b.Helper()
	if err := n.root.WriteFile(n.cfg.Containerd.ConfigPath, n.azure, fsroot.WriteOptions{Mode: 0o644}); err != nil {
		b.Fatal(err)
	}
	if err := n.proc.Restart(); err != nil {
		b.Fatal(err)
	}
	n.waitCRI(b, 10*time.Millisecond)
}

func (n *node) waitCRI(b *testing.B, every time.Duration) cri.Status {
	rt, err := cri.Dial(n.root, n.cfg.Containerd.Address)
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := cri.WaitStatus(ctx, rt, every)
	if err != nil {
		b.Fatalf("%v\n%s", err, n.proc.Log())
	}
	return st
}

type bins struct{ i *release.Installer }

func (a bins) Ensure(ctx context.Context, dry bool) (bool, string, error) {
	r, err := a.i.Install(ctx, dry)
	return r.Changed, "", err
}
func (a bins) Problems(deep bool) []reconcile.Problem { return nil }
func (a bins) Present() bool                          { return true }
