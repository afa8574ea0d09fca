// Package fsroot resolves node paths under a root directory and writes files there
// atomically. Every operation that touches the node goes through a Root, so tests,
// image builds (a mounted image folder) and the DaemonSet (the host at /host) run the
// same code as a boot on the node itself.
package fsroot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/google/renameio/v2"
)

// Root is the directory that stands for the node's "/".
type Root struct{ dir string }

// New returns a Root for dir ("" means "/").
func New(dir string) Root {
	if dir == "" {
		dir = "/"
	}
	return Root{dir: filepath.Clean(dir)}
}

// Dir is the root directory itself.
func (r Root) Dir() string { return r.dir }

// IsHost reports whether the root is the running system's own "/".
func (r Root) IsHost() bool { return r.dir == "/" }

// Path maps a node path (for example /etc/containerd/config.toml) to the path under
// the root, resolving every symlink on the way as a chroot into the root would:
// an absolute target starts again at the root and ".." never climbs above it, so
// R/etc/containerd -> /elsewhere (or -> ../../../../elsewhere) resolves to
// R/elsewhere, never to the host's /elsewhere. The last component is followed too:
// Path is what open(2) on the node reads. Relative paths are taken as relative to
// the node's "/". Missing components are kept as written (a file about to be
// created). The host's own root resolves the same way.
//
// Resolution happens at each call; it protects against symlinks present on the
// node (images, other agents, a misconfigured host), not against a process that
// swaps directories for links while we run: that process is root already.
func (r Root) Path(nodePath string) string {
	p, err := r.Resolve(nodePath)
	if err != nil {
		return unresolvable(r.lexical(nodePath))
	}
	return p
}

// LinkPath is Path for the entry itself: every directory on the way is resolved
// inside the root, the last component is not followed. Use it for Lstat,
// Readlink, Symlink, Remove and Rename, which act on a link, not on its target.
func (r Root) LinkPath(nodePath string) string {
	clean := filepath.Join("/", nodePath)
	if clean == "/" {
		return r.dir
	}
	dir := r.Path(filepath.Dir(clean))
	return filepath.Join(dir, filepath.Base(clean))
}

// Resolve is Path with the error: a symlink loop, or a component that cannot be
// read, is an error instead of a guess.
func (r Root) Resolve(nodePath string) (string, error) {
	// On the host's own root too: callers compare resolved paths (the release's
	// .gvisor-current link against its directory), so "/" must resolve exactly as
	// a temporary root does, not only be cleaned.
	p, err := securejoin.SecureJoin(r.dir, filepath.Join("/", nodePath))
	if err != nil {
		return "", fmt.Errorf("resolve %s under the root %s: %w", filepath.Join("/", nodePath), r.dir, err)
	}
	return p, nil
}

func (r Root) lexical(nodePath string) string {
	if r.dir == "/" {
		return filepath.Join("/", nodePath)
	}
	return filepath.Join(r.dir, filepath.Join("/", nodePath))
}

// unresolvable turns a path that could not be resolved inside the root into one
// every system call refuses (EINVAL: it holds a NUL byte), so a caller of Path
// fails closed instead of following the link out of the root.
func unresolvable(p string) string {
	return p + "\x00(symlinks under it do not resolve inside the root)"
}

// NodePath is the inverse of Path: the node's view of a path under the root.
func (r Root) NodePath(p string) string {
	if r.dir == "/" {
		return p
	}
	rel, err := filepath.Rel(r.dir, p)
	if err != nil || strings.HasPrefix(rel, "..") {
		return p
	}
	return filepath.Join("/", rel)
}

// ReadFile reads a node file. A missing file is reported with fs.ErrNotExist.
func (r Root) ReadFile(nodePath string) ([]byte, error) {
	p, err := r.Resolve(nodePath)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}

// Exists reports whether the node path exists (following symlinks).
func (r Root) Exists(nodePath string) bool {
	_, err := os.Stat(r.Path(nodePath))
	return err == nil
}

// Owner is a file's mode and ownership to apply on write.
type Owner struct {
	Mode     fs.FileMode
	UID, GID int
}

// WriteOptions control WriteFile. The zero value writes mode 0644 owned by the
// writer, or keeps the mode and owner of the file being replaced.
type WriteOptions struct {
	// Mode is used for a new file; an existing file keeps its own mode unless
	// ForceMode is set.
	Mode      fs.FileMode
	ForceMode bool
}

// WriteFile replaces a node file atomically: it writes a temporary file in the same
// directory, applies mode and owner, fsyncs it, renames it over the target and fsyncs
// the directory. A crash at any point leaves either the old or the new content.
// An existing file keeps its mode and owner. Missing parent directories are created
// with mode 0755.
func (r Root) WriteFile(nodePath string, data []byte, opt WriteOptions) error {
	// The directory is resolved inside the root; the entry itself is replaced by
	// the rename (a symlink there is replaced, as rename(2) does on the node).
	dir, err := r.Resolve(filepath.Dir(filepath.Join("/", nodePath)))
	if err != nil {
		return err
	}
	target := filepath.Join(dir, filepath.Base(filepath.Join("/", nodePath)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create directory %s: %w", dir, err)
	}
	mode := opt.Mode
	if mode == 0 {
		mode = 0o644
	}
	uid, gid := -1, -1
	if st, err := os.Stat(r.Path(nodePath)); err == nil {
		if !opt.ForceMode {
			mode = st.Mode().Perm()
		}
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(sys.Uid), int(sys.Gid)
		}
	}
	pf, err := renameio.NewPendingFile(target, renameio.WithStaticPermissions(mode), renameio.WithTempDir(dir))
	if err != nil {
		return fmt.Errorf("write %s: create temporary file: %w", target, err)
	}
	defer pf.Cleanup()
	if _, err := pf.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", target, err)
	}
	if uid >= 0 && os.Geteuid() == 0 {
		if err := pf.Chown(uid, gid); err != nil {
			return fmt.Errorf("write %s: keep owner %d:%d: %w", target, uid, gid, err)
		}
	}
	if err := pf.CloseAtomicallyReplace(); err != nil {
		return fmt.Errorf("write %s: replace: %w", target, err)
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory so that a rename inside it survives a crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// Remove deletes a node file; a missing file is not an error.
func (r Root) Remove(nodePath string) error {
	p := r.LinkPath(nodePath)
	err := os.Remove(p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}
