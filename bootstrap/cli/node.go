package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/containerd"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/cri"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/logging"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/nodepaths"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/reconcile"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/release"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/systemd"
)

// nodeFlags are the flags of the commands that look at a whole node (run, verify,
// status, uninstall).
type nodeFlags struct {
	containerdVersion, releaseVersion, releaseURL string
}

func (n *nodeFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&n.containerdVersion, "containerd-version", "", "containerd's version when it cannot be asked (needed under a --root other than / with containerd stopped), e.g. 2.1.3")
	fs.StringVar(&n.releaseVersion, "release", "", "gVisor release to install, e.g. 20260914.0 (\"latest\" only when asked explicitly)")
	fs.StringVar(&n.releaseURL, "release-url", "", "directory URL of one release and arch, replacing the bucket layout, e.g. file:///opt/gvisor/20260914.0/x86_64")
}

func (n *nodeFlags) apply(fs *pflag.FlagSet, g *Globals) error {
	if fs.Changed("containerd-version") {
		g.Config.Containerd.Version = n.containerdVersion
	}
	if fs.Changed("release") {
		g.Config.Release.Version = n.releaseVersion
	}
	if fs.Changed("release-url") {
		g.Config.Release.URL = n.releaseURL
	}
	return nil
}

func (g *Globals) logger() *slog.Logger {
	return logging.New(g.Stderr, slog.LevelInfo)
}

// newReconciler wires the real packages behind the reconcile's seams.
func newReconciler(ctx context.Context, g *Globals, log *slog.Logger) (*reconcile.Reconciler, error) {
	version, err := containerdVersion(ctx, g)
	if err != nil {
		return nil, err
	}
	return &reconcile.Reconciler{
		Root: g.Root,
		Cfg:  g.Config,
		Bins: &binaries{inst: newInstaller(g, log), deep: g.Config.Boot.DeepVerify},
		Conf: newConfigurator(g, version, log),
		Systemd: func(ctx context.Context) (systemd.Manager, error) {
			return systemd.Connect(ctx, g.Root)
		},
		CRI: func() (cri.Runtime, error) { return cri.Dial(g.Root, g.Config.Containerd.Address) },
		Log: log,
	}, nil
}

func newInstaller(g *Globals, log *slog.Logger) *release.Installer {
	var progress = g.Stderr
	if g.JSON || g.Unattended {
		progress = nil
	}
	return &release.Installer{Root: g.Root, Cfg: g.Config.Release, Log: log, Progress: progress, Deep: g.Config.Boot.DeepVerify}
}

func newConfigurator(g *Globals, v containerd.Version, log *slog.Logger) *containerd.Configurator {
	c := &containerd.Configurator{Root: g.Root, Containerd: g.Config.Containerd, Runsc: g.Config.Runsc, BinDir: g.Config.Release.BinDir, Version: v, Log: log}
	// The file containerd is really started with, when its unit says so and the
	// tool's config left containerd.config_path at its default.
	if g.Config.Containerd.ConfigPath == nodepaths.DefaultContainerdConfig {
		if p, from := containerd.LoadedConfig(g.Root, g.Config.Containerd.Unit); p != "" && p != g.Config.Containerd.ConfigPath {
			c.Loaded = p
			if log != nil {
				log.Debug("containerd's unit starts it with another config file", "config", p, "unit_file", from)
			}
		}
	}
	return c
}

// containerdVersion: the config or flag; else the running containerd, asked through
// the CRI (works in the DaemonSet, where the host's binary cannot be executed); else
// `containerd --version` on the node itself.
func containerdVersion(ctx context.Context, g *Globals) (containerd.Version, error) {
	if v := g.Config.Containerd.Version; v != "" {
		return containerd.ParseVersion(v)
	}
	if g.Root.Exists(g.Config.Containerd.Address) {
		if rt, err := cri.Dial(g.Root, g.Config.Containerd.Address); err == nil {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, ver, err := rt.Version(cctx)
			cancel()
			rt.Close()
			if err == nil {
				return containerd.ParseVersion(ver)
			}
		}
	}
	return containerd.DetectVersion(ctx, g.Root, "")
}

func installedRelease(g *Globals) string {
	st, err := release.LoadState(g.Root)
	if err != nil {
		return ""
	}
	return st.Release
}

// binaries adapts release.Installer to the reconcile's seam.
type binaries struct {
	inst *release.Installer
	deep bool
}

func (b *binaries) Ensure(ctx context.Context, dryRun bool) (bool, string, error) {
	res, err := b.inst.Install(ctx, dryRun)
	if err != nil {
		return false, "", err
	}
	if !res.Changed {
		return false, "", nil
	}
	return true, fmt.Sprintf("installed release %s (%s, %s layout)", res.Release, res.Arch, res.Layout), nil
}

func (b *binaries) Problems(deep bool) []reconcile.Problem {
	var out []reconcile.Problem
	for _, p := range b.inst.Verify(deep || b.deep) {
		out = append(out, reconcile.Problem{Path: p.Path, What: p.What, Fix: p.Fix})
	}
	return out
}

func (b *binaries) Present() bool {
	for _, name := range []string{"runsc", "containerd-shim-runsc-v1"} {
		st, err := os.Stat(b.inst.Root.Path(b.inst.Cfg.BinDir + "/" + name))
		if err != nil || st.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}
