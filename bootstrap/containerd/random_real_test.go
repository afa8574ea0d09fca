package containerd

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// randomConfig writes a containerd config mixing the shapes seen in the field:
// a version (or none), runtimes under one or two CRI table namings, written as
// [tables], dotted keys or inline tables, a stale runsc somewhere, comments and
// odd spacing. Many are legal TOML that containerd reads in surprising ways; that
// is the point.
func randomConfig(r *rand.Rand, major int) string {
	var b strings.Builder
	versions := []int{0, 1, 2}
	if major >= 2 {
		versions = []int{0, 1, 2, 2, 2, 3, 4}
	}
	ver := versions[r.IntN(len(versions))]
	if r.IntN(3) == 0 {
		b.WriteString("# generated test config\n")
	}
	if ver > 0 {
		fmt.Fprintf(&b, "version = %d\n", ver)
	}
	if r.IntN(2) == 0 {
		b.WriteString("oom_score = -999\n")
	}
	plugins := []string{`"io.containerd.grpc.v1.cri"`, `'io.containerd.cri.v1.runtime'`, `cri`}
	pick := func() string {
		switch {
		case ver >= 3:
			return plugins[1]
		case ver == 2 && major >= 2:
			return plugins[r.IntN(2)]
		case ver == 2:
			return plugins[0]
		case major >= 2:
			return plugins[r.IntN(3)]
		default:
			return plugins[2]
		}
	}
	if r.IntN(2) == 0 {
		img := pick()
		if strings.Contains(img, "cri.v1.runtime") {
			b.WriteString("[plugins.\"io.containerd.cri.v1.images\".pinned_images]\n  sandbox = \"example.com/pause:1\"\n")
		} else {
			fmt.Fprintf(&b, "[plugins.%s]\n  sandbox_image = \"example.com/pause:1\"\n", img)
		}
	}
	families := 1 + r.IntN(2)
	used := map[string]bool{}
	for i := 0; i < families; i++ {
		p := pick()
		if used[p] {
			continue
		}
		used[p] = true
		systemd := []string{"true", "false"}[r.IntN(2)]
		if r.IntN(4) == 0 {
			b.WriteString("\n# runtimes\n")
		}
		switch r.IntN(4) {
		case 0:
			fmt.Fprintf(&b, "[plugins.%s.containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n[plugins.%s.containerd.runtimes.runc.options]\n  SystemdCgroup = %s\n", p, p, systemd)
		case 1:
			fmt.Fprintf(&b, "[plugins.%s.containerd]\n  default_runtime_name = \"runc\"\n  runtimes.runc.runtime_type = \"io.containerd.runc.v2\"\n  runtimes.runc.options.SystemdCgroup = %s\n", p, systemd)
		case 2:
			fmt.Fprintf(&b, "[ plugins . %s . containerd . runtimes ]   # spaced\n  runc = { runtime_type = \"io.containerd.runc.v2\", options = { SystemdCgroup = %s } }\n", p, systemd)
		case 3:
			fmt.Fprintf(&b, "[plugins.%s]\n  containerd.snapshotter = \"overlayfs\"\n", p)
		}
		if q := pick(); r.IntN(3) == 0 && !used[q+"runsc"] {
			used[q+"runsc"] = true
			switch r.IntN(3) {
			case 0:
				fmt.Fprintf(&b, "[plugins.%s.containerd.runtimes.runsc]\n  runtime_type = \"io.containerd.runsc.v1\"\n  # stale\n[plugins.%s.containerd.runtimes.runsc.options]\n  ConfigPath = \"/old/runsc.toml\"\n", q, q)
			case 1:
				fmt.Fprintf(&b, "[plugins.%s.containerd.runtimes.runsc]\n  options.TypeUrl = 7\n", q)
			case 2:
				fmt.Fprintf(&b, "[plugins.%s.containerd.runtimes.'runsc-kvm']\n  runtime_type = \"io.containerd.runsc.v1\"\n", q)
			}
		}
	}
	if r.IntN(2) == 0 {
		b.WriteString("[metrics]\n  address = \"127.0.0.1:1338\"\n")
	}
	return b.String()
}

// TestRandomConfigsWithRealContainerd runs the whole contract on generated configs
// against both real containerd releases: runsc is loaded, nothing else changes,
// systemd-cgroup follows the effective runc, a second run is a no-op. A config the
// editor refuses must be one it cannot edit safely (the error says so).
func TestRandomConfigsWithRealContainerd(t *testing.T) {
	n := 150
	if testing.Short() {
		n = 5
	}
	for _, bin := range []string{"containerd-1.7", "containerd-2"} {
		ctrd := requireContainerd(t, bin)
		r := rand.New(rand.NewPCG(7, uint64(ctrd.Version.Major)))
		for i := 0; i < n; i++ {
			cfg := randomConfig(r, ctrd.Version.Major)
			t.Run(fmt.Sprintf("%s/%02d", bin, i), func(t *testing.T) {
				t.Parallel()
				node := newScratchNode(t, ctrd.Version, "")
				if i%2 == 1 && ctrd.Version.Major >= 2 && strings.Contains(cfg, "version = ") && !strings.Contains(cfg, "version = 1") {
					node.C.Containerd.Mode = "dropin"
				}
				if err := os.WriteFile(node.configPath(), []byte(cfg), 0o644); err != nil {
					t.Fatal(err)
				}
				before, ok := ctrd.tryDump(node.configPath())
				if !ok {
					t.Skipf("containerd %s refuses this generated config itself:\n%s", ctrd.Version, cfg)
				}
				p, err := node.C.Plan()
				if err != nil {
					if !containsAny(err.Error(), "inline", "invalid TOML", "replaces the second with the first", "which it ignores today") {
						t.Fatalf("refused: %v\n%s", err, cfg)
					}
					return
				}
				if err := node.C.Apply(p); err != nil {
					t.Fatal(err)
				}
				after := ctrd.dump(t, node.configPath())
				runtimes := ctrd.effectiveRuntimes()
				got, ok := lookup(after, append(runtimes, "runsc"))
				if !ok {
					t.Fatalf("runsc not loaded (dialect %s: %s)\ninput:\n%s\noutput:\n%s", p.Dialect, p.Dialect.Reason, cfg, node.read(t, node.configPath()))
				}
				m := got.(map[string]any)
				opts, _ := m["options"].(map[string]any)
				if m["runtime_type"] != RuntimeType || opts["TypeUrl"] != OptionsTypeURL || opts["ConfigPath"] != node.C.Containerd.RuntimeConfigPath {
					t.Errorf("effective runsc %v", m)
				}
				for _, h := range managedHandlers {
					deletePath(before, append(runtimes, h))
					deletePath(after, append(runtimes, h))
				}
				if node.C.Containerd.Mode == "dropin" {
					delete(before, "imports")
					delete(after, "imports")
				}
				if diff := cmp.Diff(before, after); diff != "" {
					t.Fatalf("effective config changed (dialect %s: %s) (-before +after):\n%s\ninput:\n%s\noutput:\n%s", p.Dialect, p.Dialect.Reason, diff, cfg, node.read(t, node.configPath()))
				}
				systemd, _ := lookup(after, append(runtimes, "runc", "options", "SystemdCgroup"))
				checkOptionsFile(t, node.read(t, node.C.Containerd.RuntimeConfigPath), systemd == true)
				if again, err := node.C.Plan(); err != nil || again.Changed() {
					t.Errorf("second run: %v %+v", err, again.Changes)
				}
			})
		}
	}
}

func containsAny(s string, parts ...string) bool {
	for _, p := range parts {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}
