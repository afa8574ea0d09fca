package render

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	rbacv1 "k8s.io/api/rbac/v1"
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
	cm, ds, _ := decodeAll(t, out)
	return cm, ds
}

// rbacObjects are the least-privilege objects rendered with the DaemonSet.
type rbacObjects struct {
	sa      corev1.ServiceAccount
	role    rbacv1.ClusterRole
	binding rbacv1.ClusterRoleBinding
	vap     admissionv1.ValidatingAdmissionPolicy
	vapb    admissionv1.ValidatingAdmissionPolicyBinding
	// dsRole and dsBinding: reading its own DaemonSet (delivery.on_delete = "uninstall")
	dsRole    rbacv1.Role
	dsBinding rbacv1.RoleBinding
}

func decodeAll(t *testing.T, out []byte) (corev1.ConfigMap, appsv1.DaemonSet, rbacObjects) {
	t.Helper()
	var cm corev1.ConfigMap
	var ds appsv1.DaemonSet
	var r rbacObjects
	kinds := map[string]any{"ConfigMap": &cm, "DaemonSet": &ds, "ServiceAccount": &r.sa, "ClusterRole": &r.role,
		"ClusterRoleBinding": &r.binding, "ValidatingAdmissionPolicy": &r.vap, "ValidatingAdmissionPolicyBinding": &r.vapb,
		"Role": &r.dsRole, "RoleBinding": &r.dsBinding}
	seen := map[string]bool{}
	for _, doc := range splitDocs(out) {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatalf("%v\n%s", err, doc)
		}
		into, ok := kinds[meta.Kind]
		if !ok || seen[meta.Kind] {
			t.Fatalf("unexpected document %q", meta.Kind)
		}
		seen[meta.Kind] = true
		if err := yaml.UnmarshalStrict(doc, into); err != nil {
			t.Fatalf("%s strict decode: %v\n%s", meta.Kind, err, doc)
		}
	}
	want := len(kinds)
	if !seen["Role"] && !seen["RoleBinding"] {
		want -= 2 // delivery.on_delete = "keep"
	}
	if len(seen) != want {
		t.Fatalf("documents %v, want %d kinds", seen, want)
	}
	return cm, ds, r
}

func TestDaemonSetLeastPrivilege(t *testing.T) {
	cfg := awkward()
	cfg.Cluster.StartupTaint = "gvisor-bootstrap.dev/runsc=not-ready:NoSchedule"
	out, err := DaemonSet(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, ds, r := decodeAll(t, out)
	if len(r.role.Rules) != 1 || strings.Join(r.role.Rules[0].Resources, ",") != "nodes" || strings.Join(r.role.Rules[0].Verbs, ",") != "get,patch" || strings.Join(r.role.Rules[0].APIGroups, ",") != "" {
		t.Errorf("ClusterRole rules %+v, want get/patch on nodes only", r.role.Rules)
	}
	if r.binding.RoleRef.Name != r.role.Name || len(r.binding.Subjects) != 1 || r.binding.Subjects[0].Name != r.sa.Name || r.binding.Subjects[0].Namespace != cfg.Delivery.Namespace {
		t.Errorf("binding %+v", r.binding)
	}
	if r.vapb.Spec.PolicyName != r.vap.Name || len(r.vapb.Spec.ValidationActions) != 1 || r.vapb.Spec.ValidationActions[0] != admissionv1.Deny {
		t.Errorf("policy binding %+v", r.vapb.Spec)
	}
	if r.vap.Spec.FailurePolicy == nil || *r.vap.Spec.FailurePolicy != admissionv1.Fail {
		t.Error("policy does not fail closed")
	}
	if len(r.vap.Spec.MatchConditions) != 1 || !strings.Contains(r.vap.Spec.MatchConditions[0].Expression, "system:serviceaccount:gvisor-system:"+r.sa.Name) {
		t.Errorf("policy matches %+v", r.vap.Spec.MatchConditions)
	}
	vars := map[string]string{}
	for _, v := range r.vap.Spec.Variables {
		vars[v.Name] = v.Expression
	}
	if vars["key"] != "'gvisor-bootstrap.dev/runsc'" || vars["taintKey"] != "'gvisor-bootstrap.dev/runsc'" {
		t.Errorf("policy variables %v", vars)
	}
	spec := ds.Spec.Template.Spec
	if spec.ServiceAccountName != r.sa.Name || spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("pod: serviceAccountName %q automount %v", spec.ServiceAccountName, spec.AutomountServiceAccountToken)
	}
	var tolerated bool
	for _, tol := range spec.Tolerations {
		tolerated = tolerated || (tol.Key == "gvisor-bootstrap.dev/runsc" && tol.Operator == corev1.TolerationOpExists && tol.Effect == corev1.TaintEffectNoSchedule)
	}
	if !tolerated {
		t.Errorf("the pod does not tolerate the startup taint it removes: %+v", spec.Tolerations)
	}
	// The token only where it is used.
	for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		has := false
		for _, m := range c.VolumeMounts {
			has = has || m.Name == "kube-api-access"
		}
		if has != (c.Name == "reconcile") {
			t.Errorf("container %s: token mounted = %v", c.Name, has)
		}
	}
	main := spec.Containers[0]
	// Its own DaemonSet, read-only, by name: to tell a deletion from a rollout.
	if rr := r.dsRole.Rules; r.dsRole.Namespace != cfg.Delivery.Namespace || len(rr) != 1 || strings.Join(rr[0].APIGroups, ",") != "apps" ||
		strings.Join(rr[0].Resources, ",") != "daemonsets" || strings.Join(rr[0].ResourceNames, ",") != ds.Name || strings.Join(rr[0].Verbs, ",") != "get,list,watch" {
		t.Errorf("Role %s/%s rules %+v, want get/list/watch on daemonsets/%s only", r.dsRole.Namespace, r.dsRole.Name, rr, ds.Name)
	}
	if b := r.dsBinding; b.Namespace != cfg.Delivery.Namespace || b.RoleRef.Kind != "Role" || b.RoleRef.Name != r.dsRole.Name || len(b.Subjects) != 1 || b.Subjects[0].Name != r.sa.Name {
		t.Errorf("RoleBinding %+v", b)
	}
	if cmd := strings.Join(main.Command, " "); !strings.HasSuffix(cmd, "--uninstall-with-daemonset "+cfg.Delivery.Namespace+"/"+ds.Name) {
		t.Errorf("reconcile command %q does not name its DaemonSet", cmd)
	}
	if len(main.Env) != 1 || main.Env[0].Name != "NODE_NAME" || main.Env[0].ValueFrom == nil || main.Env[0].ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("NODE_NAME from the downward API: %+v", main.Env)
	}
}

