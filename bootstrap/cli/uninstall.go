package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/advertise"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/config"

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
	// Node and LabelsRemoved: the Node taken out of the gVisor pool first; Labels
	// says why not, when it was not.
	Node          string   `json:"node,omitempty"`
	LabelsRemoved []string `json:"labels_removed,omitempty"`
	Labels        string   `json:"labels,omitempty"`
}

func init() {
	var force, keepLabels bool
	var nf nodeFlags
	var kf kubeFlags
	register(&Command{
		Name:    "uninstall",
		Summary: "restore the node: remove the runsc handler, options file, binaries, units and state",
		Long: `uninstall removes the runsc stanza from containerd's config (restoring the original backup
when the file is otherwise unchanged since it was patched), the runsc options file and any
drop-in, the binaries, the systemd units and the tool's state. It restarts containerd only if
its config changed and it is running. It refuses while pods run under the runsc handler
(checked through the CRI) unless --force.

Before anything is removed, the node leaves the gVisor pool, so that no gVisor pod is
scheduled to a node that no longer serves runsc: the ready label (cluster.ready_label) and,
for image and cloud-init delivery, the pool labels the RuntimeClass selects
(cluster.node_selector) are removed from its Node, with the kubelet's own credentials
(/var/lib/kubelet/kubeconfig, /etc/kubernetes/kubelet.conf), --kubeconfig, or the pod's
service account. If the API cannot be reached, nothing is removed (--keep-labels skips it);
a host with no Kubernetes credentials at all is not a node, and is uninstalled as is.`,
		Example: "  gvisor-bootstrap uninstall --dry-run\n  gvisor-bootstrap uninstall\n  gvisor-bootstrap uninstall --force   # even with gVisor pods running",
		Flags: func(fs *pflag.FlagSet) func(*Globals) error {
			fs.BoolVar(&force, "force", false, "uninstall even while pods run under the runsc handler (they keep running until they exit; new ones fail) e.g. --force")
			fs.BoolVar(&keepLabels, "keep-labels", false, "leave the Node's labels alone (remove the pool labels yourself, or gVisor pods keep landing here and fail) e.g. --keep-labels")
			nf.register(fs)
			kf.register(fs)
			return func(g *Globals) error { return nf.apply(fs, g) }
		},
		Run: func(ctx context.Context, g *Globals, args []string) (int, error) {
			var leave poolLeaver
			if !keepLabels {
				leave = func(ctx context.Context) (string, []string, string, error) { return leavePool(ctx, g, &kf) }
			}
			res, err := uninstallNode(ctx, g, force, leave)
			if err != nil {
				return ExitFailed, err
			}
			g.Emit(res, func(w io.Writer) {
				switch {
				case len(res.LabelsRemoved) > 0:
					fmt.Fprintf(w, "node %s left the gVisor pool: removed the labels %s\n", res.Node, strings.Join(res.LabelsRemoved, ", "))
				case res.Labels != "":
					fmt.Fprintln(w, res.Labels)
				}
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

// poolLeaver takes the Node out of the gVisor pool: the Node's name, the labels
// removed, or why nothing was done; an error stops the uninstall.
type poolLeaver func(ctx context.Context) (node string, removed []string, why string, err error)

func uninstallNode(ctx context.Context, g *Globals, force bool, leave poolLeaver) (uninstallResult, error) {
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
	if leave != nil && !g.DryRun {
		res.Node, res.LabelsRemoved, res.Labels, err = leave(ctx)
		if err != nil {
			return res, err
		}
	}
	// The units that repair the node go first: the edit below would trigger the
	// path unit, and a repair run waiting for this run's lock would, once it got
	// it, put everything back.
	var mgr systemd.Manager
	if !g.DryRun {
		mgr, err = systemd.Connect(ctx, g.Root)
		switch {
		case errors.Is(err, systemd.ErrUnavailable):
			mgr = nil
		case err != nil:
			return res, err
		default:
			defer mgr.Close()
			for _, u := range []string{units.PathUnit, units.RepairUnit} {
				if err := mgr.Stop(ctx, u); err != nil {
					return res, fmt.Errorf("%w; nothing was removed", err)
				}
			}
		}
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
	if mgr == nil {
		return res, nil
	}
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

// leavePool removes the ready label and, unless the DaemonSet delivers the tool
// (then the RuntimeClass needs the ready label, and the DaemonSet selects the pool
// label), the pool labels from this node's Node.
func leavePool(ctx context.Context, g *Globals, kf *kubeFlags) (string, []string, string, error) {
	acc, err := kf.connect(g, true)
	if errors.Is(err, errNoCluster) {
		return "", nil, "labels: not touched: " + err.Error() + " (not a Kubernetes node?)", nil
	}
	if err != nil {
		return "", nil, "", fmt.Errorf("take this node out of the gVisor pool: %w; nothing was removed. Fix the access, or pass --keep-labels and remove the labels yourself", err)
	}
	label, err := advertise.ParseLabel(g.Config.Cluster.ReadyLabel)
	if err != nil {
		return "", nil, "", usageErrorf("cluster.ready_label: %v", err)
	}
	keys := []string{label.Key}
	if g.Config.Delivery.Mode != config.DeliveryDaemonSet {
		for k := range g.Config.Cluster.NodeSelector {
			keys = append(keys, k)
		}
		sort.Strings(keys[1:])
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	a := &advertise.Advertiser{Client: acc.client, Node: acc.node, Label: label}
	removed, err := a.Withdraw(ctx, keys)
	if apierrors.IsNotFound(err) {
		return acc.node, nil, fmt.Sprintf("labels: node %s is not registered: nothing to withdraw", acc.node), nil
	}
	if err != nil {
		return acc.node, nil, "", fmt.Errorf("take node %s out of the gVisor pool (credentials: %s): %w; nothing was removed. Fix the access, or pass --keep-labels and run: kubectl label node %s %s", acc.node, acc.source, err, acc.node, strings.Join(keys, "- ")+"-")
	}
	if len(removed) == 0 {
		return acc.node, nil, fmt.Sprintf("labels: node %s carries none of %s", acc.node, strings.Join(keys, ", ")), nil
	}
	return acc.node, removed, "", nil
}
