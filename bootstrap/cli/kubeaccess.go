package cli

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/nodepaths"
)

// errNoCluster: nothing on this node says how to reach a Kubernetes API.
var errNoCluster = errors.New("no Kubernetes credentials")

// kubeAccess is how a command reaches the API, and which Node is this one.
type kubeAccess struct {
	client kubernetes.Interface
	node   string
	source string // where the credentials came from, for messages
}

// connect finds the API: --kubeconfig, else the pod's service account, else (when
// kubelet is allowed) the kubelet's own kubeconfig on the node, whose client
// certificate names the Node (CN system:node:NAME).
func (k *kubeFlags) connect(g *Globals, kubelet bool) (*kubeAccess, error) {
	var (
		cfg    *rest.Config
		node   = k.nodeName
		source string
		err    error
	)
	switch {
	case k.kubeconfig != "":
		source = g.Root.Path(k.kubeconfig)
		var certNode string
		cfg, certNode, err = loadKubeconfig(g.Root, k.kubeconfig)
		if node == "" {
			node = certNode
		}
	case os.Getenv("KUBERNETES_SERVICE_HOST") != "":
		source = "the pod's service account"
		cfg, err = rest.InClusterConfig()
	default:
		if !kubelet {
			return nil, fmt.Errorf("%w: not in a pod; pass --kubeconfig", errNoCluster)
		}
		for _, p := range nodepaths.KubeletKubeconfigs {
			if !g.Root.Exists(p) {
				continue
			}
			source = g.Root.Path(p)
			var certNode string
			if cfg, certNode, err = loadKubeconfig(g.Root, p); err == nil && node == "" {
				node = certNode
			}
			break
		}
		if source == "" {
			return nil, fmt.Errorf("%w: not in a pod, no --kubeconfig, no kubelet kubeconfig (%s)", errNoCluster, strings.Join(nodepaths.KubeletKubeconfigs, ", "))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("reach the Kubernetes API with %s: %w", source, err)
	}
	if node == "" {
		return nil, usageErrorf("no node name: pass --node-name or set NODE_NAME (the DaemonSet sets it from spec.nodeName)")
	}
	cfg.Timeout = 15 * time.Second
	cfg.UserAgent = "gvisor-bootstrap"
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client from %s: %w", source, err)
	}
	return &kubeAccess{client: c, node: node, source: source}, nil
}

// loadKubeconfig reads a kubeconfig at a node path. The files it names are node
// paths too (relative ones relative to the kubeconfig's directory), resolved under
// the root. It returns the Node its client certificate names, if it names one.
func loadKubeconfig(root fsroot.Root, nodePath string) (*rest.Config, string, error) {
	data, err := root.ReadFile(nodePath)
	if err != nil {
		return nil, "", err
	}
	raw, err := clientcmd.Load(data)
	if err != nil {
		return nil, "", fmt.Errorf("parse %s: %w", root.Path(nodePath), err)
	}
	var rerr error
	under := func(p string) string {
		if p == "" {
			return ""
		}
		if !path.IsAbs(p) {
			p = path.Join(path.Dir(path.Join("/", nodePath)), p)
		}
		host, err := root.Resolve(p)
		if err != nil && rerr == nil {
			rerr = fmt.Errorf("%s names %s: %w", root.Path(nodePath), p, err)
		}
		return host
	}
	for _, c := range raw.Clusters {
		c.CertificateAuthority = under(c.CertificateAuthority)
	}
	for _, a := range raw.AuthInfos {
		a.ClientCertificate, a.ClientKey, a.TokenFile = under(a.ClientCertificate), under(a.ClientKey), under(a.TokenFile)
	}
	if rerr != nil {
		return nil, "", rerr
	}
	cfg, err := clientcmd.NewDefaultClientConfig(*raw, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", root.Path(nodePath), err)
	}
	return cfg, certNodeName(raw), nil
}

// certNodeName is NAME in the current user's client certificate CN system:node:NAME.
func certNodeName(raw *clientcmdapi.Config) string {
	ctx := raw.Contexts[raw.CurrentContext]
	if ctx == nil || raw.AuthInfos[ctx.AuthInfo] == nil {
		return ""
	}
	a := raw.AuthInfos[ctx.AuthInfo]
	data := a.ClientCertificateData
	if len(data) == 0 && a.ClientCertificate != "" {
		data, _ = os.ReadFile(a.ClientCertificate)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return ""
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return ""
	}
	name, _ := strings.CutPrefix(cert.Subject.CommonName, "system:node:")
	if name == cert.Subject.CommonName {
		return ""
	}
	return name
}
