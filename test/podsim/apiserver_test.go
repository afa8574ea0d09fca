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

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	if r.Header.Get("Authorization") != "Bearer "+a.token {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
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
