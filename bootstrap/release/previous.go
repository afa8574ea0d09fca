package release

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/proctable"
)

// The previous release's directory (State.Previous) is kept after an upgrade
// for the sandboxes and shims still running from it: they execute its runsc,
// its shim and its gvisor-bin/ sidecars (/proc/<pid>/exe points into it). Every
// run (an upgrade, a repair or a no-op) looks once whether a process still
// executes from it; when none does, the directory is removed and the state
// records Previous "". When the process table cannot tell (under --root
// without the node's procfs at <root>/proc, as in the DaemonSet's pod; a
// process that may not be inspected), the directory is kept: removing it under
// a running sandbox would break that sandbox's checkpoint and metrics.
//
// A no-op run with no previous directory reads nothing more; with one in use,
// it scans /proc once and writes nothing.

// procs is the process table the previous directory is checked against.
func (i *Installer) procs() proctable.Table {
	if i.Procs != nil {
		return i.Procs
	}
	return proctable.Of(i.Root)
}

// dropUnusedPrevious removes the previous release's directory when no process
// executes from it. locked says whether the caller holds the install lock;
// otherwise it is taken (only when there is something to remove) and the
// state and process table are read again under it.
func (i *Installer) dropUnusedPrevious(ctx context.Context, st State, locked bool) {
	if !i.previousUnused(st) {
		return
	}
	if !locked {
		unlock, err := i.lockInstall(ctx)
		if err != nil {
			i.log().Warn("keeping the previous release directory: could not take the install lock", "dir", st.Previous, "error", err)
			return
		}
		defer unlock()
	}
	// Under the lock: another run may have upgraded (and moved Previous) meanwhile,
	// or rewritten the state (refreshed fingerprints).
	cur, err := LoadState(i.Root)
	if err != nil || cur.Dir != st.Dir || cur.Previous != st.Previous || cur.BinDir != st.BinDir {
		return
	}
	if !locked && !i.previousUnused(cur) {
		return
	}
	i.removePrevious(cur)
}

// previousUnused reports whether st's previous directory may go: it is one of
// ours and either gone already (the record is stale) or executed by no process.
func (i *Installer) previousUnused(st State) bool {
	if st.Previous == "" || st.Previous == st.Dir || !ownedDir(st.BinDir, st.Previous) {
		return false
	}
	dir := i.Root.LinkPath(st.Previous)
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return true
	}
	if err != nil || !fi.IsDir() {
		return false
	}
	p, found, err := i.procs().ExecutingFrom(st.Previous)
	if err != nil {
		i.tellOnce(dir, "keeping the previous release directory: cannot tell whether a process still executes from it", "dir", dir, "reason", err)
		return false
	}
	if found {
		i.log().Debug("keeping the previous release directory: a process executes from it", "dir", dir, "pid", p.PID, "exe", p.Exe)
		return false
	}
	return true
}

// removePrevious moves the directory out of the way (one rename, so no
// half-removed release ever carries its name), records Previous "" and then
// deletes it. Called under the install lock. A crash after the rename leaves a
// staging directory, which the next install's cleanStaging removes.
func (i *Installer) removePrevious(st State) {
	dir := i.Root.LinkPath(st.Previous)
	binDir := filepath.Dir(dir)
	doomed := ""
	if _, err := os.Lstat(dir); err == nil {
		doomed = filepath.Join(binDir, stagingPrefix+"previous-"+randSuffix())
		if err := os.Rename(dir, doomed); err != nil {
			i.log().Warn("could not remove the previous release directory", "dir", dir, "error", err)
			return
		}
		_ = syncDir(binDir)
	}
	st.Previous = ""
	if err := saveState(i.Root, st); err != nil {
		i.log().Warn("could not record the removal of the previous release directory; the next run records it", "dir", dir, "error", err)
	}
	if doomed == "" {
		return
	}
	if err := os.RemoveAll(doomed); err != nil {
		i.log().Warn("could not remove the previous release directory; the next install removes it", "dir", doomed, "error", err)
	}
	_ = syncDir(binDir)
	i.log().Info("removed the previous release directory: no process executes from it any more", "dir", dir)
}

// told holds the directories whose "cannot tell" was logged at info level by
// this process: a --watch loop says it once, then at debug level.
var told sync.Map

func (i *Installer) tellOnce(key, msg string, args ...any) {
	if _, seen := told.LoadOrStore(key, true); seen {
		i.log().Debug(msg, args...)
		return
	}
	i.log().Info(msg, args...)
}
