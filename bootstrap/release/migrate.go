package release

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Making the entry points static (see place.go for the layout).
//
// Before an entry point is replaced by its static link through .gvisor-current,
// .gvisor-current must already lead to what that entry point shows now;
// otherwise replacing it would switch that one entry point to another release
// while its neighbours stay, the very mix the layout exists to prevent. So:
//
//   - entry points that are per-release links (gvisor.<release>-<hash>/<name>,
//     written by earlier versions of this tool) into ONE release directory, or
//     already static: .gvisor-current is pointed at that directory;
//   - anything else (a manual `tar -xjf` install of real files, a foreign
//     symlink, per-release links into two directories after an older version
//     crashed): the entry points are adopted into a new directory
//     .gvisor-adopted-<random> (files hard-linked, the gvisor-bin directory
//     hard-linked file by file, symlinks re-created to resolve as before), and
//     .gvisor-current is pointed there;
//   - nothing visible (a first install): nothing is pinned; the static links
//     dangle until .gvisor-current is created, so all appear at once.

// entry kinds, as found in BinDir.
const (
	entryAbsent  = iota
	entryStatic  // symlink .gvisor-current/<name>
	entryDirect  // symlink <release dir>/<name>, dir recorded
	entryFlat    // a regular file (runsc, shim) or a directory (gvisor-bin)
	entryForeign // any other symlink
)

type entry struct {
	name, target string
	kind         int
	dir          string // the release directory of an entryDirect
}

// inspectEntry classifies BinDir/<name>.
func inspectEntry(binDir, name string) (entry, error) {
	p := filepath.Join(binDir, name)
	e := entry{name: name}
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return e, nil
	case err != nil:
		return e, fmt.Errorf("inspect %s: %w", p, err)
	case fi.Mode()&os.ModeSymlink != 0:
		t, err := os.Readlink(p)
		if err != nil {
			return e, fmt.Errorf("inspect %s: %w", p, err)
		}
		e.target = t
		if t == staticTarget(name) {
			e.kind = entryStatic
			return e, nil
		}
		if d, rest, ok := strings.Cut(t, "/"); ok && rest == name && releaseDirName.MatchString(d) && isDir(filepath.Join(binDir, d)) {
			e.kind, e.dir = entryDirect, d
			return e, nil
		}
		e.kind = entryForeign
		return e, nil
	case fi.Mode().IsRegular() && name != SidecarDir, fi.IsDir() && name == SidecarDir:
		e.kind = entryFlat
		return e, nil
	}
	what := "special file"
	if fi.IsDir() {
		what = "directory"
	} else if fi.Mode().IsRegular() {
		what = "regular file"
	}
	return e, fmt.Errorf("%s is a %s, not something gvisor-bootstrap can replace; move it out of the way and run `gvisor-bootstrap install` again", p, what)
}

// migration is the steps that make every entry point static, in order.
type migration struct {
	swaps   []*swap
	adopted string // the directory adopting a manual install, if one was made
}

// planMigration inspects BinDir and prepares the swaps that make names static
// without changing what any entry point resolves to. It writes nothing unless
// a manual install must be adopted (a new hidden directory, removed on error).
func planMigration(binDir string, names []string) (migration, error) {
	var m migration
	cur, curOK := currentTarget(binDir)
	var entries []entry
	dirs := map[string]bool{}
	adopt := false
	for _, n := range names {
		e, err := inspectEntry(binDir, n)
		if err != nil {
			return m, err
		}
		entries = append(entries, e)
		switch e.kind {
		case entryStatic:
			if curOK {
				dirs[cur] = true
			}
		case entryDirect:
			dirs[e.dir] = true
		case entryFlat, entryForeign:
			adopt = true
		}
	}
	pin := ""
	switch {
	case adopt || len(dirs) > 1:
		dir, err := adoptEntries(binDir, entries, cur, curOK)
		if err != nil {
			return m, err
		}
		m.adopted, pin = dir, filepath.Base(dir)
	case len(dirs) == 1:
		for d := range dirs {
			pin = d
		}
	}
	if pin != "" && !(curOK && pin == cur) {
		m.swaps = append(m.swaps, &swap{name: CurrentLink, target: pin, point: "release-current-pinned"})
	}
	for _, e := range entries {
		if e.kind != entryStatic {
			m.swaps = append(m.swaps, &swap{name: e.name, target: staticTarget(e.name), point: "release-linked:" + e.name})
		}
	}
	return m, nil
}

// currentTarget reads .gvisor-current; ok only if it names a directory in binDir.
func currentTarget(binDir string) (string, bool) {
	t, err := os.Readlink(filepath.Join(binDir, CurrentLink))
	if err != nil || strings.Contains(t, "/") || t == "." || t == ".." || !isDir(filepath.Join(binDir, t)) {
		return t, false
	}
	return t, true
}

// adoptEntries makes a directory in binDir whose names resolve exactly as the
// entry points do now: real files are hard-linked (copied if the filesystem
// refuses), symlinks are re-created relative to the new directory.
func adoptEntries(binDir string, entries []entry, cur string, curOK bool) (string, error) {
	dir, err := os.MkdirTemp(binDir, adoptedPrefix)
	if err != nil {
		return "", fmt.Errorf("adopt the installed gVisor files in %s: %w", binDir, err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("adopt the installed gVisor files in %s: %w", binDir, err)
	}
	for _, e := range entries {
		src, dst := filepath.Join(binDir, e.name), filepath.Join(dir, e.name)
		switch e.kind {
		case entryStatic:
			if curOK {
				err = os.Symlink("../"+cur+"/"+e.name, dst)
			}
		case entryDirect, entryForeign:
			t := e.target
			if !filepath.IsAbs(t) {
				t = "../" + t // dir is a child of binDir: resolves as from binDir
			}
			err = os.Symlink(t, dst)
		case entryFlat:
			err = linkTree(src, dst)
		}
		if err != nil {
			os.RemoveAll(dir)
			return "", fmt.Errorf("adopt %s into %s: %w", src, dir, err)
		}
	}
	if err := syncTree(dir); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("adopt the installed gVisor files into %s: %w", dir, err)
	}
	return dir, nil
}

// linkTree hard-links a file, or a directory's files recursively, to dst.
func linkTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.Mkdir(to, info.Mode().Perm())
		case d.Type()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(t, to)
		case d.Type().IsRegular():
			if err := os.Link(p, to); err == nil {
				return nil
			}
			return copyFile(p, to, info.Mode().Perm())
		}
		return fmt.Errorf("%s is a %s", p, d.Type())
	})
}

func copyFile(from, to string, mode fs.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

func isDir(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.IsDir()
}
