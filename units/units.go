// Package units holds gvisor-bootstrap's systemd units and installs them under a root
// directory: the node itself, or an image folder at build time (no running systemd
// needed). Enabling is done the way `systemctl enable` does it, by creating the
// .wants symlinks named in each unit's [Install] section; the caller runs
// `systemctl daemon-reload` when the root is the running system.
//
// The units (see the comments in each file for why they are shaped so):
//   - gvisor-bootstrap.service: `run` on every boot, before containerd and kubelet.
//   - gvisor-bootstrap.path: re-runs the reconcile (gvisor-bootstrap-repair.service)
//     when /etc/containerd/config.toml is rewritten.
//   - kubelet.service.d/10-gvisor-bootstrap.conf: `run --gate` before kubelet starts.
package units

import (
	"bufio"
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/nodepaths"
)

//go:embed gvisor-bootstrap.service gvisor-bootstrap-repair.service gvisor-bootstrap.path kubelet-10-gvisor-bootstrap.conf
var embedded embed.FS

// Node paths and unit names the units refer to.
const (
	// BinaryPath is where every unit expects the tool.
	BinaryPath = nodepaths.Binary
	// Dir is the administrator's unit directory the units are installed into.
	Dir = nodepaths.UnitDir

	BootUnit      = "gvisor-bootstrap.service"
	RepairUnit    = "gvisor-bootstrap-repair.service"
	PathUnit      = "gvisor-bootstrap.path"
	KubeletDropIn = Dir + "/kubelet.service.d/10-gvisor-bootstrap.conf"
)

// layout maps each embedded file to its node path.
var layout = []struct{ name, nodePath string }{
	{BootUnit, Dir + "/" + BootUnit},
	{RepairUnit, Dir + "/" + RepairUnit},
	{PathUnit, Dir + "/" + PathUnit},
	{"kubelet-10-gvisor-bootstrap.conf", KubeletDropIn},
}

// Files returns every unit file by node path, for example
// "/etc/systemd/system/gvisor-bootstrap.service".
func Files() map[string][]byte {
	m := make(map[string][]byte, len(layout))
	for _, f := range layout {
		data, err := embedded.ReadFile(f.name)
		if err != nil {
			panic(err) // embedded at build time; cannot happen
		}
		m[f.nodePath] = data
	}
	return m
}

// Links returns the symlinks that enable the units, link node path -> target node
// path, e.g. "/etc/systemd/system/multi-user.target.wants/gvisor-bootstrap.service" ->
// "/etc/systemd/system/gvisor-bootstrap.service". They come from WantedBy= in each
// unit's [Install] section, as `systemctl enable` would create them.
func Links() map[string]string {
	m := map[string]string{}
	for nodePath, data := range Files() {
		if path.Dir(nodePath) != Dir {
			continue // drop-ins are not enabled
		}
		for _, target := range wantedBy(data) {
			m[path.Join(Dir, target+".wants", path.Base(nodePath))] = nodePath
		}
	}
	return m
}

// wantedBy lists the WantedBy= targets in a unit's [Install] section.
func wantedBy(unit []byte) []string {
	var out []string
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(unit))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Install]" && strings.HasPrefix(line, "WantedBy="):
			out = append(out, strings.Fields(strings.TrimPrefix(line, "WantedBy="))...)
		}
	}
	return out
}

// Install writes the unit files under root (atomically; identical files are not
// touched) and creates the symlinks that enable them. It returns the node paths it
// changed (or, with dryRun, would change). A second Install changes nothing.
//
// A unit the administrator masked (its file a symlink to /dev/null) stays masked:
// it is neither written nor enabled (see Masked).
func Install(root fsroot.Root, dryRun bool) (changed []string, err error) {
	files := Files()
	masked := map[string]bool{}
	for _, p := range Masked(root) {
		masked[p] = true
	}
	for _, p := range sortedKeys(files) {
		if masked[p] {
			continue
		}
		old, err := root.ReadFile(p)
		if err == nil && bytes.Equal(old, files[p]) {
			continue
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return changed, fmt.Errorf("install unit: read %s: %w", root.Path(p), err)
		}
		changed = append(changed, p)
		if dryRun {
			continue
		}
		if err := root.WriteFile(p, files[p], fsroot.WriteOptions{Mode: 0o644, ForceMode: true}); err != nil {
			return changed, fmt.Errorf("install unit: %w", err)
		}
	}
	links := Links()
	for _, l := range sortedKeys(links) {
		if masked[links[l]] {
			continue
		}
		if cur, err := os.Readlink(root.LinkPath(l)); err == nil && cur == links[l] {
			continue
		}
		changed = append(changed, l)
		if dryRun {
			continue
		}
		if err := symlinkAtomic(links[l], root.LinkPath(l)); err != nil {
			return changed, fmt.Errorf("enable unit: %w; check that %s is writable", err, filepath.Dir(root.LinkPath(l)))
		}
	}
	return changed, nil
}

// Masked lists the node paths of the product's unit files that the administrator
// masked (`systemctl mask`: a symlink to /dev/null in the unit directory).
func Masked(root fsroot.Root) []string {
	var out []string
	for _, p := range sortedKeys(Files()) {
		if t, err := os.Readlink(root.LinkPath(p)); err == nil && t == "/dev/null" {
			out = append(out, p)
		}
	}
	return out
}

// Uninstall removes the enabling symlinks and the unit files. It returns the node
// paths it removed (or, with dryRun, would remove).
func Uninstall(root fsroot.Root, dryRun bool) (removed []string, err error) {
	links := Links()
	for _, l := range sortedKeys(links) {
		if _, err := os.Lstat(root.LinkPath(l)); err != nil {
			continue
		}
		removed = append(removed, l)
		if !dryRun {
			if err := root.Remove(l); err != nil {
				return removed, fmt.Errorf("disable unit: %w", err)
			}
		}
	}
	masked := map[string]bool{}
	for _, p := range Masked(root) {
		masked[p] = true // the administrator's, not ours
	}
	for _, p := range sortedKeys(Files()) {
		if _, err := os.Lstat(root.LinkPath(p)); err != nil || masked[p] {
			continue
		}
		removed = append(removed, p)
		if !dryRun {
			if err := root.Remove(p); err != nil {
				return removed, fmt.Errorf("remove unit: %w", err)
			}
		}
	}
	if !dryRun {
		// The drop-in directory is ours only if we left it empty; Remove fails on a
		// directory that still holds someone else's drop-in, which is what we want.
		_ = os.Remove(root.LinkPath(path.Dir(KubeletDropIn)))
	}
	return removed, nil
}

// symlinkAtomic points link at target, replacing whatever is there with one rename.
func symlinkAtomic(target, link string) error {
	dir := filepath.Dir(link)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create directory %s: %w", dir, err)
	}
	tmp := filepath.Join(dir, "."+filepath.Base(link)+".gvb-tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("symlink %s -> %s: %w", link, target, err)
	}
	if err := os.Rename(tmp, link); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("symlink %s -> %s: %w", link, target, err)
	}
	return fsroot.SyncDir(dir)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
