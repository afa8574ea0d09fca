package release

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var entryPoints = []string{SidecarDir, ShimName, RunscName}

// wholeRelease names the one release all entry points resolve into: each must
// lead into a directory whose runsc, shim and sidecar are exactly one release's
// files (so runsc, which looks beside its real path, finds its own sidecars),
// and that release must be the same for all. "" means no entry point resolves
// (nothing installed yet); anything else fails the test. (While a manual
// install is adopted, its files sit in two directories as the same inodes.)
func wholeRelease(t *testing.T, e *env, candidates ...string) string {
	t.Helper()
	rels := map[string]string{}
	for _, n := range entryPoints {
		real, err := filepath.EvalSymlinks(e.root.Path(bin + "/" + n))
		if err != nil {
			continue
		}
		dir := filepath.Dir(real)
		for _, c := range candidates {
			same := true
			for rel, data := range bundleFiles(c) {
				got, err := os.ReadFile(filepath.Join(dir, rel))
				same = same && err == nil && bytes.Equal(got, data)
			}
			if same {
				rels[n] = c
			}
		}
		if rels[n] == "" {
			t.Fatalf("%s resolves into %s, which holds the files of none of %v:\n%s", n, dir, candidates, listBin(e))
		}
	}
	if len(rels) == 0 {
		return ""
	}
	seen := map[string]bool{}
	for _, r := range rels {
		seen[r] = true
	}
	if len(rels) != len(entryPoints) || len(seen) != 1 {
		t.Fatalf("entry points do not resolve into one whole release: %v\n%s", rels, listBin(e))
	}
	return rels[RunscName]
}

func listBin(e *env) string {
	var b strings.Builder
	_ = filepath.Walk(e.root.Path(bin), func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			t, _ := os.Readlink(p)
			fmt.Fprintf(&b, "  %s %s\n", e.root.NodePath(p), t)
		}
		return nil
	})
	return b.String()
}

