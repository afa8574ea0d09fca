// Package nodelock takes the node-wide locks (nodepaths.RunLock, InstallLock):
// flock(2) on a file in a root-only directory, so that the host's runs and the
// DaemonSet pod's (which mounts that directory) exclude each other, and nobody else
// can hold them. Every wait ends with its context.
package nodelock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
)

// PollEvery is how often a waiting Acquire tries again.
var PollEvery = 50 * time.Millisecond

// Acquire takes an exclusive lock on the node path under root, waiting until ctx
// ends. onWait, when set, is called once if the lock is held by someone else (to
// say why the caller waits). The returned function releases it.
//
// The lock's directory is created 0700; an existing one must be a directory (not a
// symlink) owned by root (by the caller's uid when not root) and writable by its
// owner only. The lock file is opened with O_NOFOLLOW and must be a regular file
// with that same owner. Anything else is refused, saying what to remove: a lock
// someone else can create, replace or open is a lock anyone can hold.
func Acquire(ctx context.Context, root fsroot.Root, nodePath string, onWait func()) (func(), error) {
	// The directory's parents resolve inside the root; the directory itself and the
	// file are never followed.
	dir := root.LinkPath(filepath.Dir(nodePath))
	p := filepath.Join(dir, filepath.Base(nodePath))
	if err := ensureDir(dir); err != nil {
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	fd, err := unix.Open(p, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("lock %s is a symlink: refusing it; remove it (it is recreated)", p)
		}
		return nil, fmt.Errorf("lock %s: open: %w", p, err)
	}
	f := os.NewFile(uintptr(fd), p)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		f.Close()
		return nil, fmt.Errorf("lock %s is not a regular file: refusing it; remove it (it is recreated)", p)
	}
	if int(st.Uid) != owner() {
		f.Close()
		return nil, fmt.Errorf("lock %s is owned by uid %d, not %d: refusing it (its owner could hold the lock); remove it (it is recreated)", p, st.Uid, owner())
	}
	waited := false
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { _ = unix.Flock(fd, unix.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", p, err)
		}
		if !waited && onWait != nil {
			onWait()
		}
		waited = true
		t := time.NewTimer(PollEvery)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, fmt.Errorf("lock %s: gave up waiting for another gvisor-bootstrap run that holds it: %w", p, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// owner is the uid that must own the lock directory and file: root on a node.
func owner() int { return os.Geteuid() }

func ensureDir(dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(dir), err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create lock directory %s: %w", dir, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("lock directory %s: %w", dir, err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("lock directory %s is not a directory (a symlink?): refusing it; remove it (it is recreated root-only)", dir)
	case int(st.Uid) != owner():
		return fmt.Errorf("lock directory %s is owned by uid %d, not %d: refusing it (its owner could hold or replace the lock); remove it (it is recreated root-only)", dir, st.Uid, owner())
	case st.Mode&0o022 != 0:
		return fmt.Errorf("lock directory %s is writable by group or others (mode %o): refusing it; `chmod 0700 %s`", dir, st.Mode&0o7777, dir)
	}
	return nil
}
