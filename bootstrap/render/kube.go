package render

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/advertise"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/config"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/nodepaths"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/units"
)

type runtimeClassData struct {
	Name, Handler    string
	CPU, Memory      string
	Pool             pool
	Mode, ReadyLabel string
}

// RuntimeClass renders the node.k8s.io/v1 RuntimeClass that sends pods to the runsc
// handler on the gVisor pool, with the sandbox's fixed per-pod overhead.
func RuntimeClass(cfg config.Config) ([]byte, error) {
	c := cfg.Cluster
	if err := checkName("cluster.runtime_class_name", c.RuntimeClassName); err != nil {
		return nil, err
	}
	if err := checkName("cluster.handler", c.Handler); err != nil {
		return nil, err
	}
	if err := checkQuantity("cluster.overhead_cpu", c.OverheadCPU); err != nil {
		return nil, err
	}
	if err := checkQuantity("cluster.overhead_memory", c.OverheadMemory); err != nil {
		return nil, err
	}
	p, err := poolOf(c)
	if err != nil {
		return nil, err
	}
	d := runtimeClassData{Name: c.RuntimeClassName, Handler: c.Handler, CPU: c.OverheadCPU, Memory: c.OverheadMemory, Pool: p, Mode: cfg.Delivery.Mode}
	switch cfg.Delivery.Mode {
	case config.DeliveryDaemonSet:
		// Only nodes the DaemonSet verified carry the label: a gVisor pod waits
		// Pending for one instead of failing on a node without runsc.
		l, err := advertise.ParseLabel(c.ReadyLabel)
		if err != nil {
			return nil, fmt.Errorf("cluster.ready_label: %w", err)
		}
		d.Pool.NodeSelector = append(d.Pool.NodeSelector, kv{l.Key, l.Value})
		sort.Slice(d.Pool.NodeSelector, func(i, j int) bool { return d.Pool.NodeSelector[i].Key < d.Pool.NodeSelector[j].Key })
		d.ReadyLabel = l.String()
	case config.DeliveryImage, config.DeliveryCloudInit:
	default:
		return nil, fmt.Errorf("delivery.mode %q: say how the nodes get gvisor-bootstrap: --delivery daemonset, image or cloud-init", cfg.Delivery.Mode)
	}
	return execute("runtimeclass.yaml.tmpl", d)
}

// DaemonSetName names the DaemonSet, its ConfigMap and its pods' app label.
const DaemonSetName = "gvisor-bootstrap"

// ClusterConfigDir is where the DaemonSet mounts its ConfigMap inside the container.
const ClusterConfigDir = "/etc/gvisor-bootstrap-cluster"

type daemonSetData struct {
	Name, Namespace, Image string
	Config                 string
	ConfigHash             string
	ConfigPath             string
	ClusterConfig          string
	ClusterConfigDir       string
	Binary                 string
	HostPrefix             string
	Layout                 nodepaths.Layout
	Pool                   pool
	Advertise              advertising
	ServiceAccount         string
	TokenDir               string
	// UninstallOnDelete: the pod watches its DaemonSet and, once it is deleted,
	// has the host uninstall the node.
	UninstallOnDelete bool
}

// advertising is what the DaemonSet may change on its Node.
type advertising struct {
	LabelKey, Label string
	TaintKey, Taint string
}

// TokenDir is where client-go's in-cluster config reads the service account token,
// CA and namespace; only the reconcile container mounts it.
const TokenDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// HostPrefix is where the DaemonSet's containers see the host's "/" (--root).
const HostPrefix = "/host"

// Layout is the DaemonSet's host volumes and each container's mounts, from the table
// of node paths for this config.
func Layout(cfg config.Config) nodepaths.Layout {
	return nodepaths.PodLayout(nodepaths.Table(cfg.NodePaths()))
}

// hostMountsYAML renders a role's mounts as flow mappings, one a line.
func hostMountsYAML(n int, l nodepaths.Layout, role string) string {
	pad := strings.Repeat(" ", n)
	var b strings.Builder
	for _, m := range l.Mounts[nodepaths.Role(role)] {
		fmt.Fprintf(&b, "\n%s- {name: %s, mountPath: %s", pad, yamlScalar(m.Volume), yamlScalar(HostPrefix+m.Host))
		if m.ReadOnly {
			b.WriteString(", readOnly: true")
		}
		b.WriteString("}")
	}
	return b.String()
}

// hostVolumesYAML renders the hostPath volumes.
func hostVolumesYAML(n int, l nodepaths.Layout) string {
	pad := strings.Repeat(" ", n)
	var b strings.Builder
	for _, v := range l.Volumes {
		fmt.Fprintf(&b, "\n%s# %s\n%s- name: %s\n%s  hostPath: {path: %s, type: %s}", pad, strings.Join(v.What, "; "), pad, yamlScalar(v.Name), pad, yamlScalar(v.Host), v.Kind)
	}
	return b.String()
}

// DaemonSet renders, for managed pools (AKS) whose images cannot be customised, a
// ConfigMap holding the tool's config and a DaemonSet that runs the same binary against
// the host at /host: init containers copy the config to the host and install the
// release and the units (so the boot unit and the kubelet gate protect later boots and
// reimages), then `run --root /host --watch` reconciles and keeps repairing.
func DaemonSet(cfg config.Config) ([]byte, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := cfg.Delivery
	if err := checkName("delivery.namespace", d.Namespace); err != nil {
		return nil, err
	}
	if d.Image == "" {
		return nil, fmt.Errorf("render daemonset: delivery.image is empty: give the image `make image` builds (--image REGISTRY/gvisor-bootstrap:TAG)")
	}
	p, err := poolOf(cfg.Cluster)
	if err != nil {
		return nil, err
	}
	label, err := advertise.ParseLabel(cfg.Cluster.ReadyLabel)
	if err != nil {
		return nil, fmt.Errorf("cluster.ready_label: %w", err)
	}
	taint, err := advertise.ParseTaint(cfg.Cluster.StartupTaint)
	if err != nil {
		return nil, fmt.Errorf("cluster.startup_taint: %w", err)
	}
	ad := advertising{LabelKey: label.Key, Label: label.String()}
	if taint != nil {
		ad.TaintKey, ad.Taint = taint.Key, taint.String()
		// The pod must run on a node that still has it: it is what removes it.
		p.Tolerations = append(append([]config.Toleration{}, p.Tolerations...), config.Toleration{Key: taint.Key, Operator: "Exists", Effect: string(taint.Effect)})
	}
	// The config the pod ships says how it was delivered (the host's boot unit
	// and gate read the same file).
	cfg.Delivery.Mode = config.DeliveryDaemonSet
	toml, err := config.Encode(cfg)
	if err != nil {
		return nil, fmt.Errorf("render daemonset: encode the tool's config: %w", err)
	}
	sum := sha256.Sum256(toml)
	return execute("daemonset.yaml.tmpl", daemonSetData{
		Name: DaemonSetName, Namespace: d.Namespace, Image: d.Image,
		Config: string(toml), ConfigHash: hex.EncodeToString(sum[:8]),
		ConfigPath: config.DefaultPath, ClusterConfig: ClusterConfigDir + "/config.toml", ClusterConfigDir: ClusterConfigDir,
		Binary: units.BinaryPath, HostPrefix: HostPrefix, Layout: Layout(cfg), Pool: p,
		Advertise: ad, ServiceAccount: DaemonSetName, TokenDir: TokenDir,
		UninstallOnDelete: d.OnDelete == config.OnDeleteUninstall,
	})
}
