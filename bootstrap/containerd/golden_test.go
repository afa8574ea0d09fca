package containerd

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.golden from the current output")

// TestGolden pins whole files for a few fixtures: the edited containerd config
// and the options file, exactly as written to a node.
func TestGolden(t *testing.T) {
	cases := []struct{ fixture, version, mode string }{
		{"aks-ubuntu2204.toml", "1.7.35", "inplace"},
		{"aks-ubuntu2404.toml", "2.3.7", "inplace"},
		{"aks-ubuntu2404-dead-runsc.toml", "2.3.7", "inplace"},
		{"default-2.3.toml", "2.3.7", "inplace"},
		{"hand-kept.toml", "1.7.35", "inplace"},
		{"stale-runsc-v2.toml", "1.7.35", "inplace"},
		{"stale-dotted-v3.toml", "2.3.7", "inplace"},
		{"no-runtimes-v2.toml", "1.7.35", "inplace"},
		{"", "1.7.35", "inplace"},
		{"aks-ubuntu2404.toml", "2.3.7", "dropin"},
		{"default-2.3.toml", "2.3.7", "dropin"},
		{"edge-inline-runsc.toml", "1.7.35", "inplace"},
		{"edge-spacing-no-eol.toml", "1.7.35", "inplace"},
		{"edge-runsc-first-v3.toml", "2.3.7", "inplace"},
	}
	for _, c := range cases {
		name := strings.TrimSuffix(c.fixture, ".toml")
		if name == "" {
			name = "missing"
		}
		name += "-" + c.version + "-" + c.mode
		t.Run(name, func(t *testing.T) {
			cfgr, cfg := newNodeConfigurator(t, c.fixture, c.version)
			cfgr.Containerd.Mode = c.mode
			applyOK(t, cfgr)
			var got bytes.Buffer
			for _, p := range []string{cfg.Containerd.ConfigPath, cfg.Containerd.DropinPath, cfg.Containerd.RuntimeConfigPath} {
				data, err := cfgr.Root.ReadFile(p)
				if err != nil {
					continue
				}
				got.WriteString("==> " + p + " <==\n")
				got.Write(data)
				if len(data) > 0 && data[len(data)-1] != '\n' {
					got.WriteString("\n(no newline at end of file)\n")
				}
			}
			golden := filepath.Join("testdata", "golden", name+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run `go test ./bootstrap/containerd -run TestGolden -update` to create it)", err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("%s differs; got:\n%s", golden, got.String())
			}
		})
	}
}
