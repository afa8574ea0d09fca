package containerd

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An imported file that sets a key this tool owns in the runsc table is refused
// up front, naming the file; one that only adds the user's own keys is not.
func TestPlanRefusesAnImportOverridingRunsc(t *testing.T) {
	main := "version = 2\nimports = [\"conf.d/*.toml\"]\n[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n"
	cases := []struct {
		name, version, file string
		refused             bool
	}{
		{"runc as runsc", "2.3.7", "[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runsc]\n  runtime_type = \"io.containerd.runc.v2\"\n", true},
		{"old names", "2.2.9", "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runsc.options]\n  ConfigPath = \"/etc/other.toml\"\n", true},
		{"user keys only", "2.3.7", "[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runsc]\n  pod_annotations = [\"dev.gvisor.*\"]\n", false},
		{"unrelated", "2.3.7", "[plugins.\"io.containerd.cri.v1.images\".pinned_images]\n  sandbox = \"pause:3.10\"\n", false},
		{"1.7 replaces the section", "1.7.35", "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"pause:3.10\"\n", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := main
			if strings.HasPrefix(c.version, "1.") {
				body = strings.ReplaceAll(main, "io.containerd.cri.v1.runtime", "io.containerd.grpc.v1.cri")
			}
			n := newScratchNode(t, mustVersion(t, c.version), "")
			if err := os.WriteFile(n.configPath(), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			other := filepath.Join(filepath.Dir(n.configPath()), "conf.d", "50-other.toml")
			if err := os.MkdirAll(filepath.Dir(other), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(other, []byte(c.file), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := n.C.Plan()
			var fe *ForeignHandlerError
			if c.refused {
				if !errors.As(err, &fe) || fe.Path != other || !strings.Contains(err.Error(), other) {
					t.Fatalf("Plan = %v, want a refusal naming %s", err, other)
				}
				probs := n.C.Check()
				if len(probs) != 1 || probs[0].Path != other {
					t.Fatalf("Check = %+v, want the one problem naming %s", probs, other)
				}
				return
			}
			if err != nil {
				t.Fatalf("Plan refused a file that does not override runsc: %v", err)
			}
		})
	}
}
