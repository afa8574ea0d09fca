package render

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/config"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
)

// TestCommittedFilesMatchRender fails when the files in manifests/ and cloud-init/
// are not what `render` prints; test/tools/render-committed.sh (`make render`)
// regenerates them with the same inputs as here.
func TestCommittedFilesMatchRender(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	defaults := config.Default()
	example, err := config.Load(fsroot.New(repo), "/cloud-init/example.toml")
	if err != nil {
		t.Fatal(err)
	}
	for file, render := range map[string]func() ([]byte, error){
		"manifests/runtimeclass.yaml": func() ([]byte, error) { return RuntimeClass(defaults) },
		"manifests/daemonset.yaml":    func() ([]byte, error) { return DaemonSet(defaults) },
		"manifests/config.toml":       func() ([]byte, error) { return config.Encode(defaults) },
		"cloud-init/customdata.yaml":  func() ([]byte, error) { return CloudInit(example, CloudInitOptions{}) },
		"cloud-init/customdata-baked.yaml": func() ([]byte, error) {
			return CloudInit(defaults, CloudInitOptions{Baked: true})
		},
	} {
		want, err := render()
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		got, err := os.ReadFile(filepath.Join(repo, file))
		if err != nil {
			t.Errorf("%s: %v; run `make render`", file, err)
			continue
		}
		if d := cmp.Diff(string(want), string(got)); d != "" {
			t.Errorf("%s differs from what render prints; run `make render` (-render +committed):\n%s", file, d)
		}
	}
}
