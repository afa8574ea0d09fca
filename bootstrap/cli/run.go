package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/pflag"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/advertise"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/owner"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/reconcile"
)

type runFlags struct {
	gate, watch, deep bool
	advertise         bool
	kube              kubeFlags
	adv               *advertise.Advertiser
	daemonSet         string
	owner             *owner.DaemonSet
	interval, resync  time.Duration
	nodeFlags
}

func init() {
	f := &runFlags{}
	register(&Command{
		Name:    "run",
		Summary: "reconcile the node: install, configure, restart containerd only if needed, verify",
		Usage:   "[flags]",
		Long: `run is what systemd runs on every boot (gvisor-bootstrap.service), after every rewrite of
containerd's config (gvisor-bootstrap.path) and before kubelet starts (--gate). It installs the
pinned gVisor release unless it is already installed and intact, registers the runsc handler
in containerd's config, restarts containerd only when its effective config changed and it is
running, and verifies through the CRI that kubelet will find the runsc handler. If containerd
does not come back serving runsc after a restart, the previous config is restored.

Runs are serialised by a lock on /run/gvisor-bootstrap/run.lock (root-only; the DaemonSet pod
mounts the same directory, so its runs and the host's exclude each other).

Exit codes: 0 healthy (nothing changed), 10 repaired (changed and verified), 1 failed,
2 bad input. With --gate, repaired exits 0, and a failure exits 0 only when the config says
boot.on_failure = "continue".`,
		Example: `  gvisor-bootstrap run                       # the boot-time reconcile
  gvisor-bootstrap run --gate                # kubelet's ExecStartPre: fail closed
  gvisor-bootstrap run --dry-run             # show the config diff, change nothing
  gvisor-bootstrap run --root /host --watch  # the DaemonSet: reconcile, then watch for rewrites`,
		Flags: func(fs *pflag.FlagSet) func(*Globals) error {
			fs.BoolVar(&f.gate, "gate", false, "kubelet gate: containerd must be up and serving runsc; exit 0 only on a verified node (e.g. ExecStartPre=gvisor-bootstrap run --gate)")
			fs.BoolVar(&f.watch, "watch", false, "after the first reconcile keep running and reconcile again whenever containerd's config changes (e.g. in the DaemonSet)")
			fs.DurationVar(&f.interval, "watch-interval", 2*time.Second, "with --watch, how often to look at containerd's config (e.g. 2s)")
			fs.DurationVar(&f.resync, "resync", 10*time.Minute, "with --watch, reconcile at least this often even without a change (e.g. 10m)")
			fs.BoolVar(&f.deep, "deep", false, "re-hash the installed binaries instead of trusting their recorded fingerprint (e.g. --deep)")
			fs.BoolVar(&f.advertise, "advertise", false, "label this Node (cluster.ready_label) after a run verified runsc through the CRI and remove cluster.startup_taint; remove the label when a run fails (the DaemonSet: run --watch --advertise)")
			fs.StringVar(&f.daemonSet, "uninstall-with-daemonset", "", "with --watch --advertise, the DaemonSet (namespace/name) running this pod: when the pod stops because that DaemonSet was deleted (not a rollout), the host's systemd runs `gvisor-bootstrap uninstall` (the DaemonSet: kube-system/gvisor-bootstrap)")
			f.kube.register(fs)
			f.nodeFlags.register(fs)
			return func(g *Globals) error {
				if f.deep {
					g.Config.Boot.DeepVerify = true
				}
				return f.nodeFlags.apply(fs, g)
			}
		},
		Run: func(ctx context.Context, g *Globals, args []string) (int, error) {
			if len(args) > 0 {
				return ExitUsage, usageErrorf("run takes no arguments, got %q", strings.Join(args, " "))
			}
			if f.advertise {
				a, err := f.kube.advertiser(g)
				if err != nil {
					return ExitUsage, err
				}
				f.adv = a
			}
			if f.daemonSet != "" {
				ns, name, err := owner.Parse(f.daemonSet)
				if err != nil {
					return ExitUsage, usageErrorf("--uninstall-with-daemonset: %v", err)
				}
				if f.adv == nil || !f.watch {
					return ExitUsage, usageErrorf("--uninstall-with-daemonset needs --watch and --advertise")
				}
				f.owner = &owner.DaemonSet{Client: f.adv.Client, Namespace: ns, Name: name}
				go f.owner.Watch(ctx)
			}
			if f.watch {
				return runWatch(ctx, g, f)
			}
			code, _ := runOnce(ctx, g, f)
			notify(daemon.SdNotifyReady)
			return code, nil
		},
	})
}