// toDirectLayout turns an installation into what earlier versions of this tool
// left: each entry point a symlink straight into the release directory, no
// .gvisor-current, and a state recording those links.
func toDirectLayout(t *testing.T, e *env) {
	t.Helper()
	st, err := LoadState(e.root)
	if err != nil {
		t.Fatal(err)
	}
	links := map[string]string{}
	for _, n := range entryPoints {
		p := e.root.LinkPath(bin + "/" + n)
		target := path.Base(st.Dir) + "/" + n
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		links[bin+"/"+n] = target
	}
	if err := os.Remove(e.root.LinkPath(bin + "/" + CurrentLink)); err != nil {
		t.Fatal(err)
	}
	st.Links = links
	data, _ := json.MarshalIndent(st, "", "  ")
	if err := os.WriteFile(e.root.Path(StatePath), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// toManualInstall replaces the bin dir with a `tar -xjf` of a bundle: real
// files, a real gvisor-bin directory, no state.
func toManualInstall(t *testing.T, e *env) {
	t.Helper()
	b := e.root.Path(bin)
	if err := os.MkdirAll(filepath.Join(b, SidecarDir), 0o755); err != nil {
		t.Fatal(err)
	}
	for rel, data := range bundleFiles("manual") {
		if err := os.WriteFile(filepath.Join(b, rel), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMigratesTheDirectLayoutOfEarlierVersions(t *testing.T) {
	e := newEnv(t)
	e.srv.AddBundle(rel1, arch, bundleFiles(rel1))
	e.srv.AddBundle(rel2, arch, bundleFiles(rel2))
	r1 := e.install(e.installer(rel1))
	toDirectLayout(t, e)

	// An installed release in the old layout verifies and is left alone: no
	// request, no write.
	if ps := e.installer(rel1).Verify(true); len(ps) != 0 {
		t.Fatalf("old layout does not verify: %v", ps)
	}
	before := snapshot(t, e.root, true)
	e.srv.ResetLog()
	if res := e.install(e.installer(rel1)); res.Changed {
		t.Error("a satisfied install in the old layout changed something")
	}
	if diff := cmp.Diff(before, snapshot(t, e.root, true)); diff != "" || len(e.srv.Requests()) != 0 {
		t.Errorf("no-op in the old layout wrote or fetched (-before +after):\n%s\n%v", diff, e.srv.Requests())
	}

	// The upgrade migrates to the static links.
	r2 := e.install(e.installer(rel2))
	for _, n := range entryPoints {
		if got, _ := os.Readlink(e.root.LinkPath(bin + "/" + n)); got != CurrentLink+"/"+n {
			t.Errorf("%s -> %s after the migration", n, got)
		}
	}
	if got, _ := os.Readlink(e.root.LinkPath(bin + "/" + CurrentLink)); got != path.Base(r2.Dir) {
		t.Errorf("%s -> %s, want %s", CurrentLink, got, path.Base(r2.Dir))
	}
	if rel := wholeRelease(t, e, rel1, rel2); rel != rel2 {
		t.Errorf("release %s after the migration", rel)
	}
	if st, _ := LoadState(e.root); st.Previous != r1.Dir {
		t.Errorf("previous %q, want %s (kept for running sandboxes)", st.Previous, r1.Dir)
	}
	if _, err := os.Stat(e.root.Path(r1.Dir + "/runsc")); err != nil {
		t.Errorf("previous release removed: %v", err)
	}
	if ps := e.installer(rel2).Verify(true); len(ps) != 0 {
		t.Errorf("verify after the migration: %v", ps)
	}
	noLeftovers(t, e, path.Base(r1.Dir), path.Base(r2.Dir))
}

// noLeftovers asserts the bin dir holds the final layout and the given release
// directories only.
func noLeftovers(t *testing.T, e *env, dirs ...string) {
	t.Helper()
	entries, _ := os.ReadDir(e.root.Path(bin))
	var names []string
	for _, en := range entries {
		names = append(names, en.Name())
	}
	want := append([]string{CurrentLink, ShimName, SidecarDir}, dirs...)
	want = append(want, RunscName)
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("bin dir (-want +got):\n%s%s", diff, listBin(e))
	}
}

// crash runs an install that dies (a panic, no cleanup past the deferred
// unlocks) at point, and reports whether it got there.
func crash(e *env, in *Installer, point string) bool {
	reached := false
	testHookAtPoint = func(p string) {
		if p == point {
			reached = true
			panic("simulated crash at " + p)
		}
	}
	defer func() { testHookAtPoint = nil }()
	func() {
		defer func() { _ = recover() }()
		_, _ = in.Install(context.Background(), false)
	}()
	return reached
}

// Each starting layout, killed at each step of the placement: afterwards every
// entry point resolves into ONE directory holding one whole release, old or new
// (none at all on a first install), and the next install finishes the job.
func TestCrashAtEveryPlacementStep(t *testing.T) {
	migration := []string{"release-dir-renamed", "release-current-pinned",
		"release-linked:gvisor-bin", "release-linked:containerd-shim-runsc-v1", "release-linked:runsc",
		"release-current-swapped", "release-state-saved"}
	cases := []struct {
		name   string
		setup  func(t *testing.T, e *env)
		old    string
		points []string
	}{
		{"first install", func(*testing.T, *env) {}, "", []string{"release-dir-renamed",
			"release-linked:gvisor-bin", "release-linked:containerd-shim-runsc-v1", "release-linked:runsc",
			"release-current-swapped", "release-state-saved"}},
		{"upgrade", func(t *testing.T, e *env) { e.install(e.installer(rel1)) }, rel1,
			[]string{"release-dir-renamed", "release-current-swapped", "release-state-saved"}},
		{"upgrade from the direct layout", func(t *testing.T, e *env) { e.install(e.installer(rel1)); toDirectLayout(t, e) }, rel1, migration},
		{"replace a manual install", toManualInstall, "manual", migration},
	}
	for _, c := range cases {
		for _, point := range c.points {
			t.Run(c.name+"/"+point, func(t *testing.T) {
				e := newEnv(t)
				e.srv.AddBundle(rel1, arch, bundleFiles(rel1))
				e.srv.AddBundle(rel2, arch, bundleFiles(rel2))
				c.setup(t, e)
				if !crash(e, e.installer(rel2), point) {
					t.Fatalf("the install never reached %s:\n%s", point, e.logs)
				}
				got := wholeRelease(t, e, c.old, rel2)
				t.Logf("crash at %s: release %q\n%s", point, got, listBin(e))
				if point == "release-current-swapped" && got != rel2 {
					t.Errorf("after the swap the release is %q, want %s", got, rel2)
				}
				if point == "release-dir-renamed" && got != c.old {
					t.Errorf("before any swap the release is %q, want %s", got, c.old)
				}

				// Kill again during the recovery run at the same point where
				// it is reached, then finish.
				crash(e, e.installer(rel2), point)
				wholeRelease(t, e, c.old, rel2)
				r := e.install(e.installer(rel2))
				if rel := wholeRelease(t, e, c.old, rel2); rel != rel2 {
					t.Fatalf("after the next install: %q", rel)
				}
				if ps := e.installer(rel2).Verify(true); len(ps) != 0 {
					t.Errorf("verify after the next install: %v", ps)
				}
				if point == "release-state-saved" {
					return // committed: the next install is a no-op, which writes nothing
				}
				var keep []string
				if st, _ := LoadState(e.root); st.Previous != "" {
					keep = append(keep, path.Base(st.Previous))
				}
				keep = append(keep, path.Base(r.Dir))
				if len(keep) == 2 && keep[0] > keep[1] {
					keep[0], keep[1] = keep[1], keep[0]
				}
				noLeftovers(t, e, keep...)
			})
		}
	}
}

// A failure (not a crash) in the middle of a migration restores the old
// layout exactly.
func TestFailureDuringMigrationRestoresTheOldLayout(t *testing.T) {
	for _, point := range []string{"release-current-pinned", "release-linked:containerd-shim-runsc-v1", "release-current-swapped"} {
		t.Run(point, func(t *testing.T) {
			e := newEnv(t)
			e.srv.AddBundle(rel1, arch, bundleFiles(rel1))
			e.srv.AddBundle(rel2, arch, bundleFiles(rel2))
			e.install(e.installer(rel1))
			toDirectLayout(t, e)
			before := snapshot(t, e.root, false)
			sp := e.root.Path(StatePath)
			saved, err := os.ReadFile(sp)
			if err != nil {
				t.Fatal(err)
			}
			// Once the install reaches point, the state cannot be written: a
			// directory stands where the file goes. Every later step fails
			// at "record the installation" and must undo everything.
			reached := false
			testHookAtPoint = func(p string) {
				if p == point {
					reached = true
					os.Remove(sp)
					if err := os.MkdirAll(filepath.Join(sp, "block"), 0o755); err != nil {
						t.Error(err)
					}
				}
			}
			_, err = e.installer(rel2).Install(context.Background(), false)
			testHookAtPoint = nil
			t.Logf("error: %v", err)
			if !reached || err == nil || !strings.Contains(err.Error(), "previous installation was restored") {
				t.Fatalf("reached %v, err %v", reached, err)
			}
			os.RemoveAll(sp)
			if err := os.WriteFile(sp, saved, 0o644); err != nil {
				t.Fatal(err)
			}
			e.unchanged(before)
			if got := e.runInstalled(RunscName); !strings.Contains(got, rel1) {
				t.Errorf("runsc is %q", got)
			}
		})
	}
}

// An entry point that is neither a file nor a link (a directory named runsc)
// is not replaced: a clear error, and nothing changes.
func TestRefusesToReplaceADirectoryNamedRunsc(t *testing.T) {
	e := newEnv(t)
	e.srv.AddBundle(rel1, arch, bundleFiles(rel1))
	if err := os.MkdirAll(e.root.Path(bin+"/runsc/keep"), 0o755); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, e.root, false)
	_, err := e.installer(rel1).Install(context.Background(), false)
	t.Logf("error: %v", err)
	if err == nil || !strings.Contains(err.Error(), e.root.Path(bin+"/runsc")+" is a directory") || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("err %v", err)
	}
	e.unchanged(before)
}
