package render

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/config"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/nodepaths"
)

// awkward is a config whose values need quoting in YAML: a label value "true", a
// prefixed key, an Exists toleration without a value, a number-like value.
func awkward() config.Config {
	cfg := config.Default()
	cfg.Cluster.RuntimeClassName = "gvisor-sandbox"
	cfg.Cluster.Handler = "runsc-kvm"
	cfg.Cluster.NodeSelector = map[string]string{"sandbox.example.com/runtime": "true", "pool": "0123", "zone": "a:b"}
	cfg.Cluster.Tolerations = []config.Toleration{
		{Key: "sandbox.example.com/runtime", Operator: "Exists", Effect: "NoSchedule"},
		{Key: "yes", Operator: "Equal", Value: "on", Effect: "NoExecute"},
	}
	cfg.Cluster.OverheadCPU = "250m"
	cfg.Cluster.OverheadMemory = "1e3"
	cfg.Delivery.Image = "registry.example.com:5000/gvisor-bootstrap@sha256:" + testSHA
	cfg.Delivery.Namespace = "gvisor-system"
	cfg.Release.BinDir = "/opt/gvisor/bin"
	return cfg
}

func wantTolerations(ts []config.Toleration) []corev1.Toleration {
	var out []corev1.Toleration
	for _, t := range ts {
		out = append(out, corev1.Toleration{Key: t.Key, Operator: corev1.TolerationOperator(t.Operator), Value: t.Value, Effect: corev1.TaintEffect(t.Effect)})
	}
	return out
}

func TestRuntimeClassDecodesStrictly(t *testing.T) {
	for name, cfg := range map[string]config.Config{"default": config.Default(), "awkward": awkward()} {
		t.Run(name, func(t *testing.T) {
			out, err := RuntimeClass(cfg)
			if err != nil {
				t.Fatal(err)
			}
			var rc nodev1.RuntimeClass
			if err := yaml.UnmarshalStrict(out, &rc); err != nil {
				t.Fatalf("strict decode: %v\n%s", err, out)
			}
			c := cfg.Cluster
			if rc.APIVersion != "node.k8s.io/v1" || rc.Kind != "RuntimeClass" || rc.Name != c.RuntimeClassName || rc.Handler != c.Handler {
				t.Fatalf("got %s %s name=%q handler=%q", rc.APIVersion, rc.Kind, rc.Name, rc.Handler)
			}
			if rc.Overhead == nil {
				t.Fatal("no overhead")
			}
			cpu, mem := rc.Overhead.PodFixed[corev1.ResourceCPU], rc.Overhead.PodFixed[corev1.ResourceMemory]
			if !cpu.Equal(resource.MustParse(c.OverheadCPU)) || !mem.Equal(resource.MustParse(c.OverheadMemory)) {
				t.Errorf("overhead cpu=%s memory=%s, want %s %s", cpu.String(), mem.String(), c.OverheadCPU, c.OverheadMemory)
			}
			if rc.Scheduling == nil {
				t.Fatal("no scheduling")
			}
			if d := cmp.Diff(c.NodeSelector, rc.Scheduling.NodeSelector); d != "" {
				t.Errorf("nodeSelector (-want +got):\n%s", d)
			}
			if d := cmp.Diff(wantTolerations(c.Tolerations), rc.Scheduling.Tolerations); d != "" {
				t.Errorf("tolerations (-want +got):\n%s", d)
			}
		})
	}
}

