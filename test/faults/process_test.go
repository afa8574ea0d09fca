package faults

import (
	"encoding/json"
	"os"
	"path"
	"path/filepath"
	"testing"
)

// The fault points of `run` that a node root without systemd reaches, in the order
// run passes them (the restart points need a service manager: systemd_test.go).
// The release points are those of an upgrade of a release this tool installed:
// the entry points already link through .gvisor-current, so one rename switches
// them all (bootstrap/release/place.go).
var runPoints = []string{
	"release-downloaded",        // fetched and verified, nothing placed yet
	"release-dir-renamed",       // versioned directory in place, nothing switched
	"release-current-swapped",   // .gvisor-current switched: every entry point is new, state not yet written
	"release-state-saved",       // committed, old backups not yet removed
	"containerd-backup-written", // original containerd config kept for uninstall
	"containerd-before-write:/etc/containerd/runsc.toml",
	"containerd-after-write:/etc/containerd/runsc.toml",
	"containerd-before-write:/etc/containerd/config.toml",
	"containerd-after-write:/etc/containerd/config.toml",
	"reconcile-config-done", // config written and fingerprinted, before restart/verify
}

// linkPoints are where the static entry points are put in place, one by one:
// on a first install (dangling until .gvisor-current exists) and when migrating.
var linkPoints = []string{
	"release-linked:gvisor-bin",
	"release-linked:containerd-shim-runsc-v1",
	"release-linked:runsc",
}

// firstInstallPoints: nothing installed yet.
var firstInstallPoints = concat(runPoints[:2], linkPoints, runPoints[2:4])

// migrationPoints: entry points in another layout (earlier versions' per-release
// links, a manual install): .gvisor-current is first pinned to what they show.
var migrationPoints = concat(runPoints[:2], []string{"release-current-pinned"}, linkPoints, runPoints[2:4])

func concat(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// killAt runs `run` with a crash at point and asserts the process got there.
func (n *node) killAt(point string) {
	n.t.Helper()
	r := n.exec([]string{"GVB_FAULTPOINT=" + point}, "run")
	if !r.killed {
		n.t.Fatalf("the run never reached fault point %s: %s", point, r)
	}
}

// TestSIGKILLAtEveryStepOfRun kills an upgrade (old release installed, config
// without runsc) at each fault point. Afterwards the binaries are wholly the old
// or wholly the new release, containerd's config is byte-equal to the old or the
// new file, and the next run completes the job.
func TestSIGKILLAtEveryStepOfRun(t *testing.T) {
	newConfig, _ := wantNew(t)
	old := []byte(oldContainerdConfig)
	for _, point := range runPoints {
		t.Run(point, func(t *testing.T) {
			n := newNode(t)
			n.install(oldRel)
			n.killAt(point)
			bins, conf := n.binState(), n.configState(old, newConfig)
			t.Logf("killed at %s: binaries %s, config %s", point, bins, conf)
			if bins == "" {
				t.Fatal("no release installed after the crash")
			}
			n.completes(newConfig)
		})
	}
}

// TestSIGKILLDuringFirstInstall: a node with nothing installed yet, killed while
// the first release is being placed, has either no entry points or all of them.
func TestSIGKILLDuringFirstInstall(t *testing.T) {
	newConfig, _ := wantNew(t)
	for _, point := range firstInstallPoints {
		t.Run(point, func(t *testing.T) {
			n := newNode(t)
			n.killAt(point)
			t.Logf("killed at %s: binaries %q", point, n.binState())
			n.configState([]byte(oldContainerdConfig), newConfig)
			n.completes(newConfig)
		})
	}
}

// TestSIGKILLDuringMigration kills the first upgrade of a node whose entry points
// are in another layout at each step: the per-release links earlier versions of
// the tool made (runsc -> gvisor.<release>-<hash>/runsc, no .gvisor-current), and
// a manual `tar -xjf` of the bundle (real files, no state). Every step leaves one
// whole release, and the next run completes the job.
func TestSIGKILLDuringMigration(t *testing.T) {
	newConfig, _ := wantNew(t)
	layouts := map[string]func(n *node){
		"per-release links": func(n *node) { n.install(oldRel); n.toDirectLayout() },
		"manual install":    func(n *node) { n.toManualInstall(oldRel) },
	}
	for name, setup := range layouts {
		for _, point := range migrationPoints {
			t.Run(name+"/"+point, func(t *testing.T) {
				n := newNode(t)
				setup(n)
				if b := n.binState(); b != oldRel {
					t.Fatalf("setup: binaries %q", b)
				}
				n.killAt(point)
				bins := n.binState()
				t.Logf("killed at %s: binaries %s\n%s", point, bins, n.listBin())
				if bins == "" {
					t.Fatal("no release installed after the crash")
				}
				n.completes(newConfig)
			})
		}
	}
}

// toDirectLayout rewrites an installation into the layout of earlier versions:
// each entry point a symlink straight into the release directory, no
// .gvisor-current, and a state recording those links.
func (n *node) toDirectLayout() {
	n.t.Helper()
	const statePath = "/var/lib/gvisor-bootstrap/release.json"
	var st map[string]any
	if err := json.Unmarshal(n.read(statePath), &st); err != nil {
		n.t.Fatal(err)
	}
	dir, _ := st["dir"].(string)
	links := map[string]string{}
	for _, name := range entryPoints {
		p := n.root.LinkPath("/usr/local/bin/" + name)
		target := path.Base(dir) + "/" + name
		if err := os.Remove(p); err != nil {
			n.t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			n.t.Fatal(err)
		}
		links["/usr/local/bin/"+name] = target
	}
	if err := os.Remove(n.root.LinkPath("/usr/local/bin/.gvisor-current")); err != nil {
		n.t.Fatal(err)
	}
	st["links"] = links
	data, _ := json.Marshal(st)
	n.writeFile(statePath, string(data), 0o644)
}

// toManualInstall unpacks a release's files straight into the bin directory.
func (n *node) toManualInstall(rel string) {
	n.t.Helper()
	for name, data := range releaseFiles(rel) {
		n.writeFile(filepath.Join("/usr/local/bin", name), string(data), 0o755)
	}
}
