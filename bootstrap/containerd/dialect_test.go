package containerd

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/test/testbin"
)

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]string{
		"containerd github.com/containerd/containerd/v2 v2.3.7 3a4b5c6d":              "2.3.7",
		"containerd github.com/containerd/containerd 1.7.35+unknown ":                 "1.7.35",
		"containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3": "1.6.20",
		"containerd containerd.io 1.7.27 05044ec0a9a75232cad458027ca83437aae3f4da":    "1.7.27",
		"v1.7.35": "1.7.35",
		"1.7.35":  "1.7.35",
		"2.1.4\n": "2.1.4",
	} {
		v, err := ParseVersion(in)
		if err != nil || v.String() != want {
			t.Errorf("ParseVersion(%q) = %v, %v; want %s", in, v, err, want)
		}
	}
	for _, bad := range []string{"", "containerd", "version two", "1.7"} {
		if _, err := ParseVersion(bad); err == nil {
			t.Errorf("ParseVersion(%q) succeeded", bad)
		}
	}
}

// TestDebianContainerd16Refused reads the version of Debian's real containerd 1.6
// and checks that configure refuses it and writes nothing.
func TestDebianContainerd16Refused(t *testing.T) {
	bin := "/usr/bin/containerd"
	if _, err := os.Stat(bin); err != nil {
		bin = testbin.Require(t, "containerd")
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v", bin, err)
	}
	v, err := ParseVersion(string(out))
	if err != nil {
		t.Fatal(err)
	}
	if !v.Less(1, 7) {
		t.Skipf("%s is containerd %s, not older than 1.7", bin, v)
	}
	root, cfg := nodeFixture(t, "aks-ubuntu2204.toml")
	before, _ := root.ReadFile(cfg.Containerd.ConfigPath)
	c := &Configurator{Root: root, Containerd: cfg.Containerd, Runsc: cfg.Runsc, Version: v}
	_, err = c.Plan()
	if err == nil || !containsAll(err.Error(), "too old", ">= 1.7", v.String()) {
		t.Fatalf("Plan on containerd %s: err = %v, want a clear refusal", v, err)
	}
	if p := c.Check(); len(p) == 0 || !strings.Contains(p[0].What, "too old") {
		t.Errorf("Check = %+v", p)
	}
	after, _ := root.ReadFile(cfg.Containerd.ConfigPath)
	if string(before) != string(after) || root.Exists(cfg.Containerd.RuntimeConfigPath) {
		t.Error("files written for an unsupported containerd")
	}
}

func TestDetectVersion(t *testing.T) {
	ctx := context.Background()
	if v, err := DetectVersion(ctx, fsroot.New(t.TempDir()), "v2.1.4"); err != nil || v.String() != "2.1.4" {
		t.Errorf("override: %v %v", v, err)
	}
	_, err := DetectVersion(ctx, fsroot.New(t.TempDir()), "")
	if err == nil || !strings.Contains(err.Error(), "--containerd-version") {
		t.Errorf("under another root without override: %v", err)
	}
	saved := containerdCommand
	defer func() { containerdCommand = saved }()
	containerdCommand = func(context.Context) ([]byte, error) {
		return []byte("containerd github.com/containerd/containerd/v2 v2.2.1 deadbeef\n"), nil
	}
	if v, err := DetectVersion(ctx, fsroot.New("/"), ""); err != nil || v.String() != "2.2.1" {
		t.Errorf("host: %v %v", v, err)
	}
	containerdCommand = func(context.Context) ([]byte, error) { return nil, exec.ErrNotFound }
	if _, err := DetectVersion(ctx, fsroot.New("/"), ""); err == nil || !strings.Contains(err.Error(), "not installed") {
		t.Errorf("missing binary: %v", err)
	}
}