func TestRuntimeClassWithoutOptionalParts(t *testing.T) {
	cfg := config.Default()
	cfg.Cluster.NodeSelector, cfg.Cluster.Tolerations = nil, nil
	cfg.Cluster.OverheadCPU, cfg.Cluster.OverheadMemory = "", ""
	out, err := RuntimeClass(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var rc nodev1.RuntimeClass
	if err := yaml.UnmarshalStrict(out, &rc); err != nil {
		t.Fatalf("strict decode: %v\n%s", err, out)
	}
	if rc.Overhead != nil || rc.Scheduling != nil {
		t.Fatalf("empty overhead/scheduling rendered: %s", out)
	}
}

func TestKubeBadInput(t *testing.T) {
	mod := func(f func(*config.Config)) config.Config { c := config.Default(); f(&c); return c }
	for name, cfg := range map[string]config.Config{
		"upper-case name":  mod(func(c *config.Config) { c.Cluster.RuntimeClassName = "gVisor" }),
		"empty handler":    mod(func(c *config.Config) { c.Cluster.Handler = "" }),
		"bad cpu":          mod(func(c *config.Config) { c.Cluster.OverheadCPU = "lots" }),
		"bad operator":     mod(func(c *config.Config) { c.Cluster.Tolerations[0].Operator = "Is" }),
		"exists and value": mod(func(c *config.Config) { c.Cluster.Tolerations[0].Operator = "Exists" }),
		"bad effect":       mod(func(c *config.Config) { c.Cluster.Tolerations[0].Effect = "Never" }),
	} {
		if _, err := RuntimeClass(cfg); err == nil {
			t.Errorf("%s: RuntimeClass rendered without error", name)
		}
	}
	if _, err := DaemonSet(mod(func(c *config.Config) { c.Delivery.Image = "" })); err == nil {
		t.Error("DaemonSet rendered without an image")
	}
	if _, err := DaemonSet(mod(func(c *config.Config) { c.Delivery.Namespace = "Kube_System" })); err == nil {
		t.Error("DaemonSet rendered with a bad namespace")
	}
}

// splitDocs splits a multi-document YAML stream.
func splitDocs(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range bytes.Split(data, []byte("\n---\n")) {
		if len(bytes.TrimSpace(d)) > 0 {
			docs = append(docs, d)
		}
	}
	return docs
}

func decodeDaemonSet(t *testing.T, out []byte) (corev1.ConfigMap, appsv1.DaemonSet) {
	t.Helper()
	docs := splitDocs(out)
	if len(docs) != 2 {
		t.Fatalf("want ConfigMap and DaemonSet, got %d documents", len(docs))
	}
	var cm corev1.ConfigMap
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict(docs[0], &cm); err != nil || cm.Kind != "ConfigMap" {
		t.Fatalf("ConfigMap strict decode: %v (%s)\n%s", err, cm.Kind, docs[0])
	}
	if err := yaml.UnmarshalStrict(docs[1], &ds); err != nil || ds.Kind != "DaemonSet" || ds.APIVersion != "apps/v1" {
		t.Fatalf("DaemonSet strict decode: %v (%s %s)\n%s", err, ds.APIVersion, ds.Kind, docs[1])
	}
	return cm, ds
}

func TestDaemonSetDecodesStrictly(t *testing.T) {
	for name, cfg := range map[string]config.Config{"default": config.Default(), "awkward": awkward()} {
		t.Run(name, func(t *testing.T) {
			out, err := DaemonSet(cfg)
			if err != nil {
				t.Fatal(err)
			}
			cm, ds := decodeDaemonSet(t, out)

			// The ConfigMap carries exactly the config, strictly decodable.
			// Decoded into a zero Config: decoding onto Default() would merge the
			// default node_selector into the rendered one.
			var got config.Config
			if err := config.Decode([]byte(cm.Data["config.toml"]), &got); err != nil {
				t.Fatalf("ConfigMap config: %v", err)
			}
			if d := cmp.Diff(cfg, got, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("ConfigMap config (-want +got):\n%s", d)
			}
			if cm.Namespace != cfg.Delivery.Namespace || ds.Namespace != cfg.Delivery.Namespace {
				t.Errorf("namespaces %q %q, want %q", cm.Namespace, ds.Namespace, cfg.Delivery.Namespace)
			}

			spec := ds.Spec.Template.Spec
			if ds.Spec.Selector == nil || ds.Spec.Selector.MatchLabels["app.kubernetes.io/name"] != ds.Spec.Template.Labels["app.kubernetes.io/name"] {
				t.Error("selector does not match the pod template's labels")
			}
			if spec.HostPID || spec.HostNetwork || spec.HostIPC {
				t.Error("pod shares a host namespace")
			}
			if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
				t.Error("service account token is mounted; the pod never talks to the API")
			}
			if d := cmp.Diff(cfg.Cluster.NodeSelector, spec.NodeSelector); d != "" {
				t.Errorf("nodeSelector (-want +got):\n%s", d)
			}
			if d := cmp.Diff(wantTolerations(cfg.Cluster.Tolerations), spec.Tolerations); d != "" {
				t.Errorf("tolerations (-want +got):\n%s", d)
			}

			allowed := map[string]bool{}
			for _, e := range nodepaths.Table(cfg.NodePaths()) {
				allowed[e.Mount] = true
			}
			hostPaths := map[string]string{}
			for _, v := range spec.Volumes {
				if v.HostPath != nil {
					if !allowed[v.HostPath.Path] {
						t.Errorf("mounts host path %s", v.HostPath.Path)
					}
					hostPaths[v.Name] = v.HostPath.Path
				}
			}
			containers := append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
			for _, c := range containers {
				if c.Image != cfg.Delivery.Image {
					t.Errorf("%s: image %q", c.Name, c.Image)
				}
				sc := c.SecurityContext
				if sc == nil || sc.Privileged == nil || *sc.Privileged || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
					sc.Capabilities == nil || len(sc.Capabilities.Add) != 0 || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" ||
					sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
					t.Errorf("%s: securityContext is not least privilege: %+v", c.Name, sc)
				}
				if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
					t.Errorf("%s: no resources", c.Name)
				}
				for _, m := range c.VolumeMounts {
					if hp, ok := hostPaths[m.Name]; ok && m.MountPath != "/host"+hp {
						t.Errorf("%s: host %s mounted at %s, want /host%s", c.Name, hp, m.MountPath, hp)
					}
				}
			}
			if len(spec.Containers) != 1 {
				t.Fatalf("%d containers", len(spec.Containers))
			}
			main := spec.Containers[0]
			if got := strings.Join(main.Command, " "); got != "/usr/local/bin/gvisor-bootstrap run --root /host --watch" {
				t.Errorf("main command %q", got)
			}
			if p := main.ReadinessProbe; p == nil || p.Exec == nil || strings.Join(p.Exec.Command, " ") != "/usr/local/bin/gvisor-bootstrap verify --root /host" {
				t.Errorf("readiness probe %+v", p)
			}
			var binMounted bool
			for _, m := range main.VolumeMounts {
				binMounted = binMounted || m.MountPath == "/host"+cfg.Release.BinDir
			}
			if !binMounted {
				t.Errorf("release.bin_dir %s is not mounted", cfg.Release.BinDir)
			}
		})
	}
}
