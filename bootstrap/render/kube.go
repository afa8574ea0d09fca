package render

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/config"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/nodepaths"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/units"
)

type runtimeClassData struct {
	Name, Handler string
	CPU, Memory   string
	Pool          pool
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
	return execute("runtimeclass.yaml.tmpl", runtimeClassData{
		Name: c.RuntimeClassName, Handler: c.Handler,
		CPU: c.OverheadCPU, Memory: c.OverheadMemory, Pool: p,
	})
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
}

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
		return nil, fmt.Errorf("render daemonset: delivery.image is empty: give the image built from manifests/Containerfile (--image REGISTRY/gvisor-bootstrap:TAG)")
	}
	p, err := poolOf(cfg.Cluster)
	if err != nil {
		return nil, err
	}
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
	})
}
