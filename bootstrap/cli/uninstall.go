package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/reconcile"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/release"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/systemd"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/units"
)

type uninstallResult struct {
	Removed    []string `json:"removed"`
	Config     string   `json:"config_change,omitempty"`
	Diff       string   `json:"diff,omitempty"`
	Restarted  bool     `json:"containerd_restarted"`
	RuntimeRan bool     `json:"runtime_checked"`
	DryRun     bool     `json:"dry_run,omitempty"`
}

func init() {
	var force bool
	var nf nodeFlags
	register(&Command{
		Name:    "uninstall",
		Summary: "restore the node: remove the runsc handler, options file, binaries, units and state",
		Long: `uninstall removes the runsc stanza from containerd's config (restoring the original backup
when the file is otherwise unchanged since it was patched), the runsc options file and any
drop-in, the binaries, the systemd units and the tool's state. It restarts containerd only if
its config changed and it is running. It refuses while pods run under the runsc handler
(checked through the CRI) unless --force.`,
		Example: "  gvisor-bootstrap uninstall --dry-run\n  gvisor-bootstrap uninstall\n  gvisor-bootstrap uninstall --force   # even with gVisor pods running",
		Flags: func(fs *pflag.FlagSet) func(*Globals) error {
			fs.BoolVar(&force, "force", false, "uninstall even while pods run under the runsc handler (they keep running until they exit; new ones fail) e.g. --force")
			nf.register(fs)
			return func(g *Globals) error { return nf.apply(fs, g) }
		},
		Run: func(ctx context.Context, g *Globals, args []string) (int, error) {
			res, err := uninstallNode(ctx, g, force)
			if err != nil {
				return ExitFailed, err
			}
			g.Emit(res, func(w io.Writer) {
				if res.Diff != "" {
					fmt.Fprint(w, res.Diff)
				}
				verb := "removed"
				if res.DryRun {
					verb = "would remove"
				}
				for _, p := range res.Removed {
					fmt.Fprintf(w, "%s %s\n", verb, p)
				}
				if res.Restarted {
					fmt.Fprintln(w, "restarted containerd: the runsc handler is gone")
				}
			})
			return ExitOK, nil
		},
	})
}

func uninstallNode(ctx context.Context, g *Globals, force bool) (uninstallResult, error) {
	res := uninstallResult{DryRun: g.DryRun}
	log := g.logger()
	if !g.DryRun {
		unlock, err := reconcile.Lock(ctx, g.Root, log)
		if err != nil {
			return res, err
		}
		defer unlock()
	}
	if g.Root.Exists(g.Config.Containerd.Address) {
		rt, err := dialCRI(g)
		if err == nil {
			pods, perr := rt.SandboxesWithHandler(ctx, g.Config.Cluster.Handler)
			rt.Close()
			if perr == nil {
				res.RuntimeRan = true
				if len(pods) > 0 && !force {
					return res, fmt.Errorf("%d pod(s) run under the %q handler (%s): drain the node first, or pass --force", len(pods), g.Config.Cluster.Handler, strings.Join(pods, ", "))
				}
			}
		}
	}
	v, err := containerdVersion(ctx, g)
	if err != nil {
		return res, err
	}
	conf := newConfigurator(g, v, log)
	plan, err := conf.PlanRemove()
	if err != nil {
		return res, err
	}
	res.Diff = plan.Diff()
	for _, c := range plan.Changes {
		res.Removed = append(res.Removed, c.Path)
	}
	if !g.DryRun && len(plan.Changes) > 0 {
		if err := conf.Apply(plan); err != nil {
			return res, err
		}
	}
	removed, err := newInstaller(g, log).Uninstall(ctx, g.DryRun)
	res.Removed = append(res.Removed, removed...)
	if err != nil {
		return res, err
	}
	unitFiles, err := units.Uninstall(g.Root, g.DryRun)
	res.Removed = append(res.Removed, unitFiles...)
	if err != nil {
		return res, err
	}
	if g.DryRun {
		return res, nil
	}
	for _, p := range []string{reconcile.LastRunPath, reconcile.FailedAttemptPath, release.FailedDownloadPath, g.Config.Containerd.BackupPath} {
		if g.Root.Exists(p) {
			if err := g.Root.Remove(p); err != nil {
				return res, err
			}
			res.Removed = append(res.Removed, p)
		}
	}
	mgr, err := systemd.Connect(ctx, g.Root)
	if errors.Is(err, systemd.ErrUnavailable) {
		return res, nil
	}
	if err != nil {
		return res, err
	}
	defer mgr.Close()
	if len(unitFiles) > 0 {
		if err := mgr.Reload(ctx); err != nil {
			return res, err
		}
	}
	if plan.RestartNeeded {
		state, err := mgr.ActiveState(ctx, g.Config.Containerd.Unit)
		if err != nil {
			return res, err
		}
		if state == "active" {
			if err := mgr.Restart(ctx, g.Config.Containerd.Unit); err != nil {
				return res, err
			}
			res.Restarted = true
		}
	}
	return res, nil
}
