// Package owner tells the DaemonSet's pod why it is being stopped: a rollout or a
// node leaving the pool (the DaemonSet is still there), or the DaemonSet being
// deleted, after which nothing will run on this node again and the node should be
// uninstalled. Kubernetes does not tell a pod which (kubernetes/kubernetes#44911).
//
// The answer comes from a watch on the DaemonSet held while the pod runs, and a
// read when the pod stops. The watch matters: `kubectl delete -f` of the rendered
// manifest deletes the ServiceAccount before the DaemonSet, so by the time the pod
// gets SIGTERM its token is refused and a read can no longer tell. A watch opened
// earlier still delivers the DaemonSet's deletion.
package owner

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/backoff"
)

// DaemonSet watches one DaemonSet.
type DaemonSet struct {
	Client          kubernetes.Interface
	Namespace, Name string

	mu      sync.Mutex
	removed string // why the DaemonSet was last seen deleted; "" when last seen there
}

// Parse reads "namespace/name".
func Parse(s string) (ns, name string, err error) {
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return "", "", fmt.Errorf("daemonset %q: want namespace/name, e.g. kube-system/gvisor-bootstrap", s)
	}
	return ns, name, nil
}

func (d *DaemonSet) String() string { return d.Namespace + "/" + d.Name }

// Watch follows the DaemonSet until ctx ends, recording its deletion. Errors are
// retried with a back-off; what was seen last stands meanwhile.
func (d *DaemonSet) Watch(ctx context.Context) {
	failures := 0
	for ctx.Err() == nil {
		if d.watchOnce(ctx) {
			failures = 0
		} else {
			failures++
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff.Doubling(time.Second, time.Minute, failures)):
		}
	}
}

// watchOnce lists then watches from the list's version; it reports whether it
// got as far as watching.
func (d *DaemonSet) watchOnce(ctx context.Context) bool {
	sel := fields.OneTermEqualSelector("metadata.name", d.Name).String()
	list, err := d.Client.AppsV1().DaemonSets(d.Namespace).List(ctx, metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		return false
	}
	if len(list.Items) == 0 {
		d.set("the DaemonSet " + d.String() + " does not exist")
		return true
	}
	d.observe(&list.Items[0])
	w, err := d.Client.AppsV1().DaemonSets(d.Namespace).Watch(ctx, metav1.ListOptions{FieldSelector: sel, ResourceVersion: list.ResourceVersion})
	if err != nil {
		return false
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return true
		case ev, ok := <-w.ResultChan():
			if !ok {
				return true
			}
			switch ev.Type {
			case watch.Deleted:
				// Then list again: one created anew under the same name is a
				// redeployment.
				d.set("the DaemonSet " + d.String() + " was deleted")
				return true
			case watch.Added, watch.Modified:
				if ds, ok := ev.Object.(*appsv1.DaemonSet); ok {
					d.observe(ds)
				}
			}
		}
	}
}

// observe records the DaemonSet as seen. One created again under the same name
// (delete --cascade=orphan, then apply: how immutable fields are changed) adopts
// this pod: that is a redeployment, not a removal.
func (d *DaemonSet) observe(ds *appsv1.DaemonSet) {
	why := ""
	if ds.DeletionTimestamp != nil {
		why = "the DaemonSet " + d.String() + " is being deleted"
	}
	d.set(why)
}

func (d *DaemonSet) set(why string) {
	d.mu.Lock()
	d.removed = why
	d.mu.Unlock()
}

// Removed reports whether the DaemonSet is deleted or being deleted, and why. A
// read now decides when it can be made; when it cannot (the token already refused,
// the API unreachable), what the watch saw last decides. An error means neither
// can tell: callers must then assume the DaemonSet is still there.
func (d *DaemonSet) Removed(ctx context.Context) (bool, string, error) {
	ds, err := d.Client.AppsV1().DaemonSets(d.Namespace).Get(ctx, d.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return true, "the DaemonSet " + d.String() + " does not exist", nil
	case err == nil && ds.DeletionTimestamp != nil:
		return true, "the DaemonSet " + d.String() + " is being deleted", nil
	case err == nil:
		return false, "", nil
	}
	d.mu.Lock()
	why := d.removed
	d.mu.Unlock()
	if why != "" {
		return true, why + " (seen by the watch; reading it now: " + err.Error() + ")", nil
	}
	return false, "", fmt.Errorf("read the DaemonSet %s: %w", d, err)
}
