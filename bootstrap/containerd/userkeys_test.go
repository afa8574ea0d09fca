package containerd

import (
	"os"
	"strings"
	"testing"
)

// A user's own runsc table: the tool takes over only the keys it owns, keeps the
// rest (pod_annotations: gVisor's mount hints), backs the original up, and
// uninstall gives it back byte for byte.
func TestUserRunscTableKeptBackedUpAndRestored(t *testing.T) {
	ctrd := requireContainerd(t, "containerd-2")
	node := newScratchNode(t, ctrd.Version, "")
	orig := "version = 2\n[plugins.\"io.containerd.cri.v1.runtime\".containerd]\n  default_runtime_name = \"runsc\"\n" +
		"[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runsc]\n  runtime_type = \"io.containerd.runc.v2\"\n  pod_annotations = [\"dev.gvisor.*\"]\n" +
		"[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runsc.options]\n  ConfigPath = \"/etc/mine.toml\"\n  Debug = true\n"
	if err := os.WriteFile(node.configPath(), []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	plan := node.apply(t)
	if plan.Backup == nil || string(plan.Backup.New) != orig {
		t.Fatalf("the user's original was not backed up: %+v", plan.Backup)
	}
	eff := ctrd.dump(t, node.configPath())
	rs := append(ctrd.effectiveRuntimes(), "runsc")
	if v, _ := lookup(eff, append(rs, "runtime_type")); v != RuntimeType {
		t.Fatalf("runtime_type %v", v)
	}
	if v, _ := lookup(eff, append(rs, "pod_annotations")); !strings.Contains(strings.Join(toStrings(v), ","), "dev.gvisor.*") {
		t.Fatalf("pod_annotations lost: %v", v)
	}
	if v, _ := lookup(eff, append(rs, "options", "Debug")); v != true {
		t.Fatalf("the user's option lost: %v", v)
	}
	if again := node.apply(t); again.Changed() {
		t.Fatalf("second run: %s", again.Diff())
	}
	rm, err := node.C.PlanRemove()
	if err != nil {
		t.Fatal(err)
	}
	if err := node.C.Apply(rm); err != nil {
		t.Fatal(err)
	}
	if got := string(node.read(t, node.configPath())); got != orig {
		t.Fatalf("uninstall did not restore the original:\n%s", got)
	}
}

// Without a restorable backup, uninstall of a config whose default runtime is
// runsc leaves a default containerd can start with.
func TestUninstallDefaultRuntimeRunsc(t *testing.T) {
	node := newScratchNode(t, mustVersion(t, "2.3.7"), "")
	node.C.Containerd.BackupPath = ""
	body := "version = 2\n[plugins.\"io.containerd.cri.v1.runtime\".containerd]\n  default_runtime_name = \"runsc\"\n"
	if err := os.WriteFile(node.configPath(), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	node.apply(t)
	rm, err := node.C.PlanRemove()
	if err != nil {
		t.Fatal(err)
	}
	if err := node.C.Apply(rm); err != nil {
		t.Fatal(err)
	}
	got := string(node.read(t, node.configPath()))
	if !strings.Contains(got, "default_runtime_name = \"runc\"") || strings.Contains(got, "runtimes.runsc") {
		t.Fatalf("uninstall left:\n%s", got)
	}
}

func toStrings(v any) []string {
	l, _ := v.([]any)
	var out []string
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}
