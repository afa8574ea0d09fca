package containerd

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/pelletier/go-toml/v2"
)

// TestDropinRealContainerd2 writes the handlers into a drop-in and checks with
// real containerd 2 that the root config imports it and the handler is loaded,
// with everything else unchanged.
func TestDropinRealContainerd2(t *testing.T) {
	for _, fixture := range []string{"aks-ubuntu2404.toml", "default-2.3.toml", "eks-al2023.toml", "default-1.7.toml", "stale-runsc-v2.toml"} {
		t.Run(fixture, func(t *testing.T) {
			t.Parallel()
			ctrd := requireContainerd(t, "containerd-2")
			node := newScratchNode(t, ctrd.Version, fixture)
			node.C.Containerd.Mode = "dropin"
			cfgPath, dropin := node.configPath(), node.C.Containerd.DropinPath
			before := ctrd.dump(t, cfgPath)
			plan := node.apply(t)
			if !plan.RestartNeeded {
				t.Error("RestartNeeded = false")
			}
			root := node.read(t, cfgPath)

			// imports is a top-level key (before the first table) and lists the drop-in.
			var top struct {
				Version int      `toml:"version"`
				Imports []string `toml:"imports"`
			}
			if err := toml.Unmarshal(root, &top); err != nil {
				t.Fatal(err)
			}
			found := false
			for _, imp := range top.Imports {
				found = found || importCovers(imp, cfgPath, dropin)
			}
			if !found {
				t.Fatalf("root config does not import %s:\n%s", dropin, root)
			}
			if has, _ := HasRunsc(root); has {
				t.Errorf("root config still holds runsc tables:\n%s", root)
			}
			// The drop-in's version is the root's, never higher.
			var dv struct {
				Version int `toml:"version"`
			}
			if err := toml.Unmarshal(node.read(t, dropin), &dv); err != nil || dv.Version != top.Version || dv.Version == 0 {
				t.Errorf("drop-in version %d (%v), root version %d", dv.Version, err, top.Version)
			}

			after := ctrd.dump(t, cfgPath)
			runtimes := ctrd.effectiveRuntimes()
			got, ok := lookup(after, append(runtimes, "runsc", "options", "ConfigPath"))
			if !ok || got != node.C.Containerd.RuntimeConfigPath {
				t.Fatalf("containerd 2 does not load runsc from the drop-in (ConfigPath %v)", got)
			}
			if rt, _ := lookup(after, append(runtimes, "runsc", "runtime_type")); rt != RuntimeType {
				t.Errorf("runtime_type %v", rt)
			}
			for _, tree := range []map[string]any{before, after} {
				deletePath(tree, append(runtimes, "runsc"))
				delete(tree, "imports")
			}
			if diff := cmp.Diff(before, after); diff != "" {
				t.Errorf("effective config changed outside runsc (-before +after):\n%s", diff)
			}

			// Second run: nothing to do.
			if again := node.apply(t); again.Changed() {
				t.Errorf("second run changes: %+v", again.Changes)
			}

			// Back to in-place mode: the drop-in goes, runsc moves into the root.
			node.C.Containerd.Mode = "inplace"
			node.apply(t)
			if _, err := os.Stat(dropin); !os.IsNotExist(err) {
				t.Error("drop-in left behind in in-place mode")
			}
			if _, ok := lookup(ctrd.dump(t, cfgPath), append(runtimes, "runsc")); !ok {
				t.Error("runsc lost when switching to in-place mode")
			}
		})
	}
}

// TestImportsAfterTableIsIgnored shows why imports must go before the first table:
// appended at the end it is a key of the last table, and containerd 2 does not
// follow it.
func TestImportsAfterTableIsIgnored(t *testing.T) {
	ctrd := requireContainerd(t, "containerd-2")
	node := newScratchNode(t, ctrd.Version, "aks-ubuntu2404.toml")
	node.C.Containerd.Mode = "dropin"
	node.apply(t)
	dropin := node.C.Containerd.DropinPath
	data := node.read(t, node.configPath())
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(l, "imports") {
			lines = append(lines, l)
		}
	}
	wrong := strings.Join(lines, "\n") + "\nimports = [\"" + dropin + "\"]\n"
	if err := os.WriteFile(node.configPath(), []byte(wrong), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, ok := lookup(ctrd.dump(t, node.configPath()), append(ctrd.effectiveRuntimes(), "runsc")); ok {
		t.Fatal("containerd followed an imports key inside a table; the trap is gone?")
	}
	// Our run repairs it: a top-level imports is added.
	node.apply(t)
	if _, ok := lookup(ctrd.dump(t, node.configPath()), append(ctrd.effectiveRuntimes(), "runsc")); !ok {
		t.Fatalf("runsc not loaded after repair:\n%s", node.read(t, node.configPath()))
	}
}

func TestDropinRefused(t *testing.T) {
	c, _ := newNodeConfigurator(t, "aks-ubuntu2204.toml", "1.7.35")
	c.Containerd.Mode = "dropin"
	if _, err := c.Plan(); err == nil || !containsAll(err.Error(), "containerd >= 2.0", "replace", "inplace") {
		t.Errorf("drop-in on 1.7: %v", err)
	}
	c, _ = newNodeConfigurator(t, "legacy-v1.toml", "2.3.7")
	c.Containerd.Mode = "dropin"
	if _, err := c.Plan(); err == nil || !strings.Contains(err.Error(), "version") {
		t.Errorf("drop-in with a versionless root: %v", err)
	}
}

func TestEnsureImportsEdits(t *testing.T) {
	const p = "/etc/containerd/conf.d/90-gvisor-runsc.toml"
	cases := map[string]string{
		"version = 2\n[a]\nx = 1\n":                                  "version = 2\nimports = [\"" + p + "\"]\n[a]\nx = 1\n",
		"[a]\nx = 1\n":                                               "imports = [\"" + p + "\"]\n[a]\nx = 1\n",
		"version = 3\nimports = []\n[a]\n":                           "version = 3\nimports = [\"" + p + "\"]\n[a]\n",
		"version = 3\nimports = ['/x.toml'] # c\n[a]\n":              "version = 3\nimports = ['/x.toml', \"" + p + "\"] # c\n[a]\n",
		"imports = [\n  \"/x.toml\", # one\n]\n":                     "imports = [\n  \"/x.toml\", \"" + p + "\", # one\n]\n",
		"version = 3\nimports = ['/etc/containerd/conf.d/*.toml']\n": "version = 3\nimports = ['/etc/containerd/conf.d/*.toml']\n",
		"version = 3\nimports = ['conf.d/*.toml']\n":                 "version = 3\nimports = ['conf.d/*.toml']\n",
		"version = 3": "version = 3\nimports = [\"" + p + "\"]\n",
	}
	for in, want := range cases {
		doc, err := parseDocument("t", []byte(in))
		if err != nil {
			t.Fatal(err)
		}
		out, _, err := ensureImports(context.Background(), doc, "/etc/containerd/config.toml", p, false)
		if err != nil || string(out) != want {
			t.Errorf("ensureImports(%q) = %q, %v; want %q", in, out, err, want)
		}
	}
	doc, _ := parseDocument("t", []byte("imports = [1]\n"))
	if _, _, err := ensureImports(context.Background(), doc, "/etc/containerd/config.toml", p, false); err == nil {
		t.Error("non-string imports accepted")
	}
}
