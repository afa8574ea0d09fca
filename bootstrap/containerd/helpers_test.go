package containerd

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/config"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/test/testbin"
)

// realContainerd is one real containerd binary and the release it reports.
type realContainerd struct {
	Bin     string
	Version Version
}

// requireContainerd finds a real containerd build and reads its version from its
// own `--version` output.
func requireContainerd(t *testing.T, name string) realContainerd {
	t.Helper()
	bin := testbin.Require(t, name)
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v: %s", bin, err, out)
	}
	v, err := ParseVersion(string(out))
	if err != nil {
		t.Fatal(err)
	}
	return realContainerd{Bin: bin, Version: v}
}

// dump runs `containerd --config path config dump`: the effective, merged config
// the daemon would run with.
func (c realContainerd) dump(t *testing.T, path string) map[string]any {
	t.Helper()
	cmd := exec.Command(c.Bin, "--config", path, "config", "dump")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s --config %s config dump: %v\n%s", c.Bin, path, err, stderr.String())
	}
	tree := map[string]any{}
	if err := toml.Unmarshal(stdout.Bytes(), &tree); err != nil {
		t.Fatalf("parse dump of %s: %v", path, err)
	}
	return tree
}

// tryDump is dump for a config containerd may refuse.
func (c realContainerd) tryDump(path string) (map[string]any, bool) {
	out, err := exec.Command(c.Bin, "--config", path, "config", "dump").Output()
	if err != nil {
		return nil, false
	}
	tree := map[string]any{}
	if toml.Unmarshal(out, &tree) != nil {
		return nil, false
	}
	return tree, true
}

// effectiveRuntimes is where the effective config holds the CRI runtimes: the
// dump always uses the daemon's own current names.
func (c realContainerd) effectiveRuntimes() []string {
	if c.Version.Major < 2 {
		return familyGRPC.Runtimes()
	}
	return familyV3.Runtimes()
}

// scratchNode lays out a node in a temporary directory. The root is "/" and every
// path is absolute inside the temporary directory, so real containerd can follow
// the same paths (imports, ConfigPath) that the tool wrote.
type scratchNode struct {
	Dir string
	C   *Configurator
}

func newScratchNode(t *testing.T, v Version, fixture string) *scratchNode {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Containerd.ConfigPath = filepath.Join(dir, "etc/containerd/config.toml")
	cfg.Containerd.RuntimeConfigPath = filepath.Join(dir, "etc/containerd/runsc.toml")
	cfg.Containerd.DropinPath = filepath.Join(dir, "etc/containerd/conf.d/90-gvisor-runsc.toml")
	cfg.Containerd.BackupPath = filepath.Join(dir, "var/lib/gvisor-bootstrap/config.toml.orig")
	if err := os.MkdirAll(filepath.Dir(cfg.Containerd.ConfigPath), 0o755); err != nil {
		t.Fatal(err)
	}
	if fixture != "" {
		data, err := os.ReadFile(filepath.Join("testdata", fixture))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cfg.Containerd.ConfigPath, data, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return &scratchNode{Dir: dir, C: &Configurator{Root: fsroot.New("/"), Containerd: cfg.Containerd, Runsc: cfg.Runsc, Version: v}}
}

func (n *scratchNode) configPath() string { return n.C.Containerd.ConfigPath }

func (n *scratchNode) read(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// apply plans and applies, failing the test on error.
func (n *scratchNode) apply(t *testing.T) Plan {
	t.Helper()
	p, err := n.C.Plan()
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	if err := n.C.Apply(p); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return p
}

// nodeFixture writes a fixture at the default node path under a temporary root.
func nodeFixture(t *testing.T, fixture string) (fsroot.Root, config.Config) {
	t.Helper()
	root := fsroot.New(t.TempDir())
	cfg := config.Default()
	if fixture != "" {
		data, err := os.ReadFile(filepath.Join("testdata", fixture))
		if err != nil {
			t.Fatal(err)
		}
		if err := root.WriteFile(cfg.Containerd.ConfigPath, data, fsroot.WriteOptions{Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
	}
	return root, cfg
}

func mustVersion(t *testing.T, s string) Version {
	t.Helper()
	v, err := ParseVersion(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