// runOnce reconciles, records and prints the result, and returns the exit code.
func runOnce(ctx context.Context, g *Globals, f *runFlags) (int, reconcile.Report) {
	log := g.logger()
	g.Unattended = g.Unattended || f.gate
	r, err := newReconciler(ctx, g, log)
	if err != nil {
		rep := reconcile.Report{Outcome: reconcile.Failed, Start: time.Now(), Error: err.Error()}
		return finishRun(g, f, rep), rep
	}
	r.Status = func(s string) { notify("STATUS=" + s) }
	r.Ready = func() { notify(daemon.SdNotifyReady) }
	rep := r.Run(ctx, reconcile.Options{DryRun: g.DryRun, Gate: f.gate})
	if f.adv != nil && !g.DryRun {
		if err := advertiseAfter(ctx, f.adv, &rep); err != nil {
			log.Error("could not update the node's ready label", "node", f.adv.Node, "error", err)
		}
		if rep.NotAdvertised != "" {
			log.Warn(rep.NotAdvertised, "node", f.adv.Node)
		} else {
			log.Info("node advertised for gVisor", "node", f.adv.Node, "label", f.adv.Label.String())
		}
	}
	if !g.DryRun {
		if _, err := reconcile.SaveRecord(g.Root, rep, installedRelease(g), g.Config.Metrics.TextfileDir); err != nil {
			log.Warn("could not record the run", "error", err)
		}
	}
	return finishRun(g, f, rep), rep
}

func finishRun(g *Globals, f *runFlags, rep reconcile.Report) int {
	notify("STATUS=" + summary(rep))
	g.Emit(rep, func(w io.Writer) {
		if rep.Diff != "" {
			fmt.Fprint(w, rep.Diff)
		}
		fmt.Fprintln(w, summary(rep))
	})
	switch rep.Outcome {
	case reconcile.Healthy:
		return ExitOK
	case reconcile.Repaired:
		if f.gate {
			return ExitOK
		}
		return ExitRepaired
	}
	fmt.Fprintf(g.Stderr, "gvisor-bootstrap run: FAILED: %s\n", rep.Error)
	if f.gate && g.Config.Boot.OnFailure == "continue" {
		fmt.Fprintln(g.Stderr, "gvisor-bootstrap run: boot.on_failure = \"continue\": letting kubelet start on a node that CANNOT run gVisor pods")
		return ExitOK
	}
	return ExitFailed
}

func summary(rep reconcile.Report) string {
	var b strings.Builder
	prefix := ""
	if rep.DryRun {
		prefix = "dry run: would be "
	}
	fmt.Fprintf(&b, "%s%s in %.1f ms", prefix, rep.Outcome, rep.DurationMS)
	if rep.BinariesChange != "" {
		fmt.Fprintf(&b, "; binaries: %s", rep.BinariesChange)
	}
	if rep.ConfigChange != "" {
		fmt.Fprintf(&b, "; config: %s", rep.ConfigChange)
	}
	if rep.Restarts > 0 {
		fmt.Fprintf(&b, "; containerd restarts: %d", rep.Restarts)
	}
	if rep.RolledBack {
		b.WriteString("; previous config restored")
	}
	switch {
	case rep.HandlerSeen:
		b.WriteString("; CRI serves runsc")
	case !rep.RuntimeChecked && rep.Outcome != reconcile.Failed && !rep.DryRun:
		fmt.Fprintf(&b, "; runtime check deferred (containerd %s)", rep.Containerd)
	}
	return b.String()
}

// runWatch reconciles, then reconciles again whenever containerd's config file
// changes (size, mtime, inode) or every resync period: the DaemonSet's loop, in place
// of the `sleep infinity` such DaemonSets usually end with.
func runWatch(ctx context.Context, g *Globals, f *runFlags) (int, error) {
	code, rep := runOnce(ctx, g, f)
	notify(daemon.SdNotifyReady)
	path := g.Root.Path(g.Config.Containerd.ConfigPath)
	// Compare with the file as the reconcile left it, not as it is now: a rewrite
	// that lands just after the run must still be seen.
	last := rep.ConfigFingerprint
	lastRun := time.Now()
	tick := time.NewTicker(f.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if f.owner != nil && uninstallIfOwnerRemoved(g, f) {
				return code, nil
			}
			if f.adv != nil {
				unadvertiseOnExit(g, f.adv)
			}
			return code, nil
		case <-tick.C:
		}
		if f.adv != nil && rep.Advertised != nil && !*rep.Advertised && rep.Served && rep.Outcome != reconcile.Failed {
			// The label could not be set (API unreachable): try again, not only at
			// the next change or resync.
			if err := advertiseAfter(ctx, f.adv, &rep); err == nil {
				g.logger().Info("node advertised for gVisor", "node", f.adv.Node, "label", f.adv.Label.String())
			}
		}
		now := reconcile.FileFingerprint(path)
		if now == last && time.Since(lastRun) < f.resync {
			continue
		}
		if now != last {
			// Another agent may be writing the file in place (truncate, then write):
			// reading it half-written would replace its content with ours. Wait
			// until it holds still for one interval.
			if !settled(ctx, path, now, f.interval) {
				continue
			}
			g.logger().Info("containerd's config changed: reconciling", "path", path)
		}
		code, rep = runOnce(ctx, g, f)
		last, lastRun = rep.ConfigFingerprint, time.Now()
	}
}

// settled waits one interval and reports whether the file still looks as seen. A
// missing or empty file is usually another agent between `rm` and its write, so
// it must hold still for a second before the reconcile writes one of its own.
func settled(ctx context.Context, path, seen string, interval time.Duration) bool {
	wait := interval
	if st, err := os.Stat(path); (err != nil || st.Size() == 0) && wait < time.Second {
		wait = time.Second
	}
	select {
	case <-ctx.Done():
		return false
	case <-time.After(wait):
	}
	return reconcile.FileFingerprint(path) == seen
}

func notify(state string) { _, _ = daemon.SdNotify(false, state) }
