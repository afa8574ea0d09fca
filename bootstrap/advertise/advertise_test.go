package advertise

import (
	"context"
	"errors"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func node(labels map[string]string, taints ...corev1.Taint) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: labels, ResourceVersion: "7"}, Spec: corev1.NodeSpec{Taints: taints}}
}

var (
	startup = corev1.Taint{Key: "gvisor-bootstrap.dev/runsc", Value: "not-ready", Effect: corev1.TaintEffectNoSchedule}
	pool    = corev1.Taint{Key: "gvisor", Value: "enabled", Effect: corev1.TaintEffectNoSchedule}
)

func advertiser(t *testing.T, n *corev1.Node, taint string) (*Advertiser, *fake.Clientset) {
	t.Helper()
	c := fake.NewClientset(n)
	l, err := ParseLabel(DefaultLabel)
	if err != nil {
		t.Fatal(err)
	}
	tt, err := ParseTaint(taint)
	if err != nil {
		t.Fatal(err)
	}
	return &Advertiser{Client: c, Node: n.Name, Label: l, Taint: tt}, c
}

func get(t *testing.T, c *fake.Clientset) *corev1.Node {
	t.Helper()
	n, err := c.CoreV1().Nodes().Get(context.Background(), "n1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func patches(c *fake.Clientset) []string {
	var out []string
	for _, a := range c.Actions() {
		if p, ok := a.(k8stesting.PatchAction); ok {
			out = append(out, string(p.GetPatchType())+" "+string(p.GetPatch()))
		}
	}
	return out
}

func TestReadyLabelsAndRemovesOnlyTheStartupTaint(t *testing.T) {
	a, c := advertiser(t, node(map[string]string{"gvisor": "enabled", "other": "x"}, pool, startup), "gvisor-bootstrap.dev/runsc=not-ready:NoSchedule")
	ctx := context.Background()
	if err := a.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	n := get(t, c)
	if want := map[string]string{"gvisor": "enabled", "other": "x", "gvisor-bootstrap.dev/runsc": "ready"}; !reflect.DeepEqual(n.Labels, want) {
		t.Errorf("labels %v, want %v", n.Labels, want)
	}
	if !reflect.DeepEqual(n.Spec.Taints, []corev1.Taint{pool}) {
		t.Errorf("taints %v, want only the pool's", n.Spec.Taints)
	}
	first := len(patches(c))
	if first != 2 {
		t.Errorf("patches %v, want the label and the taint", patches(c))
	}
	// Again: nothing to change, nothing sent.
	if err := a.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	if got := patches(c); len(got) != first {
		t.Errorf("a second Ready patched again: %v", got[first:])
	}
	if ok, err := a.Advertised(ctx); err != nil || !ok {
		t.Errorf("Advertised = %v, %v", ok, err)
	}
}

func TestNotReadyRemovesOnlyTheLabel(t *testing.T) {
	a, c := advertiser(t, node(map[string]string{"gvisor": "enabled", "gvisor-bootstrap.dev/runsc": "ready"}, pool), "")
	ctx := context.Background()
	if err := a.NotReady(ctx); err != nil {
		t.Fatal(err)
	}
	n := get(t, c)
	if want := map[string]string{"gvisor": "enabled"}; !reflect.DeepEqual(n.Labels, want) {
		t.Errorf("labels %v, want %v", n.Labels, want)
	}
	if !reflect.DeepEqual(n.Spec.Taints, []corev1.Taint{pool}) {
		t.Errorf("taints changed: %v", n.Spec.Taints)
	}
	if got := patches(c); len(got) != 1 || got[0] != `application/merge-patch+json {"metadata":{"labels":{"gvisor-bootstrap.dev/runsc":null}}}` {
		t.Errorf("patches %v: want one merge patch naming only the label", got)
	}
	if err := a.NotReady(ctx); err != nil || len(patches(c)) != 1 {
		t.Errorf("second NotReady: %v, patches %v", err, patches(c))
	}
	if ok, _ := a.Advertised(ctx); ok {
		t.Error("still advertised")
	}
}

func TestReadyWithoutTaintConfiguredLeavesTaints(t *testing.T) {
	a, c := advertiser(t, node(nil, pool, startup), "")
	if err := a.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := get(t, c); !reflect.DeepEqual(n.Spec.Taints, []corev1.Taint{pool, startup}) {
		t.Errorf("taints %v", n.Spec.Taints)
	}
}

func TestSelected(t *testing.T) {
	tol := []corev1.Toleration{{Key: "gvisor", Operator: corev1.TolerationOpEqual, Value: "enabled", Effect: corev1.TaintEffectNoSchedule}}
	sel := map[string]string{"gvisor": "enabled"}
	for name, c := range map[string]struct {
		n    *corev1.Node
		want bool
	}{
		"selected":                {node(map[string]string{"gvisor": "enabled"}, pool), true},
		"label removed":           {node(map[string]string{"gvisor": "disabled"}), false},
		"NoExecute not tolerated": {node(map[string]string{"gvisor": "enabled"}, corev1.Taint{Key: "drain", Effect: corev1.TaintEffectNoExecute}), false},
		"NoSchedule keeps a pod":  {node(map[string]string{"gvisor": "enabled"}, corev1.Taint{Key: "cordon", Effect: corev1.TaintEffectNoSchedule}), true},
	} {
		a, _ := advertiser(t, c.n, "")
		got, why, err := a.Selected(context.Background(), sel, tol)
		if err != nil || got != c.want {
			t.Errorf("%s: Selected = %v (%s), %v; want %v", name, got, why, err, c.want)
		}
		if !got && why == "" {
			t.Errorf("%s: no reason given", name)
		}
	}
}

func TestParse(t *testing.T) {
	for _, bad := range []string{"", "noequals", "a=b=c", "-x=y", "k=" + string(make([]byte, 70))} {
		if _, err := ParseLabel(bad); err == nil {
			t.Errorf("ParseLabel(%q) accepted", bad)
		}
	}
	for _, bad := range []string{"k", "k:Never", "k=v", "=v:NoSchedule"} {
		if _, err := ParseTaint(bad); err == nil {
			t.Errorf("ParseTaint(%q) accepted", bad)
		}
	}
	if tt, err := ParseTaint("a.b/c:NoExecute"); err != nil || tt.Key != "a.b/c" || tt.Value != "" || tt.Effect != corev1.TaintEffectNoExecute {
		t.Errorf("ParseTaint: %+v %v", tt, err)
	}
}

func TestWithdrawRemovesOnlyThePoolAndReadyLabels(t *testing.T) {
	a, c := advertiser(t, node(map[string]string{"gvisor": "enabled", "gvisor-bootstrap.dev/runsc": "ready", "other": "x"}, pool), "")
	removed, err := a.Withdraw(context.Background(), []string{"gvisor-bootstrap.dev/runsc", "gvisor", "absent"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"gvisor-bootstrap.dev/runsc", "gvisor"}; !reflect.DeepEqual(removed, want) {
		t.Errorf("removed %v, want %v", removed, want)
	}
	n := get(t, c)
	if want := map[string]string{"other": "x"}; !reflect.DeepEqual(n.Labels, want) {
		t.Errorf("labels now %v, want %v", n.Labels, want)
	}
	if len(n.Spec.Taints) != 1 {
		t.Errorf("taints changed: %v", n.Spec.Taints)
	}
	// Nothing left to remove: no patch at all.
	before := len(patches(c))
	if removed, err := a.Withdraw(context.Background(), []string{"gvisor"}); err != nil || removed != nil {
		t.Errorf("second withdraw: %v %v", removed, err)
	}
	if len(patches(c)) != before {
		t.Errorf("a withdraw with nothing to remove patched the node: %v", patches(c))
	}
}

// containerd serving runsc is not enough: until kubelet lists it in the Node's
// status.runtimeHandlers (it reconnects after a containerd restart), a pod bound
// to the node fails to get a sandbox. So Ready does not label before that.
func TestReadyWaitsForKubeletToReportTheHandler(t *testing.T) {
	n := node(map[string]string{"gvisor": "enabled"})
	n.Status.RuntimeHandlers = []corev1.NodeRuntimeHandler{{Name: "runc"}}
	a, c := advertiser(t, n, "")
	a.Handler = "runsc"
	if err := a.Ready(context.Background()); !errors.Is(err, ErrKubeletNotYet) {
		t.Fatalf("Ready before kubelet reports runsc: %v", err)
	}
	if len(patches(c)) != 0 {
		t.Fatalf("labelled before kubelet reported runsc: %v", patches(c))
	}
	n.Status.RuntimeHandlers = append(n.Status.RuntimeHandlers, corev1.NodeRuntimeHandler{Name: "runsc"})
	if _, err := c.CoreV1().Nodes().UpdateStatus(context.Background(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := a.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := get(t, c).Labels["gvisor-bootstrap.dev/runsc"]; got != "ready" {
		t.Fatalf("label %q after kubelet reported runsc", got)
	}
}
