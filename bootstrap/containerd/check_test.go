package containerd

import (
	"strings"
	"testing"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
)

// TestCheckFindsForeignImportedHandler: another tool's drop-in that defines runsc
// is merged over ours by containerd 2; verify must say so.
func TestCheckFindsForeignImportedHandler(t *testing.T) {
	c, _ := newNodeConfigurator(t, "default-2.3.toml", "2.3.7")
	applyOK(t, c)
	if probs := c.Check(); len(probs) != 0 {
		t.Fatalf("problems: %+v", probs)
	}
	other := "/etc/containerd/conf.d/50-other.toml"
	if err := c.Root.WriteFile(other, []byte("version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runsc]\n  runtime_type = 'io.containerd.runsc.v1'\n"), fsroot.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	probs := c.Check()
	if len(probs) != 1 || !strings.HasSuffix(probs[0].Path, other) || !strings.Contains(probs[0].What, "merges") {
		t.Errorf("problems: %+v", probs)
	}
}
