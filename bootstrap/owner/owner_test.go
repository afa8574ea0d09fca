package owner

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func ds() *appsv1.DaemonSet {
	return &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "gvisor-bootstrap"}}
}

// watching starts Watch on a fake API holding objs and waits until the watch is
// open (the fake's watch reactor was called).
func watching(t *testing.T, objs ...runtime.Object) (*DaemonSet, *fake.Clientset) {
	t.Helper()
	c := fake.NewClientset(objs...)
	opened := make(chan struct{}, 8)
	c.PrependWatchReactor("daemonsets", func(k8stesting.Action) (bool, watch.Interface, error) {
		opened <- struct{}{}
		return false, nil, nil
	})
	d := &DaemonSet{Client: c, Namespace: "kube-system", Name: "gvisor-bootstrap"}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go d.Watch(ctx)
	select {
	case <-opened:
	case <-time.After(10 * time.Second):
		t.Fatal("the watch was never opened")
	}
	return d, c
}

// refuseReads makes every later read fail as a deleted ServiceAccount's token does.
func refuseReads(c *fake.Clientset) {
	c.PrependReactor("get", "daemonsets", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewUnauthorized("invalid bearer token, service account token has been invalidated")
	})
}

// eventually polls Removed until it says want or the deadline passes.
func eventually(t *testing.T, d *DaemonSet, want bool) (string, error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		gone, why, err := d.Removed(context.Background())
		if gone == want || time.Now().After(deadline) {
			if gone != want {
				t.Fatalf("Removed = %v (%q, %v), want %v", gone, why, err, want)
			}
			return why, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRollingUpdateIsNotRemoval(t *testing.T) {
	d, c := watching(t, ds())
	updated := ds()
	updated.Spec.Template.Annotations = map[string]string{"gvisor-bootstrap/config-sha256": "new"}
	if _, err := c.AppsV1().DaemonSets("kube-system").Update(context.Background(), updated, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if gone, why, err := d.Removed(context.Background()); gone || err != nil {
		t.Fatalf("after a rollout: Removed = %v %q %v", gone, why, err)
	}
}

func TestDeletedIsRemoval(t *testing.T) {
	d, c := watching(t, ds())
	if err := c.AppsV1().DaemonSets("kube-system").Delete(context.Background(), "gvisor-bootstrap", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if why, err := eventually(t, d, true); err != nil || !strings.Contains(why, "kube-system/gvisor-bootstrap") {
		t.Fatalf("why %q err %v", why, err)
	}
}

func TestForegroundDeletionIsRemoval(t *testing.T) {
	obj := ds()
	now := metav1.Now()
	obj.DeletionTimestamp = &now
	obj.Finalizers = []string{"foregroundDeletion"}
	d, _ := watching(t, obj)
	if why, _ := eventually(t, d, true); !strings.Contains(why, "being deleted") {
		t.Fatalf("why %q", why)
	}
}

// `kubectl delete -f` of the rendered file deletes the ServiceAccount first: the
// watch saw the DaemonSet go, then reads are refused.
func TestDeletionSeenByTheWatchOutlivesTheToken(t *testing.T) {
	d, c := watching(t, ds())
	if err := c.AppsV1().DaemonSets("kube-system").Delete(context.Background(), "gvisor-bootstrap", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	watchSays(t, d, true)
	refuseReads(c)
	gone, why, err := d.Removed(context.Background())
	if !gone || err != nil || !strings.Contains(why, "seen by the watch") {
		t.Fatalf("Removed = %v %q %v", gone, why, err)
	}
}

// Refused reads and no deletion seen: it cannot tell, and says so.
func TestCannotTellIsAnError(t *testing.T) {
	d, c := watching(t, ds())
	refuseReads(c)
	gone, _, err := d.Removed(context.Background())
	if gone || err == nil || !strings.Contains(err.Error(), "kube-system/gvisor-bootstrap") {
		t.Fatalf("Removed = %v %v, want an error naming the DaemonSet", gone, err)
	}
}

// delete --cascade=orphan then apply (how a selector is changed): the new
// DaemonSet adopts the pod; that is no removal.
func TestRecreatedIsNotRemoval(t *testing.T) {
	d, c := watching(t, ds())
	api := c.AppsV1().DaemonSets("kube-system")
	if err := api.Delete(context.Background(), "gvisor-bootstrap", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	watchSays(t, d, true)
	if _, err := api.Create(context.Background(), ds(), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, d, false)
	watchSays(t, d, false) // and the watch's view agrees
	refuseReads(c)
	if gone, why, _ := d.Removed(context.Background()); gone {
		t.Fatalf("the DaemonSet came back, yet Removed says %q", why)
	}
}

// watchSays waits until the watch has recorded a removal (or, !removed, none).
func watchSays(t *testing.T, d *DaemonSet, removed bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d.mu.Lock()
		why := d.removed
		d.mu.Unlock()
		if (why != "") == removed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the watch says %q, want removed = %v", why, removed)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestParse(t *testing.T) {
	if ns, n, err := Parse("kube-system/gvisor-bootstrap"); err != nil || ns != "kube-system" || n != "gvisor-bootstrap" {
		t.Errorf("Parse = %q %q %v", ns, n, err)
	}
	for _, bad := range []string{"", "gvisor-bootstrap", "/x", "x/", "a/b/c"} {
		if _, _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}
