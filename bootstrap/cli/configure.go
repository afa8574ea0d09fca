package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/pflag"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/containerd"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/redact"
)

// configureResult is configure's --json summary.
type configureResult struct {
	Command           string   `json:"command"`
	OK                bool     `json:"ok"`
	DryRun            bool     `json:"dry_run"`
	ContainerdVersion string   `json:"containerd_version"`
	Mode              string   `json:"mode"`
	ConfigVersion     int      `json:"config_version"`
	Tables            string   `json:"tables"`
	RuntimeTable      string   `json:"runtime_table"`
	DialectReason     string   `json:"dialect_reason"`
	SystemdCgroup     bool     `json:"systemd_cgroup"`
	Changed           []string `json:"changed_files"`
	Removed           []string `json:"removed_files"`
	BackupWritten     string   `json:"backup_written,omitempty"`
	RestartNeeded     bool     `json:"restart_needed"`
	Diff              string   `json:"diff,omitempty"`
}

func init() {
	var (
		ctrdVersion, mode, ctrdConfig, runtimeConfig, platform string
		kvmHandler                                             bool
	)
	register(&Command{
		Name:    "configure",
		Summary: "register the runsc runtime handler in containerd's config, in the file's own dialect",
		Long: `Makes containerd load the runsc runtime handler (runtime_type io.containerd.runsc.v1,
options in the runsc options file) without touching anything else in its config.

The dialect is read from the file itself: its version and the CRI plugin tables it
already uses (AKS's containerd 2 nodes write version = 2 with containerd 2 table
names; a runtime added under the old names there is silently dropped). In the
default in-place mode the handler's tables are rewritten and everything else stays
byte for byte. --mode dropin (containerd >= 2.0 only) writes the handler into a
drop-in that the main file imports. The first change keeps a backup of the original
for uninstall. Nothing is written when nothing needs to change.

configure never restarts containerd: restart it yourself when the summary says so,
or use ` + "`gvisor-bootstrap run`" + `, which restarts only when the effective config changed.`,
		Example: `  gvisor-bootstrap configure --dry-run
  gvisor-bootstrap configure --json
  gvisor-bootstrap configure --root /mnt/image --containerd-version 2.1.4
  gvisor-bootstrap configure --mode dropin --kvm-handler`,
		Flags: func(fs *pflag.FlagSet) func(g *Globals) error {
			fs.StringVar(&ctrdVersion, "containerd-version", "", "the node's containerd release, needed under a --root other than / (otherwise `containerd --version` is asked), e.g. --containerd-version 1.7.27")
			fs.StringVar(&mode, "mode", "", "inplace (edit the main config; any containerd >= 1.7) or dropin (a separate file the main config imports; containerd >= 2.0), e.g. --mode dropin")
			fs.StringVar(&ctrdConfig, "containerd-config", "", "containerd's main config, a node path (default /etc/containerd/config.toml), e.g. --containerd-config /etc/containerd/config.toml")
			fs.StringVar(&runtimeConfig, "runtime-config", "", "the runsc shim options file the handler points at (default /etc/containerd/runsc.toml), e.g. --runtime-config /etc/containerd/runsc.toml")
			fs.StringVar(&platform, "platform", "", "runsc platform, systrap (default; works in VMs) or kvm (needs /dev/kvm), e.g. --platform kvm")
			fs.BoolVar(&kvmHandler, "kvm-handler", false, "also register a second handler runsc-kvm using platform kvm (needs /dev/kvm), e.g. --kvm-handler")
			return func(g *Globals) error {
				c, r := &g.Config.Containerd, &g.Config.Runsc
				if fs.Changed("containerd-version") {
					if _, err := containerd.ParseVersion(ctrdVersion); err != nil {
						return usageErrorf("--containerd-version: %v", err)
					}
					c.Version = ctrdVersion
				}
				if fs.Changed("mode") {
					c.Mode = mode
				}
				if fs.Changed("containerd-config") {
					c.ConfigPath = ctrdConfig
				}
				if fs.Changed("runtime-config") {
					c.RuntimeConfigPath = runtimeConfig
				}
				if fs.Changed("platform") {
					r.Platform = platform
				}
				if fs.Changed("kvm-handler") {
					r.KVMHandler = kvmHandler
				}
				return nil
			}
		},
		Run: runConfigure,
	})
}

func runConfigure(ctx context.Context, g *Globals, args []string) (int, error) {
	if len(args) > 0 {
		return ExitUsage, usageErrorf("configure takes no arguments, got %q", strings.Join(args, " "))
	}
	log := slog.New(redact.Handler(slog.NewTextHandler(g.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	v, err := containerdVersion(ctx, g)
	if err != nil {
		return ExitUsage, UsageError{err}
	}
	c := newConfigurator(g, v, log)
	plan, err := c.PlanContext(ctx)
	var fe *containerd.ForeignHandlerError
	if err != nil && (errors.As(err, &fe) || ctx.Err() != nil) {
		// The node is not bad input to this tool: another file would serve
		// something else as runsc (refused up front), or the run was stopped
		// (SIGTERM); nothing written.
		return ExitFailed, err
	}
	if err != nil {
		// Bad input (invalid TOML, unsupported containerd, refused mode): nothing
		// was written.
		return ExitUsage, UsageError{err}
	}
	res := configureResult{
		Command: "configure", OK: true, DryRun: g.DryRun, ContainerdVersion: v.String(),
		Mode: g.Config.Containerd.Mode, ConfigVersion: plan.Dialect.ConfigVersion,
		Tables: plan.Dialect.Plugin, RuntimeTable: plan.Dialect.RuntimeTable,
		DialectReason: plan.Dialect.Reason, SystemdCgroup: plan.SystemdCgroup,
		RestartNeeded: plan.RestartNeeded, Changed: []string{}, Removed: []string{},
	}
	for _, ch := range plan.Changes {
		if ch.Remove {
			res.Removed = append(res.Removed, ch.Path)
		} else {
			res.Changed = append(res.Changed, ch.Path)
		}
	}
	if g.DryRun {
		res.Diff = plan.Diff()
	} else {
		if err := c.Apply(plan); err != nil {
			return ExitFailed, err
		}
		if plan.Backup != nil && plan.Changed() {
			res.BackupWritten = plan.Backup.Path
		}
	}
	g.Emit(res, func(w io.Writer) {
		if g.DryRun {
			io.WriteString(w, res.Diff)
		}
		fmt.Fprintf(w, "containerd %s, config %s (%s)\n", res.ContainerdVersion, plan.Dialect, plan.Dialect.Reason)
		verb := "changed"
		if g.DryRun {
			verb = "would change"
		}
		switch {
		case !plan.Changed():
			fmt.Fprintln(w, "runsc is registered as configured; nothing to change")
		default:
			for _, p := range res.Changed {
				fmt.Fprintf(w, "%s %s\n", verb, p)
			}
			for _, p := range res.Removed {
				fmt.Fprintf(w, "%s %s (removed)\n", verb, p)
			}
			if res.BackupWritten != "" {
				fmt.Fprintf(w, "kept the original config in %s\n", res.BackupWritten)
			}
		}
		if plan.RestartNeeded {
			if g.DryRun {
				fmt.Fprintln(w, "containerd would need a restart to load the change")
			} else {
				fmt.Fprintf(w, "restart containerd to load the change: systemctl restart %s\n", g.Config.Containerd.Unit)
			}
		}
	})
	return ExitOK, nil
}
