package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/advertise"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/nodepaths"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/reconcile"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/systemd"
)

// kubeFlags say how to reach the Kubernetes API and which Node is this one.
type kubeFlags struct {
	kubeconfig, nodeName string
}

func (k *kubeFlags) register(fs interface {
	StringVar(p *string, name, value, usage string)
}) {
	fs.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig to reach the API (default: the pod's service account when in a pod), e.g. /etc/kubernetes/kubelet.conf")
	fs.StringVar(&k.nodeName, "node-name", os.Getenv("NODE_NAME"), "this node's Node name (default $NODE_NAME, from the downward API in the DaemonSet), e.g. aks-gvisor-12345-vmss000000")
}

// advertiser builds the Advertiser from the config and the flags.
func (k *kubeFlags) advertiser(g *Globals) (*advertise.Advertiser, error) {
	label, err := advertise.ParseLabel(g.Config.Cluster.ReadyLabel)
	if err != nil {
		return nil, usageErrorf("cluster.ready_label: %v", err)
	}
	taint, err := advertise.ParseTaint(g.Config.Cluster.StartupTaint)
	if err != nil {
		return nil, usageErrorf("cluster.startup_taint: %v", err)
	}
	acc, err := k.connect(g, false)
	if err != nil {
		return nil, fmt.Errorf("advertise: %w; in a pod the service account token must be mounted, elsewhere pass --kubeconfig", err)
	}
	return &advertise.Advertiser{Client: acc.client, Node: acc.node, Label: label, Taint: taint, Handler: g.Config.Cluster.Handler}, nil
}

// advertiseAfter sets or removes the ready label after a run, and says on the
// report whether the node is advertised and, if not, why, in one line.
func advertiseAfter(ctx context.Context, a *advertise.Advertiser, rep *reconcile.Report) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var err error
	yes := false
	switch {
	case rep.Outcome != reconcile.Failed && rep.Served:
		// kubelet re-reads the CRI's status every few seconds (and reconnects after a
		// containerd restart): wait for it to report the handler before labelling.
		for {
			if err = a.Ready(ctx); !errors.Is(err, advertise.ErrKubeletNotYet) {
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Second):
				continue
			}
			break
		}
		if err == nil {
			yes = true
		} else {
			rep.NotAdvertised = "not advertised: " + err.Error()
		}
	case rep.Outcome == reconcile.Failed:
		rep.NotAdvertised = "not advertised: the last run failed: " + firstLine(rep.Error)
		err = a.NotReady(ctx)
		if err != nil {
			rep.NotAdvertised += "; and removing the label failed: " + err.Error()
		}
	default:
		// Not verified through the CRI (containerd not up yet): leave the label as
		// it is; the next run decides.
		rep.NotAdvertised = fmt.Sprintf("not advertised by this run: runsc not verified through the CRI yet (containerd %s)", rep.Containerd)
		if ok, gerr := a.Advertised(ctx); gerr == nil {
			yes = ok
		}
	}
	rep.Advertised = &yes
	if yes {
		rep.NotAdvertised = ""
	}
	return err
}

// unadvertiseOnExit removes the label when the pod ends for good: its node is no
// longer selected by the DaemonSet (a node pool relabelled, a NoExecute taint).
func unadvertiseOnExit(g *Globals, a *advertise.Advertiser) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var tol []corev1.Toleration
	for _, t := range g.Config.Cluster.Tolerations {
		tol = append(tol, corev1.Toleration{Key: t.Key, Operator: corev1.TolerationOperator(t.Operator), Value: t.Value, Effect: corev1.TaintEffect(t.Effect)})
	}
	sel, why, err := a.Selected(ctx, g.Config.Cluster.NodeSelector, tol)
	log := g.logger()
	switch {
	case err != nil:
		log.Warn("stopping: could not tell whether this node is still selected; the label stays", "error", err)
	case sel:
		log.Info("stopping; the node is still selected, so the label stays (a rollout or a restart)")
	default:
		if err := a.NotReady(ctx); err != nil {
			log.Error("stopping: the node is no longer selected but removing the label failed", "why", why, "error", err)
			return
		}
		log.Info("stopping: the node is no longer selected: removed the ready label", "why", why, "label", a.Label.Key)
	}
}

// uninstallHandoff is the transient unit that uninstalls the node once its
// DaemonSet is gone.
const uninstallHandoff = "gvisor-bootstrap-uninstall.service"

// uninstallIfOwnerRemoved hands the node's uninstall to the host when the pod
// stops because its DaemonSet was deleted, and reports whether it did. The host
// runs it, not this pod: it outlives the pod's grace period, and it leaves the pool
// with the kubelet's credentials when this pod's token is already refused (the
// ServiceAccount is deleted with the DaemonSet). It refuses while gVisor pods still
// run on the node; the node then keeps serving them.
func uninstallIfOwnerRemoved(g *Globals, f *runFlags) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	log := g.logger()
	gone, why, err := f.owner.Removed(ctx)
	switch {
	case err != nil:
		log.Warn("stopping: could not tell whether the DaemonSet was deleted, so gVisor stays installed (run `gvisor-bootstrap uninstall` on the node to remove it)", "daemonset", f.owner.String(), "error", err)
		return false
	case !gone:
		return false
	}
	// Out of the pool first; with a refused token the host's uninstall does it.
	if err := f.adv.NotReady(ctx); err != nil {
		log.Info("stopping: could not remove the ready label with this pod's token; the host's uninstall removes it with the kubelet's", "error", err)
	}
	mgr, err := systemd.Connect(ctx, g.Root)
	if err != nil {
		log.Error("stopping: "+why+", but the host's systemd is not reachable to uninstall: run `gvisor-bootstrap uninstall` on the node", "error", err)
		return true
	}
	defer mgr.Close()
	if err := mgr.RunTransient(ctx, uninstallHandoff, "gvisor-bootstrap uninstall: its DaemonSet was deleted", []string{nodepaths.Binary, "uninstall"}); err != nil {
		log.Error("stopping: "+why+", but starting the uninstall on the host failed: run `gvisor-bootstrap uninstall` on the node", "unit", uninstallHandoff, "error", err)
		return true
	}
	log.Info("stopping: "+why+": the host is uninstalling gVisor from this node (`journalctl -u "+uninstallHandoff+"`)", "node", f.adv.Node)
	return true
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
