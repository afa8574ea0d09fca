package containerd

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pelletier/go-toml/v2"
)

// fieldConfigs are the shapes of containerd config found on real nodes, each with
// the containerd releases that would load it ("" fixture: no file at all).
var fieldConfigs = []struct {
	fixture string
	bins    []string
}{
	{"default-1.7.toml", []string{"containerd-1.7", "containerd-2"}},
	{"default-2.3.toml", []string{"containerd-2"}},
	{"aks-ubuntu2204.toml", []string{"containerd-1.7", "containerd-2"}},
	{"aks-ubuntu2404.toml", []string{"containerd-2"}},
	{"aks-ubuntu2404-dead-runsc.toml", []string{"containerd-2"}},
	{"containerd23-v4.toml", []string{"containerd-2"}},
	{"eks-al2023.toml", []string{"containerd-2"}},
	{"hand-kept.toml", []string{"containerd-1.7", "containerd-2"}},
	{"stale-runsc-v2.toml", []string{"containerd-1.7", "containerd-2"}},
	{"stale-dotted-v3.toml", []string{"containerd-2"}},
	{"legacy-v1.toml", []string{"containerd-1.7", "containerd-2"}},
	{"no-runtimes-v2.toml", []string{"containerd-1.7", "containerd-2"}},
	{"crlf-default-1.7.toml", []string{"containerd-1.7", "containerd-2"}},
	{"edge-inline-runsc.toml", []string{"containerd-1.7", "containerd-2"}},
	{"edge-spacing-no-eol.toml", []string{"containerd-1.7", "containerd-2"}},
	{"edge-runsc-first-v3.toml", []string{"containerd-2"}},
	{"empty.toml", []string{"containerd-1.7", "containerd-2"}},
	{"", []string{"containerd-1.7", "containerd-2"}},
}

