// Package advertise tells the cluster, on the Node object, whether this node serves
// gVisor: the DaemonSet's pod sets a label (cluster.ready_label, selected by the
// RuntimeClass for DaemonSet delivery) only after a run verified runsc through the
// CRI, removes a startup taint when one is configured (AKS --node-taints,
// Karpenter startupTaints), and removes the label when verification fails, on
// uninstall, and on SIGTERM when the node is no longer selected. It changes
// nothing else on the Node: the ValidatingAdmissionPolicy rendered with the
// DaemonSet refuses any other change by its service account.
package advertise

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// DefaultLabel is set on a Node that serves the runsc handler.
const DefaultLabel = "gvisor-bootstrap.dev/runsc=ready"

// Label is one label, key=value.
type Label struct{ Key, Value string }

func (l Label) String() string { return l.Key + "=" + l.Value }

// Taint is a startup taint to remove once the node is ready.
type Taint struct {
	Key, Value string
	Effect     corev1.TaintEffect
}

func (t Taint) String() string {
	s := t.Key
	if t.Value != "" {
		s += "=" + t.Value
	}
	return s + ":" + string(t.Effect)
}

var (
	qualified = regexp.MustCompile(`^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)
	value     = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$`)
)

// ParseLabel parses "key=value" (a qualified name and a label value).
func ParseLabel(s string) (Label, error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok || !qualified.MatchString(k) || !value.MatchString(v) || v == "" {
		return Label{}, fmt.Errorf("label %q: want key=value, e.g. %s", s, DefaultLabel)
	}
	return Label{k, v}, nil
}

// ParseTaint parses "key[=value]:Effect"; "" is no taint.
func ParseTaint(s string) (*Taint, error) {
	if s == "" {
		return nil, nil
	}
	kv, eff, ok := strings.Cut(s, ":")
	k, v, _ := strings.Cut(kv, "=")
	switch corev1.TaintEffect(eff) {
	case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
	default:
		ok = false
	}
	if !ok || !qualified.MatchString(k) || !value.MatchString(v) {
		return nil, fmt.Errorf("taint %q: want key[=value]:Effect with Effect NoSchedule, PreferNoSchedule or NoExecute, e.g. gvisor-bootstrap.dev/runsc=not-ready:NoSchedule", s)
	}
	return &Taint{Key: k, Value: v, Effect: corev1.TaintEffect(eff)}, nil
}

// Advertiser changes one Node.
type Advertiser struct {
	Client kubernetes.Interface
	Node   string
	Label  Label
	// Taint, when set, is removed by Ready.
	Taint *Taint
	// Handler, when set, must be listed in the Node's status.runtimeHandlers
	// before Ready labels it: containerd serving runsc is not enough, kubelet must
	// have seen it (right after containerd restarts, kubelet's own CRI connection
	// is still reconnecting, and a pod bound then fails to get a sandbox).
	Handler string
}

// ErrKubeletNotYet: the CRI serves the handler but kubelet has not reported it.
var ErrKubeletNotYet = errors.New("kubelet has not reported the handler yet")

// KubeletReports reports whether the Node's status.runtimeHandlers lists Handler.
func (a *Advertiser) KubeletReports(ctx context.Context) (bool, error) {
	n, err := a.get(ctx)
	if err != nil {
		return false, err
	}
	return reports(n, a.Handler), nil
}

func reports(n *corev1.Node, handler string) bool {
	for _, h := range n.Status.RuntimeHandlers {
		if h.Name == handler {
			return true
		}
	}
	return false
}

// Ready labels the node and removes the startup taint. Each is a patch that
// changes nothing when already so.
func (a *Advertiser) Ready(ctx context.Context) error {
	n, err := a.get(ctx)
	if err != nil {
		return err
	}
	if a.Handler != "" && !reports(n, a.Handler) {
		return fmt.Errorf("%w: node %s's status.runtimeHandlers does not list %q (kubelet reports them from Kubernetes 1.30 on)", ErrKubeletNotYet, a.Node, a.Handler)
	}
	if n.Labels[a.Label.Key] != a.Label.Value {
		if err := a.patchLabel(ctx, &a.Label.Value); err != nil {
			return err
		}
	}
	if a.Taint == nil {
		return nil
	}
	// A JSON patch guarded by the resourceVersion: the taint list is replaced
	// whole, so another writer's change in between makes it fail, not vanish.
	var keep []corev1.Taint
	found := false
	for _, t := range n.Spec.Taints {
		if t.Key == a.Taint.Key && t.Effect == a.Taint.Effect {
			found = true
			continue
		}
		keep = append(keep, t)
	}
	if !found {
		return nil
	}
	if keep == nil {
		keep = []corev1.Taint{}
	}
	patch, _ := json.Marshal([]map[string]any{
		{"op": "test", "path": "/metadata/resourceVersion", "value": n.ResourceVersion},
		{"op": "replace", "path": "/spec/taints", "value": keep},
	})
	if _, err := a.Client.CoreV1().Nodes().Patch(ctx, a.Node, types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: "gvisor-bootstrap"}); err != nil {
		return fmt.Errorf("remove the startup taint %s from node %s: %w", a.Taint, a.Node, err)
	}
	return nil
}

