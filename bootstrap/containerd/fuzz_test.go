package containerd

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/pelletier/go-toml/v2"
)

// FuzzEdit checks the editor's contract on arbitrary input: either the input is
// refused with an error, or the output parses, registers runsc as wanted in the
// dialect's tables, and keeps every other key and value; a second edit of the
// output changes nothing. The checks here decode independently of the editor's
// own self-check.
func FuzzEdit(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.toml")
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"",
		"# only a comment",
		"version = 2\n[plugins]\n\"io.containerd.grpc.v1.cri\".containerd.runtimes.runsc.runtime_type = \"x\"\n",
		"version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\nruntimes.runsc = { runtime_type = \"x\" }\n",
		"version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'runsc']\nruntime_type = 'x'\n[x]\n",
		"version = 2\r\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\r\nruntime_type = \"io.containerd.runc.v2\"\r\n",
		"version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runsc.options]\nTypeUrl = 1\n",
		"x = \"\"\"\nmulti\n[plugins]\n\"\"\"\nversion = 2\n",
	} {
		f.Add([]byte(s))
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 40; i++ {
		f.Add([]byte(randomConfig(r, 1+i%2)))
	}
	versions := []Version{{Major: 1, Minor: 7, Patch: 35}, {Major: 2, Minor: 3, Patch: 7}}
	wanted := []Handler{{Name: HandlerRunsc, OptionsPath: "/etc/containerd/runsc.toml"}}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, v := range versions {
			doc, err := parseDocument("fuzz", data)
			if err != nil {
				return
			}
			d, err := detectDialect(doc, v)
			if err != nil {
				continue
			}
			out, changed, err := editHandlers(doc, d, wanted)
			if err != nil {
				continue // refused: allowed
			}
			if !changed && string(out) != string(data) {
				t.Fatalf("unchanged edit returned different bytes")
			}
			var before, after map[string]any
			if err := toml.Unmarshal(data, &before); err != nil {
				t.Fatalf("input parsed for the editor but not for the decoder: %v", err)
			}
			if err := toml.Unmarshal(out, &after); err != nil {
				t.Fatalf("output does not parse: %v\n%s", err, out)
			}
			runsc := d.HandlerPath(HandlerRunsc)
			got, ok := lookup(after, runsc)
			if !ok || !cmp.Equal(got, withUserKeys(before, d, wanted)[0].want()) {
				t.Fatalf("runsc not registered as wanted in %s: %v\n%s", d.RuntimeTable, got, out)
			}
			_, hadRuntimes := lookup(before, d.RuntimesPath())
			for _, fam := range allFamilies {
				for _, h := range managedHandlers {
					deletePath(before, fam.Handler(h))
					deletePath(after, fam.Handler(h))
				}
			}
			if d.ListReplacesBuiltins && !hadRuntimes {
				deletePath(after, d.HandlerPath("runc"))
			}
			if len(doc.stmts) == 0 {
				delete(after, "version")
			}
			if diff := cmp.Diff(before, after, cmpopts.EquateNaNs()); diff != "" {
				t.Fatalf("other keys changed (-before +after):\n%s\ninput:\n%s\noutput:\n%s", diff, data, out)
			}
			doc2, err := parseDocument("fuzz output", out)
			if err != nil {
				t.Fatal(err)
			}
			d2, err := detectDialect(doc2, v)
			if err != nil || d2.Plugin != d.Plugin {
				t.Fatalf("output reads as another dialect: %+v %v (was %+v)", d2, err, d)
			}
			if _, again, err := editHandlers(doc2, d2, wanted); err != nil || again {
				t.Fatalf("second edit: changed=%v err=%v\n%s", again, err, out)
			}
		}
	})
}