// With delivery.on_delete = "keep", deleting the DaemonSet leaves its nodes alone:
// no watch on it, and no right to read it.
func TestDaemonSetOnDeleteKeep(t *testing.T) {
	cfg := config.Default()
	cfg.Delivery.OnDelete = config.OnDeleteKeep
	out, err := DaemonSet(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, ds, r := decodeAll(t, out)
	if r.dsRole.Name != "" || r.dsBinding.Name != "" {
		t.Errorf("on_delete = keep rendered a Role %q / RoleBinding %q", r.dsRole.Name, r.dsBinding.Name)
	}
	if cmd := strings.Join(ds.Spec.Template.Spec.Containers[0].Command, " "); strings.Contains(cmd, "--uninstall-with-daemonset") {
		t.Errorf("on_delete = keep: reconcile command %q", cmd)
	}
	cfg.Delivery.OnDelete = "purge"
	if _, err := DaemonSet(cfg); err == nil || !strings.Contains(err.Error(), "delivery.on_delete") {
		t.Errorf("on_delete = purge: %v", err)
	}
}

func TestRuntimeClassDeliveryModes(t *testing.T) {
	cfg := config.Default()
	cfg.Delivery.Mode = config.DeliveryDaemonSet
	out, err := RuntimeClass(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var rc nodev1.RuntimeClass
	if err := yaml.UnmarshalStrict(out, &rc); err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"gvisor": "enabled", "gvisor-bootstrap.dev/runsc": "ready"}; !cmp.Equal(rc.Scheduling.NodeSelector, want) {
		t.Errorf("daemonset delivery selects %v, want %v", rc.Scheduling.NodeSelector, want)
	}
	if d := cmp.Diff(wantTolerations(cfg.Cluster.Tolerations), rc.Scheduling.Tolerations); d != "" {
		t.Errorf("tolerations (-want +got):\n%s", d)
	}
	for _, m := range []string{config.DeliveryImage, config.DeliveryCloudInit} {
		cfg.Delivery.Mode = m
		out, _ := RuntimeClass(cfg)
		rc := nodev1.RuntimeClass{}
		_ = yaml.UnmarshalStrict(out, &rc)
		if _, ok := rc.Scheduling.NodeSelector["gvisor-bootstrap.dev/runsc"]; ok {
			t.Errorf("%s delivery selects the ready label", m)
		}
	}
	cfg.Delivery.Mode = ""
	if _, err := RuntimeClass(cfg); err == nil || !strings.Contains(err.Error(), "--delivery") {
		t.Errorf("no mode: %v", err)
	}
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
			want := cfg
			want.Delivery.Mode = config.DeliveryDaemonSet
			if d := cmp.Diff(want, got, cmpopts.EquateEmpty()); d != "" {
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
				t.Error("service account token is automounted into every container")
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
			if got, want := strings.Join(main.Command, " "), "/usr/local/bin/gvisor-bootstrap run --root /host --watch --advertise --uninstall-with-daemonset "+cfg.Delivery.Namespace+"/gvisor-bootstrap"; got != want {
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
