package containerd

import (
	"errors"
	"os"
	"testing"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/config"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
)

// Another agent rewrites containerd's config between Plan and Apply: Apply must not
// replace their file with a plan made from the old content.
func TestApplyRefusesAFileRewrittenSincePlan(t *testing.T) {
	root := fsroot.New(t.TempDir())
	orig := "version = 2\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n"
	if err := root.WriteFile("/etc/containerd/config.toml", []byte(orig), fsroot.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	def := config.Default()
	v, _ := ParseVersion("1.7.35")
	c := &Configurator{Root: root, Containerd: def.Containerd, Runsc: def.Runsc, Version: v}
	plan, err := c.Plan()
	if err != nil || !plan.Changed() {
		t.Fatalf("plan: %v %+v", err, plan)
	}
	theirs := orig + "# rewritten by provisioning\n"
	if err := os.WriteFile(root.Path("/etc/containerd/config.toml"), []byte(theirs), 0o644); err != nil {
		t.Fatal(err)
	}
	err = c.Apply(plan)
	if !errors.Is(err, ErrChangedSincePlan) {
		t.Fatalf("Apply over a rewritten file: %v", err)
	}
	got, _ := root.ReadFile("/etc/containerd/config.toml")
	if string(got) != theirs {
		t.Fatalf("their rewrite was replaced:\n%s", got)
	}
	// Planning again from their content works.
	plan, err = c.Plan()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(plan); err != nil {
		t.Fatal(err)
	}
	got, _ = root.ReadFile("/etc/containerd/config.toml")
	if ok, _ := HasRunsc(got); !ok || !containsAll(string(got), "# rewritten by provisioning") {
		t.Fatalf("re-plan lost their content or runsc:\n%s", got)
	}
}