// TestRealContainerdLoadsRunsc edits each field config and asks the real
// containerd that would load it for its effective config: runsc must be there as
// wanted, everything else must be exactly as before, and a second run must not
// touch the file.
func TestRealContainerdLoadsRunsc(t *testing.T) {
	for _, fc := range fieldConfigs {
		for _, bin := range fc.bins {
			name := fc.fixture
			if name == "" {
				name = "missing"
			}
			t.Run(name+"/"+bin, func(t *testing.T) {
				t.Parallel()
				ctrd := requireContainerd(t, bin)
				node := newScratchNode(t, ctrd.Version, fc.fixture)
				cfgPath := node.configPath()

				// The effective config before: a missing file reads as an empty one
				// (containerd 1.7 refuses a missing --config; the dump names the
				// file, so the empty stand-in sits at the same path).
				if fc.fixture == "" {
					if err := os.WriteFile(cfgPath, nil, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				before := ctrd.dump(t, cfgPath)
				if fc.fixture == "" {
					if err := os.Remove(cfgPath); err != nil {
						t.Fatal(err)
					}
				}

				plan := node.apply(t)
				if !plan.RestartNeeded {
					t.Error("RestartNeeded = false after registering runsc")
				}
				after := ctrd.dump(t, cfgPath)

				runtimes := ctrd.effectiveRuntimes()
				got, ok := lookup(after, append(runtimes, "runsc"))
				if !ok {
					t.Fatalf("containerd %s does not load runsc from the edited file:\n%s", ctrd.Version, node.read(t, cfgPath))
				}
				m := got.(map[string]any)
				if m["runtime_type"] != RuntimeType {
					t.Errorf("effective runtime_type = %v, want %s", m["runtime_type"], RuntimeType)
				}
				opts, _ := m["options"].(map[string]any)
				if opts["TypeUrl"] != OptionsTypeURL || opts["ConfigPath"] != node.C.Containerd.RuntimeConfigPath {
					t.Errorf("effective runsc options = %v", opts)
				}

				// Everything but the handlers this tool owns is what containerd ran
				// with before.
				for _, h := range managedHandlers {
					deletePath(after, append(runtimes, h))
					deletePath(before, append(runtimes, h))
				}
				if diff := cmp.Diff(before, after); diff != "" {
					t.Errorf("effective config changed outside runsc (-before +after):\n%s", diff)
				}

				// systemd-cgroup follows runc's effective SystemdCgroup, never otherwise.
				runcSystemd, _ := lookup(after, append(runtimes, "runc", "options", "SystemdCgroup"))
				checkOptionsFile(t, node.read(t, node.C.Containerd.RuntimeConfigPath), runcSystemd == true)

				// A second run changes nothing: no change planned, bytes and mtime kept.
				st1, _ := os.Stat(cfgPath)
				data1 := node.read(t, cfgPath)
				time.Sleep(10 * time.Millisecond)
				again := node.apply(t)
				if again.Changed() || again.RestartNeeded {
					t.Errorf("second run planned changes: %+v", again.Changes)
				}
				st2, _ := os.Stat(cfgPath)
				if string(node.read(t, cfgPath)) != string(data1) || !st1.ModTime().Equal(st2.ModTime()) {
					t.Error("second run rewrote the config")
				}
			})
		}
	}
}

// checkOptionsFile asserts the shim options file: [runsc_config] all strings,
// platform systrap, systemd-cgroup exactly when runc uses the systemd driver.
func checkOptionsFile(t *testing.T, data []byte, systemd bool) {
	t.Helper()
	var o struct {
		RunscConfig map[string]any `toml:"runsc_config"`
	}
	if err := toml.Unmarshal(data, &o); err != nil {
		t.Fatalf("options file does not parse: %v\n%s", err, data)
	}
	for k, v := range o.RunscConfig {
		if _, ok := v.(string); !ok {
			t.Errorf("[runsc_config] %s = %v is not a string; the shim would fail every container", k, v)
		}
	}
	if o.RunscConfig["platform"] != "systrap" {
		t.Errorf("platform = %v, want systrap", o.RunscConfig["platform"])
	}
	got, has := o.RunscConfig["systemd-cgroup"]
	if systemd && got != "true" {
		t.Errorf("runc uses SystemdCgroup = true but systemd-cgroup = %v", got)
	}
	if !systemd && has {
		t.Errorf("runc uses cgroupfs but systemd-cgroup = %v is set (breaks sandbox creation)", got)
	}
}

// TestAKSTrapNaiveInsertionIsDropped proves the test above can fail: the runsc
// table written the containerd 1.x way into AKS's containerd 2 file (version = 2
// with containerd 2 table names) is silently dropped by real containerd 2, while
// the one this package writes is loaded.
func TestAKSTrapNaiveInsertionIsDropped(t *testing.T) {
	ctrd := requireContainerd(t, "containerd-2")
	node := newScratchNode(t, ctrd.Version, "aks-ubuntu2404-dead-runsc.toml")
	runsc := append(ctrd.effectiveRuntimes(), "runsc")
	if _, ok := lookup(ctrd.dump(t, node.configPath()), runsc); ok {
		t.Fatal("containerd 2 loaded the old-style runsc table from a version 2 file with containerd 2 tables; the trap this package avoids is gone?")
	}
	plan := node.apply(t)
	if plan.Dialect.Plugin != familyV3.Name {
		t.Errorf("dialect %+v, want the cri.v1.runtime tables", plan.Dialect)
	}
	if _, ok := lookup(ctrd.dump(t, node.configPath()), runsc); !ok {
		t.Fatalf("containerd 2 does not load our runsc:\n%s", node.read(t, node.configPath()))
	}
	// The dead old-style table is gone: it would only mislead the next reader.
	if doc, _ := parseDocument("x", node.read(t, node.configPath())); doc != nil {
		if _, ok := lookup(doc.tree, familyGRPC.Handler("runsc")); ok {
			t.Error("the dead grpc.v1.cri runsc table is still in the file")
		}
	}
}

// TestVersion2FileWithOldRuntimesKeepsThem covers the reverse trap: in a version 2
// file whose runtimes use the old names, a runsc table under the containerd 2 names
// would replace all of them on containerd 2 (runc's SystemdCgroup lost).
func TestVersion2FileWithOldRuntimesKeepsThem(t *testing.T) {
	ctrd := requireContainerd(t, "containerd-2")
	node := newScratchNode(t, ctrd.Version, "aks-ubuntu2204.toml")
	data := node.read(t, node.configPath())
	naive := string(data) + "\n[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runsc]\n  runtime_type = \"io.containerd.runsc.v1\"\n"
	naivePath := filepath.Join(node.Dir, "naive.toml")
	if err := os.WriteFile(naivePath, []byte(naive), 0o644); err != nil {
		t.Fatal(err)
	}
	runc := append(ctrd.effectiveRuntimes(), "runc", "options", "SystemdCgroup")
	if v, _ := lookup(ctrd.dump(t, naivePath), runc); v == true {
		t.Fatal("containerd 2 kept the old-style runc next to a new-style runsc; the trap is gone?")
	}
	node.apply(t)
	if v, _ := lookup(ctrd.dump(t, node.configPath()), runc); v != true {
		t.Errorf("runc lost SystemdCgroup = true after our edit:\n%s", node.read(t, node.configPath()))
	}
}

// TestUninstallRestoresEffectiveConfig: configure, then uninstall; the real
// containerd must see exactly the config it saw before, and no runsc.
func TestUninstallRestoresEffectiveConfig(t *testing.T) {
	for _, c := range []struct{ fixture, bin, mode string }{
		{"aks-ubuntu2204.toml", "containerd-1.7", "inplace"},
		{"no-runtimes-v2.toml", "containerd-1.7", "inplace"},
		{"aks-ubuntu2404.toml", "containerd-2", "inplace"},
		{"hand-kept.toml", "containerd-2", "inplace"},
		{"aks-ubuntu2404.toml", "containerd-2", "dropin"},
		{"eks-al2023.toml", "containerd-2", "dropin"},
	} {
		t.Run(c.fixture+"/"+c.bin+"/"+c.mode, func(t *testing.T) {
			t.Parallel()
			ctrd := requireContainerd(t, c.bin)
			node := newScratchNode(t, ctrd.Version, c.fixture)
			node.C.Containerd.Mode = c.mode
			before := ctrd.dump(t, node.configPath())
			orig := node.read(t, node.configPath())
			node.apply(t)
			p, err := node.C.PlanRemove()
			if err != nil {
				t.Fatal(err)
			}
			if err := node.C.Apply(p); err != nil {
				t.Fatal(err)
			}
			if got := node.read(t, node.configPath()); string(got) != string(orig) {
				t.Errorf("config after uninstall differs from the original:\n%s", got)
			}
			if diff := cmp.Diff(before, ctrd.dump(t, node.configPath())); diff != "" {
				t.Errorf("effective config after uninstall (-before +after):\n%s", diff)
			}
			for _, p := range []string{node.C.Containerd.RuntimeConfigPath, node.C.Containerd.DropinPath} {
				if _, err := os.Stat(p); !os.IsNotExist(err) {
					t.Errorf("%s left behind", p)
				}
			}
		})
	}
}