func TestDetectDialect(t *testing.T) {
	v17, v21, v23 := mustVersion(t, "1.7.35"), mustVersion(t, "2.1.4"), mustVersion(t, "2.3.7")
	cases := []struct {
		fixture    string
		v          Version
		version    int
		plugin     string
		errContain string
	}{
		{"default-1.7.toml", v17, 2, "grpc.v1.cri", ""},
		{"default-1.7.toml", v23, 2, "grpc.v1.cri", ""},
		{"aks-ubuntu2204.toml", v17, 2, "grpc.v1.cri", ""},
		// AKS's containerd 2 file: version 2, but its runtimes use the new names.
		{"aks-ubuntu2404.toml", v23, 2, "cri.v1.runtime", ""},
		{"aks-ubuntu2404-dead-runsc.toml", v23, 2, "cri.v1.runtime", ""},
		// The same file on containerd 1.7 (which ignores the new names).
		{"aks-ubuntu2404.toml", v17, 2, "grpc.v1.cri", ""},
		{"eks-al2023.toml", v21, 3, "cri.v1.runtime", ""},
		{"containerd23-v4.toml", v23, 4, "cri.v1.runtime", ""},
		{"default-2.3.toml", v23, 4, "cri.v1.runtime", ""},
		{"legacy-v1.toml", v17, 0, "cri", ""},
		{"legacy-v1.toml", v23, 0, "cri", ""},
		{"hand-kept.toml", v23, 2, "grpc.v1.cri", ""},
		{"empty.toml", v17, 2, "grpc.v1.cri", ""},
		{"empty.toml", v21, 3, "cri.v1.runtime", ""},
		{"empty.toml", v23, 4, "cri.v1.runtime", ""},
		{"eks-al2023.toml", v17, 0, "", "needs containerd 2"},
		{"containerd23-v4.toml", v21, 0, "", "needs containerd >= 2.3"},
		{"invalid.toml", v23, 0, "", "line 3, column 45"},
		{"aks-ubuntu2204.toml", mustVersion(t, "1.6.20"), 0, "", "too old"},
	}
	for _, c := range cases {
		data, err := os.ReadFile(filepath.Join("testdata", c.fixture))
		if err != nil {
			t.Fatal(err)
		}
		d, err := DetectDialect(data, c.v)
		if c.errContain != "" {
			if err == nil || !strings.Contains(err.Error(), c.errContain) {
				t.Errorf("%s on %s: err = %v, want it to say %q", c.fixture, c.v, err, c.errContain)
			}
			continue
		}
		if err != nil || d.ConfigVersion != c.version || d.Plugin != c.plugin {
			t.Errorf("%s on %s: %+v, %v; want version %d, %s tables", c.fixture, c.v, d, err, c.version, c.plugin)
		}
	}
	// A version 2 file with old-style runtimes and a new-style plugin table that
	// holds no runtimes: adding runsc under the new names would drop runc.
	mixed := "version = 2\n[plugins.\"io.containerd.cri.v1.runtime\"]\n  enable_cdi = true\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n"
	if d, err := DetectDialect([]byte(mixed), v23); err != nil || d.Plugin != "grpc.v1.cri" {
		t.Errorf("mixed file: %+v %v", d, err)
	}
	// No version, short and long CRI names: containerd 2 replaces one with the
	// other (seen with real containerd 2.3), so the file is refused.
	both := "[plugins.cri]\n  sandbox_image = \"a\"\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"b\"\n"
	if _, err := DetectDialect([]byte(both), v23); err == nil || !strings.Contains(err.Error(), "containerd config migrate") {
		t.Errorf("mixed short and long names on containerd 2: %v", err)
	}
	if d, err := DetectDialect([]byte(both), v17); err != nil || d.Plugin != "cri" {
		t.Errorf("the same file on containerd 1.7 (which reads only plugins.cri): %+v %v", d, err)
	}
	if _, err := DetectDialect([]byte("version = \"2\"\n"), v23); err == nil {
		t.Error("a string version was accepted")
	}
}

func TestInvalidTOMLRefusedWithPositionAndNothingWritten(t *testing.T) {
	root, cfg := nodeFixture(t, "invalid.toml")
	c := &Configurator{Root: root, Containerd: cfg.Containerd, Runsc: cfg.Runsc, Version: mustVersion(t, "1.7.35")}
	_, err := c.Plan()
	var te *TOMLError
	if !errors.As(err, &te) || te.Line != 3 || te.Column != 45 || te.Path != root.Path(cfg.Containerd.ConfigPath) {
		t.Fatalf("err = %#v, want a TOMLError at line 3 column 45 naming the file", err)
	}
	if !containsAll(err.Error(), root.Path(cfg.Containerd.ConfigPath), "line 3", "column 45") {
		t.Errorf("message %q lacks the file and position", err)
	}
	var files []string
	filepath.Walk(root.Dir(), func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if len(files) != 1 {
		t.Errorf("files after a refused plan: %v", files)
	}
}
