package containerd

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// everyContainerd are the real containerd releases the merge-order tests load
// configs with: each containerd 2 minor line (2.0 to 2.2 merge imports before
// they migrate old table names, 2.3 and 2.4 migrate each file) and 1.7.
var everyContainerd = []string{"containerd-1.7", "containerd-2.0", "containerd-2.1", "containerd-2.2", "containerd-2", "containerd-2.4"}

// The site file is one more imported file the node already has: it sets runc's
// cgroup driver the old way, as provisioning agents do.
const siteFile = `version = 2
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = true
`

// TestMergeOrderEveryContainerd registers runsc in each mode on configs shaped
// like kind's, AKS's and containerd's defaults, with an imported site file, and
// asks every real containerd line for its effective config: runsc loaded as
// wanted, everything else exactly as before, runsc's cgroup driver that of the
// effective runc, and a second run a no-op.
func TestMergeOrderEveryContainerd(t *testing.T) {
	fixtures := []string{"kind-v2.toml", "aks-ubuntu2404.toml", "default-1.7.toml", "default-2.3.toml"}
	for _, bin := range everyContainerd {
		for _, fixture := range fixtures {
			for _, mode := range []string{"inplace", "dropin"} {
				for _, site := range []bool{false, true} {
					name := bin + "/" + fixture + "/" + mode
					if site {
						name += "/site"
					}
					t.Run(name, func(t *testing.T) {
						t.Parallel()
						ctrd := requireContainerd(t, bin)
						if ctrd.Version.Major < 2 && (mode == "dropin" || fixture == "aks-ubuntu2404.toml" || fixture == "default-2.3.toml") {
							t.Skip("containerd 1.x: in-place mode, version 2 files with its own names only")
						}
						node := newScratchNode(t, ctrd.Version, fixture)
						node.C.Containerd.Mode = mode
						cfgPath := node.configPath()
						data := node.read(t, cfgPath)
						if site {
							// imports before the first table, after the version line.
							data = []byte(strings.Replace(string(data), "\n", "\nimports = [\"conf.d/*.toml\"]\n", 1))
							if !strings.HasPrefix(strings.TrimLeft(string(data), "# \n"), "version") && !strings.Contains(string(data), "version =") {
								t.Fatal("fixture without a version line")
							}
							if err := os.WriteFile(cfgPath, data, 0o644); err != nil {
								t.Fatal(err)
							}
							dir := filepath.Join(filepath.Dir(cfgPath), "conf.d")
							if err := os.MkdirAll(dir, 0o755); err != nil {
								t.Fatal(err)
							}
							if err := os.WriteFile(filepath.Join(dir, "10-site.toml"), []byte(siteFile), 0o644); err != nil {
								t.Fatal(err)
							}
						}
						before, ok := ctrd.tryDump(cfgPath)
						if !ok {
							t.Skipf("containerd %s does not load this node's config to begin with", ctrd.Version)
						}
						plan, err := node.C.Plan()
						if ctrd.Version.Major < 2 && site {
							// containerd 1.x lets the site file's CRI section replace the
							// main file's whole: runsc there would never be served
							// (the dump shows the main file's sandbox image gone).
							if img, _ := lookup(before, []string{"plugins", "io.containerd.grpc.v1.cri", "sandbox_image"}); img == "registry.k8s.io/pause:3.10" {
								t.Fatalf("containerd %s merged the CRI sections; the refusal is wrong", ctrd.Version)
							}
							var fe *ForeignHandlerError
							if !errors.As(err, &fe) || !strings.Contains(err.Error(), "10-site.toml") {
								t.Fatalf("Plan = %v, want a refusal naming the site file", err)
							}
							return
						}
						if err != nil {
							t.Fatalf("Plan: %v", err)
						}
						if err := node.C.Apply(plan); err != nil {
							t.Fatal(err)
						}
						after := ctrd.dump(t, cfgPath)
						runtimes := ctrd.effectiveRuntimes()
						got, ok := lookup(after, append(runtimes, "runsc"))
						if !ok {
							t.Fatalf("containerd %s does not load runsc (%s):\n%s", ctrd.Version, plan.Dialect.Reason, plan.Diff())
						}
						m := got.(map[string]any)
						if m["runtime_type"] != RuntimeType {
							t.Errorf("runtime_type = %v", m["runtime_type"])
						}
						if cp, _ := lookup(m, []string{"options", "ConfigPath"}); cp != node.C.Containerd.RuntimeConfigPath {
							t.Errorf("options.ConfigPath = %v", cp)
						}
						for _, tree := range []map[string]any{before, after} {
							for _, h := range managedHandlers {
								deletePath(tree, append(runtimes, h))
							}
							delete(tree, "imports")
						}
						if diff := cmp.Diff(before, after); diff != "" {
							t.Errorf("containerd %s: effective config changed outside runsc (-before +after), dialect %s (%s):\n%s\n%s", ctrd.Version, plan.Dialect, plan.Dialect.Reason, diff, plan.Diff())
						}
						runcSystemd, _ := lookup(after, append(runtimes, "runc", "options", "SystemdCgroup"))
						checkOptionsFile(t, node.read(t, node.C.Containerd.RuntimeConfigPath), runcSystemd == true)
						if again := node.apply(t); again.Changed() {
							t.Errorf("second run changes: %s", again.Diff())
						}
					})
				}
			}
		}
	}
}

// TestCompositionRootRealContainerd: containerd started on a composition root
// that imports the main config (Azure Container Linux) loads the handler the plan
// writes into the imported file, and nothing else changes.
func TestCompositionRootRealContainerd(t *testing.T) {
	for _, bin := range []string{"containerd-2.2", "containerd-2"} {
		t.Run(bin, func(t *testing.T) {
			ctrd := requireContainerd(t, bin)
			node := newScratchNode(t, ctrd.Version, "aks-ubuntu2404.toml")
			acl := filepath.Join(node.Dir, "run/containerd/acl-config.toml")
			if err := os.MkdirAll(filepath.Dir(acl), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(acl, []byte("version = 2\nimports = [\""+node.configPath()+"\"]\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			node.C.Loaded = acl
			before := ctrd.dump(t, acl)
			node.apply(t)
			after := ctrd.dump(t, acl)
			runtimes := ctrd.effectiveRuntimes()
			if rt, _ := lookup(after, append(runtimes, "runsc", "runtime_type")); rt != RuntimeType {
				t.Fatalf("containerd on the composition root loads runsc as %v", rt)
			}
			for _, tree := range []map[string]any{before, after} {
				deletePath(tree, append(runtimes, "runsc"))
			}
			if diff := cmp.Diff(before, after); diff != "" {
				t.Errorf("effective config changed outside runsc:\n%s", diff)
			}
		})
	}
}
