package podsim

import (
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// apiServer is the part of the Kubernetes API the DaemonSet's pod uses (get and
// merge-patch its own Node), on loopback TLS, checking the bearer token. It is a
// stand-in: RBAC and the admission policy are the real cluster's (test/e2e).
type apiServer struct {
	srv   *httptest.Server
	token string
	mu    sync.Mutex
	node  corev1.Node
	calls []string
	// served, when set, is the kubelet's view: the Node's status.runtimeHandlers
	// list the handlers the node's real containerd serves through the CRI now.
	served func() []string
	// ds is the pod's DaemonSet (nil once deleted); watchers get its events.
	ds       *appsv1.DaemonSet
	watchers []chan metav1.WatchEvent
	refused  []string // requests whose token was refused
}

func newAPIServer(t *testing.T, name string, labels map[string]string) *apiServer {
	a := &apiServer{token: "podsim-token", node: corev1.Node{
		TypeMeta:   metav1.TypeMeta{Kind: "Node", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, ResourceVersion: "1"},
	}}
	a.srv = httptest.NewTLSServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	return a
}

// withDaemonSet serves the DaemonSet ns/name: get, list and watch by name.
func (a *apiServer) withDaemonSet(ns, name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ds = &appsv1.DaemonSet{TypeMeta: metav1.TypeMeta{Kind: "DaemonSet", APIVersion: "apps/v1"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: "1", UID: "podsim-ds"}}
}

// deleteDaemonSet deletes it, as `kubectl delete` does, and tells the watchers.
func (a *apiServer) deleteDaemonSet() {
	a.mu.Lock()
	defer a.mu.Unlock()
	raw, _ := json.Marshal(a.ds)
	a.ds = nil
	for _, w := range a.watchers {
		w <- metav1.WatchEvent{Type: "DELETED", Object: runtime.RawExtension{Raw: raw}}
	}
}

// watchingDaemonSet reports whether a watch on the DaemonSet is open.
func (a *apiServer) watchingDaemonSet() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.watchers) > 0
}

// refusedDaemonSetReads reports whether a read of the DaemonSets was refused (a
// revoked token).
func (a *apiServer) refusedDaemonSetReads() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.refused {
		if strings.Contains(c, "/daemonsets") {
			return true
		}
	}
	return false
}

// revokeToken refuses the pod's token from now on, as the apiserver does once its
// ServiceAccount is deleted (open watches stay open).
func (a *apiServer) revokeToken() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.token = "revoked"
}

// serveDaemonSets answers the DaemonSet paths; it reports whether path was one.
func (a *apiServer) serveDaemonSets(w http.ResponseWriter, r *http.Request) bool {
	rest, ok := strings.CutPrefix(r.URL.Path, "/apis/apps/v1/namespaces/")
	if !ok {
		return false
	}
	ns, res, _ := strings.Cut(rest, "/")
	a.mu.Lock()
	a.calls = append(a.calls, r.Method+" "+r.URL.Path)
	ds := a.ds
	if ds == nil || ns != ds.Namespace {
		a.mu.Unlock()
		http.Error(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`, http.StatusNotFound)
		return true
	}
	w.Header().Set("Content-Type", "application/json")
	switch {
	case res == "daemonsets/"+ds.Name:
		a.mu.Unlock()
		_ = json.NewEncoder(w).Encode(ds)
	case res == "daemonsets" && r.URL.Query().Get("watch") != "":
		ch := make(chan metav1.WatchEvent, 4)
		a.watchers = append(a.watchers, ch)
		a.mu.Unlock()
		w.(http.Flusher).Flush()
		for {
			select {
			case <-r.Context().Done():
				return true
			case ev := <-ch:
				_ = json.NewEncoder(w).Encode(ev)
				w.(http.Flusher).Flush()
			}
		}
	case res == "daemonsets":
		a.mu.Unlock()
		_ = json.NewEncoder(w).Encode(appsv1.DaemonSetList{TypeMeta: metav1.TypeMeta{Kind: "DaemonSetList", APIVersion: "apps/v1"},
			ListMeta: metav1.ListMeta{ResourceVersion: "1"}, Items: []appsv1.DaemonSet{*ds}})
	default:
		a.mu.Unlock()
		http.Error(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`, http.StatusNotFound)
	}
	return true
}

func (a *apiServer) caPEM() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.srv.Certificate().Raw}))
}

func (a *apiServer) env() []string {
	hostport := strings.TrimPrefix(a.srv.URL, "https://")
	host, port, _ := strings.Cut(hostport, ":")
	return []string{"KUBERNETES_SERVICE_HOST=" + host, "KUBERNETES_SERVICE_PORT=" + port}
}

func (a *apiServer) labels() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]string{}
	for k, v := range a.node.Labels {
		out[k] = v
	}
	return out
}

func (a *apiServer) setLabel(k, v string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.node.Labels[k] = v
}

func (a *apiServer) serve(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	token := a.token
	a.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+token {
		a.mu.Lock()
		a.refused = append(a.refused, r.Method+" "+r.URL.Path)
		a.mu.Unlock()
		http.Error(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Unauthorized","code":401}`, http.StatusUnauthorized)
		return
	}
	if a.serveDaemonSets(w, r) {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, r.Method+" "+r.URL.Path)
	if r.URL.Path != "/api/v1/nodes/"+a.node.Name {
		http.Error(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`, http.StatusNotFound)
		return
	}
	switch r.Method {
	case http.MethodGet:
	case http.MethodPatch:
		if r.Header.Get("Content-Type") != "application/merge-patch+json" {
			http.Error(w, "only merge patches are served here", http.StatusUnsupportedMediaType)
			return
		}
		body, _ := io.ReadAll(r.Body)
		var p struct {
			Metadata struct {
				Labels map[string]*string `json:"labels"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(body, &p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for k, v := range p.Metadata.Labels {
			if v == nil {
				delete(a.node.Labels, k)
			} else {
				a.node.Labels[k] = *v
			}
		}
	default:
		http.Error(w, "method not served", http.StatusMethodNotAllowed)
		return
	}
	if a.served != nil {
		a.node.Status.RuntimeHandlers = nil
		for _, h := range a.served() {
			a.node.Status.RuntimeHandlers = append(a.node.Status.RuntimeHandlers, corev1.NodeRuntimeHandler{Name: h})
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(a.node)
}