// NotReady removes the label (the taint is not put back: it is a startup taint,
// and without the label the RuntimeClass no longer selects the node).
func (a *Advertiser) NotReady(ctx context.Context) error {
	n, err := a.get(ctx)
	if err != nil {
		return err
	}
	if _, ok := n.Labels[a.Label.Key]; !ok {
		return nil
	}
	return a.patchLabel(ctx, nil)
}

// Advertised reports whether the node carries the label.
func (a *Advertiser) Advertised(ctx context.Context) (bool, error) {
	n, err := a.get(ctx)
	if err != nil {
		return false, err
	}
	return n.Labels[a.Label.Key] == a.Label.Value, nil
}

// Selected reports whether a pod with this nodeSelector and these tolerations
// (the DaemonSet's) still lands on the node: when not, a SIGTERM means the pod is
// leaving for good and the label must go with it.
func (a *Advertiser) Selected(ctx context.Context, selector map[string]string, tolerations []corev1.Toleration) (bool, string, error) {
	n, err := a.get(ctx)
	if err != nil {
		return false, "", err
	}
	for k, v := range selector {
		if n.Labels[k] != v {
			return false, fmt.Sprintf("node %s no longer has the label %s=%s", a.Node, k, v), nil
		}
	}
	for _, t := range n.Spec.Taints {
		if t.Effect != corev1.TaintEffectNoExecute {
			continue // a running pod stays despite NoSchedule
		}
		tolerated := false
		for _, tol := range tolerations {
			tolerated = tolerated || tolerates(tol, t)
		}
		if !tolerated {
			return false, fmt.Sprintf("node %s has the taint %s:%s the DaemonSet does not tolerate", a.Node, t.Key, t.Effect), nil
		}
	}
	return true, "", nil
}

func (a *Advertiser) get(ctx context.Context) (*corev1.Node, error) {
	n, err := a.Client.CoreV1().Nodes().Get(ctx, a.Node, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get node %s: %w", a.Node, err)
	}
	return n, nil
}

// patchLabel sets the label (value) or removes it (nil) with a merge patch that
// names only that key.
func (a *Advertiser) patchLabel(ctx context.Context, v *string) error {
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]*string{a.Label.Key: v}}})
	if _, err := a.Client.CoreV1().Nodes().Patch(ctx, a.Node, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "gvisor-bootstrap"}); err != nil {
		verb := "set"
		if v == nil {
			verb = "remove"
		}
		return fmt.Errorf("%s the label %s on node %s: %w", verb, a.Label.Key, a.Node, err)
	}
	return nil
}

// tolerates is the scheduler's toleration match.
func tolerates(tol corev1.Toleration, t corev1.Taint) bool {
	if tol.Effect != "" && tol.Effect != t.Effect {
		return false
	}
	if tol.Key == "" {
		return tol.Operator == corev1.TolerationOpExists
	}
	if tol.Key != t.Key {
		return false
	}
	return tol.Operator == corev1.TolerationOpExists || tol.Value == t.Value
}

// Withdraw takes the node out of the gVisor pool before runsc goes away: it
// removes each of the keys present on the Node (the ready label, and for image
// and cloud-init delivery the pool labels the RuntimeClass selects), so the
// scheduler stops placing gVisor pods here. One merge patch names exactly those
// keys; keys already absent are not touched. It returns the keys removed.
func (a *Advertiser) Withdraw(ctx context.Context, keys []string) ([]string, error) {
	n, err := a.get(ctx)
	if err != nil {
		return nil, err
	}
	drop := map[string]*string{}
	var removed []string
	for _, k := range keys {
		_, present := n.Labels[k]
		if _, dup := drop[k]; present && !dup {
			drop[k] = nil
			removed = append(removed, k)
		}
	}
	if len(removed) == 0 {
		return nil, nil
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": drop}})
	if _, err := a.Client.CoreV1().Nodes().Patch(ctx, a.Node, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "gvisor-bootstrap"}); err != nil {
		return nil, fmt.Errorf("remove the labels %s from node %s: %w", strings.Join(removed, ", "), a.Node, err)
	}
	return removed, nil
}
