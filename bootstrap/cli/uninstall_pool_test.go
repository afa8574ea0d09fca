package cli

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"io/fs"
	"math/big"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
)

// nodeAPI serves one Node to the kubelet's client certificate only (as the Node
// authorizer lets a kubelet touch only its own Node): GET and merge PATCH of labels.
type nodeAPI struct {
	srv    *httptest.Server
	mu     sync.Mutex
	name   string
	labels map[string]string
	fail   bool
}

func (a *nodeAPI) serve(w http.ResponseWriter, r *http.Request) {
	if len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != "system:node:"+a.name ||
		r.URL.Path != "/api/v1/nodes/"+a.name {
		http.Error(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403}`, http.StatusForbidden)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail {
		http.Error(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"etcd down","code":500}`, http.StatusInternalServerError)
		return
	}
	if r.Method == http.MethodPatch {
		var p struct {
			Metadata struct {
				Labels map[string]*string `json:"labels"`
			} `json:"metadata"`
		}
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("Content-Type") != "application/merge-patch+json" || json.Unmarshal(body, &p) != nil {
			http.Error(w, "bad patch", http.StatusBadRequest)
			return
		}
		for k, v := range p.Metadata.Labels {
			if v != nil {
				a.labels[k] = *v
			} else {
				delete(a.labels, k)
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"kind": "Node", "apiVersion": "v1", "metadata": map[string]any{"name": a.name, "labels": a.labels}})
}

func (a *nodeAPI) setFail(v bool) { a.mu.Lock(); a.fail = v; a.mu.Unlock() }

func (a *nodeAPI) nodeLabels() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]string{}
	for k, v := range a.labels {
		out[k] = v
	}
	return out
}

// kubeletCredentials puts an AKS-shaped kubelet kubeconfig under root: the
// certificate files are node paths, as on a node.
func kubeletCredentials(t *testing.T, r fsroot.Root, node string) *nodeAPI {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "e2e-ca"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &key.PublicKey, key)
	ca, _ := x509.ParseCertificate(caDER)
	ckey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cDER, _ := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}, ca, &ckey.PublicKey, key)
	ckeyDER, _ := x509.MarshalECPrivateKey(ckey)

	a := &nodeAPI{name: node, labels: map[string]string{"gvisor": "enabled", "gvisor-bootstrap.dev/runsc": "ready", "agentpool": "gvisor"}}
	a.srv = httptest.NewUnstartedServer(http.HandlerFunc(a.serve))
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	a.srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	a.srv.StartTLS()
	t.Cleanup(a.srv.Close)

	write := func(p string, data []byte, mode fs.FileMode) {
		if err := r.WriteFile(p, data, fsroot.WriteOptions{Mode: mode}); err != nil {
			t.Fatal(err)
		}
	}
	write("/var/lib/kubelet/pki/kubelet.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cDER}), 0o644)
	write("/var/lib/kubelet/pki/kubelet.key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ckeyDER}), 0o600)
	write("/etc/kubernetes/certs/apiserver-ca.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.srv.Certificate().Raw}), 0o644)
	write("/var/lib/kubelet/kubeconfig", []byte(`apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "`+a.srv.URL+`", certificate-authority: /etc/kubernetes/certs/apiserver-ca.crt}
users:
- name: kubelet
  user: {client-certificate: pki/kubelet.crt, client-key: /var/lib/kubelet/pki/kubelet.key}
contexts:
- name: c
  context: {cluster: c, user: kubelet}
current-context: c
`), 0o600)
	return a
}

// A node leaves the gVisor pool before runsc goes away: with the kubelet's own
// credentials, the pool label the RuntimeClass selects and the ready label are
// removed, every other label stays; when the API cannot be reached nothing is
// removed from the node, unless --keep-labels.
func TestUninstallTakesTheNodeOutOfThePoolFirst(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	root, rel := t.TempDir(), serveRelease(t)
	r := fsroot.New(root)
	if err := r.WriteFile("/etc/containerd/config.toml", []byte(hostConfig), fsroot.WriteOptions{Mode: 0o640}); err != nil {
		t.Fatal(err)
	}
	api := kubeletCredentials(t, r, "aks-gvisor-0")
	if code, _, errs := runMain(t, append([]string{"run"}, nodeArgs(root, rel)...)...); code != ExitRepaired {
		t.Fatalf("run: %d %s", code, errs)
	}

	api.setFail(true)
	code, out, errs := runMain(t, append([]string{"uninstall"}, nodeArgs(root, rel)...)...)
	t.Logf("API down: exit %d\n%s%s", code, out, errs)
	if code == ExitOK || !strings.Contains(errs, "aks-gvisor-0") || !strings.Contains(errs, "--keep-labels") || !strings.Contains(errs, "nothing was removed") {
		t.Fatalf("uninstall with the API down: exit %d, stderr %s", code, errs)
	}
	if !r.Exists("/etc/containerd/runsc.toml") || !r.Exists("/usr/local/bin/runsc") {
		t.Fatal("uninstall removed runsc although the node could not leave the pool")
	}

	api.setFail(false)
	code, out, errs = runMain(t, append([]string{"uninstall", "--json"}, nodeArgs(root, rel)...)...)
	if code != ExitOK {
		t.Fatalf("uninstall: %d %s %s", code, out, errs)
	}
	var res uninstallResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if res.Node != "aks-gvisor-0" || !reflect.DeepEqual(res.LabelsRemoved, []string{"gvisor-bootstrap.dev/runsc", "gvisor"}) {
		t.Errorf("result: node %q, labels removed %v", res.Node, res.LabelsRemoved)
	}
	if want := map[string]string{"agentpool": "gvisor"}; !reflect.DeepEqual(api.nodeLabels(), want) {
		t.Errorf("the Node's labels are now %v, want %v", api.nodeLabels(), want)
	}
	if r.Exists("/etc/containerd/runsc.toml") {
		t.Error("runsc.toml left behind")
	}
}
