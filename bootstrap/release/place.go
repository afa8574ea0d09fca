package release

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/faultpoint"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/nodelock"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/nodepaths"
)

// How files are placed, and why.
//
// runsc finds its sidecars in "gvisor-bin/" next to the path of its own
// executable with symlinks resolved (gVisor runsc/gvisorbinaries: it reads
// /proc/self/exe). So each release goes into its own versioned directory,
// written completely (every file fsynced, mode 0755) under a temporary name and
// renamed into place, and ONE symlink says which release is current:
//
//	BinDir/gvisor.<release>-<hash>/{runsc, containerd-shim-runsc-v1, gvisor-bin/}
//	BinDir/.gvisor-current           -> gvisor.<release>-<hash>
//	BinDir/runsc                     -> .gvisor-current/runsc
//	BinDir/containerd-shim-runsc-v1  -> .gvisor-current/containerd-shim-runsc-v1
//	BinDir/gvisor-bin                -> .gvisor-current/gvisor-bin   (bundle layout)
//
// The three entry points are static: created once and never swapped again. An
// upgrade is one rename(2) of a fresh .gvisor-current over the old one, so every
// entry point moves to the new release at the same instant and no crash can pair
// the shim of one release with the runsc of another (three renames could). A
// runsc started through BinDir/runsc runs the release directory's runsc and uses
// THAT directory's sidecars.
//
// Order, every step a rename of a prepared symlink followed by the fsynced
// directory (crash points in parentheses, see faultpoint):
//
//  1. the versioned directory (release-dir-renamed);
//  2. only when the entry points are not all static yet (a first install, the
//     per-release links of earlier versions of this tool, a manual `tar -xjf`
//     install): .gvisor-current is first pointed at what the entry points show
//     NOW (release-current-pinned): the old release directory, or a directory
//     adopting a manual install by hard links; then each entry point becomes
//     static (release-linked:<name>). Each such step leaves what runs unchanged,
//     so a crash between them still shows one whole (old) release. On a first
//     install nothing is pinned and the links dangle until step 3: the entry
//     points appear together.
//  3. .gvisor-current to the new directory (release-current-swapped);
//  4. the state (release-state-saved), written last.
//
// A crash before 4 leaves a state describing the old release; the next run sees
// .gvisor-current differ and finishes the job. A failure (not a crash) before 4 is
// rolled back: every replaced entry was hard-linked to a backup name first.
//
// A running runsc keeps its old inode and its old directory: the previous
// release's directory is kept (State.Previous) while a process executes from
// it, because sandboxes started from it still exec its sidecars (checkpoint,
// metrics); the first run after the last one ended removes it (previous.go).

const (
	stagingPrefix = ".gvisor-staging-"
	tmpLinkInfix  = ".gvisor-new-"
	backupInfix   = ".gvisor-old-"
	// CurrentLink names the symlink in BinDir to the current release directory.
	CurrentLink = ".gvisor-current"
	// adoptedPrefix names a directory that adopts a manual install by hard
	// links while the entry points are migrated; removed once committed.
	adoptedPrefix = ".gvisor-adopted-"
)

// staticTarget is where an entry point links: through .gvisor-current.
func staticTarget(name string) string { return CurrentLink + "/" + name }

type swap struct {
	name, target string // entry in BinDir, symlink target relative to BinDir
	point        string // fault point passed once swapped
	tmp          string // the new symlink, created before any swap
	backup       string // the previous entry, kept until commit
	exchanged    bool   // the previous entry was a directory, now at tmp
	existed      bool
	done         bool
}

// place moves the staged tree into its versioned directory, makes the entry
// points static (once), swaps .gvisor-current and writes the state; any failure
// before the state is written is undone.
func (i *Installer) place(old State, w want, layout, tree string, artifacts, digests map[string]string) (State, error) {
	binDir := i.Root.Path(w.binDir)
	name := versionDirName(w.release, artifacts)
	if _, err := os.Lstat(filepath.Join(binDir, name)); err == nil {
		name += "." + strconv.FormatInt(time.Now().UnixNano(), 36) // reinstall of the same release (repair)
	}
	verDir := filepath.Join(binDir, name)
	if err := os.Rename(tree, verDir); err != nil {
		return State{}, fmt.Errorf("move release into %s: %w; nothing was changed", verDir, err)
	}
	if err := fsroot.SyncDir(binDir); err != nil {
		os.RemoveAll(verDir)
		return State{}, err
	}
	hit("release-dir-renamed")
	if layout == LayoutBundle {
		if _, err := os.Stat(filepath.Join(verDir, SidecarDir)); err != nil {
			if err := os.Mkdir(filepath.Join(verDir, SidecarDir), 0o755); err != nil {
				os.RemoveAll(verDir)
				return State{}, fmt.Errorf("create %s: %w", filepath.Join(verDir, SidecarDir), err)
			}
		}
	}

	// Prepare everything that can run out of space before touching an entry point.
	m, err := planMigration(binDir, entryNames(binDir, layout))
	if err != nil {
		os.RemoveAll(verDir)
		return State{}, fmt.Errorf("%w; nothing was changed", err)
	}
	swaps := append(m.swaps, &swap{name: CurrentLink, target: name, point: "release-current-swapped"})
	fail := func(err error) (State, error) {
		rollback(binDir, swaps)
		if m.adopted != "" {
			os.RemoveAll(m.adopted)
		}
		os.RemoveAll(verDir)
		return State{}, fmt.Errorf("%w; the previous installation was restored", err)
	}
	for _, s := range swaps {
		s.tmp = filepath.Join(binDir, "."+strings.TrimPrefix(s.name, ".")+tmpLinkInfix+randSuffix())
		if err := os.Symlink(s.target, s.tmp); err != nil {
			return fail(fmt.Errorf("create symlink %s: %w", s.tmp, err))
		}
	}
	for _, s := range swaps {
		if err := swapIn(binDir, s); err != nil {
			return fail(err)
		}
		// Each step is durable before the next: a crash must not let the
		// filesystem reorder a later rename before an earlier one.
		if err := fsroot.SyncDir(binDir); err != nil {
			return fail(err)
		}
		hit(s.point)
	}

	st := State{
		Release: w.release, Arch: w.arch, Layout: layout, Source: redact(w.source), BinDir: w.binDir,
		InstalledAt: time.Now().UTC(),
		Dir:         nodeJoin(w.binDir, name),
		Links:       map[string]string{nodeJoin(w.binDir, CurrentLink): name},
		Artifacts:   artifacts,
		Files:       map[string]FileState{},
	}
	if old.Dir != "" && old.Dir != st.Dir && old.BinDir == w.binDir {
		st.Previous = old.Dir
	}
	for _, n := range []string{ShimName, RunscName} {
		st.Links[nodeJoin(w.binDir, n)] = staticTarget(n)
	}
	if layout == LayoutBundle {
		st.Links[nodeJoin(w.binDir, SidecarDir)] = staticTarget(SidecarDir)
	}
	for rel, d := range digests {
		np := nodeJoin(st.Dir, rel)
		fp, err := fingerprint(i.Root.Path(np))
		if err != nil {
			return fail(err)
		}
		fp.SHA512 = d
		st.Files[np] = fp
	}
	if err := saveState(i.Root, st); err != nil {
		return fail(fmt.Errorf("record the installation: %w", err))
	}
	hit("release-state-saved")

	// Committed. Drop backups, a gvisor-bin link of ours that a loose release
	// no longer needs (it dangles now), the adopted manual install, and
	// releases older than the previous one.
	for _, s := range swaps {
		if s.backup != "" {
			os.RemoveAll(s.backup)
		}
	}
	if layout == LayoutLoose {
		link := filepath.Join(binDir, SidecarDir)
		if t, err := os.Readlink(link); err == nil && (t == staticTarget(SidecarDir) || t == old.Links[nodeJoin(w.binDir, SidecarDir)]) {
			os.Remove(link)
		}
	}
	removeOldReleases(binDir, st, i.log())
	_ = fsroot.SyncDir(binDir)
	return st, nil
}

// entryNames are the entry points a release of this layout gets: runsc and the
// shim, and gvisor-bin for a bundle or while a gvisor-bin link of ours exists
// (it must move with the others; a loose release then drops it at commit).
func entryNames(binDir, layout string) []string {
	names := []string{ShimName, RunscName}
	if layout == LayoutBundle {
		return append([]string{SidecarDir}, names...)
	}
	e, err := inspectEntry(binDir, SidecarDir)
	if err == nil && (e.kind == entryStatic || e.kind == entryDirect) {
		return append([]string{SidecarDir}, names...)
	}
	return names
}

// hit passes a fault point (a crash in the fault-matrix tests, a simulated
// failure in this package's tests).
func hit(point string) {
	if testHookAtPoint != nil {
		testHookAtPoint(point)
	}
	faultpoint.Hit(point)
}

// swapIn replaces BinDir/<name> with the prepared symlink, keeping what was
// there under a backup name so the swap can be undone.
func swapIn(binDir string, s *swap) error {
	dst := filepath.Join(binDir, s.name)
	fi, err := os.Lstat(dst)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("inspect %s: %w", dst, err)
	case fi.IsDir():
		// A real gvisor-bin directory (a manual `tar -xjf` install): exchange it
		// with the new symlink in one step, then it sits at s.tmp until commit.
		s.existed = true
		err := unix.Renameat2(unix.AT_FDCWD, s.tmp, unix.AT_FDCWD, dst, unix.RENAME_EXCHANGE)
		if err == nil {
			s.exchanged, s.backup, s.done = true, s.tmp, true
			return nil
		}
		if !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOSYS) {
			return fmt.Errorf("replace directory %s: %w", dst, err)
		}
		// No RENAME_EXCHANGE on this filesystem: move the directory aside first.
		s.backup = filepath.Join(binDir, "."+strings.TrimPrefix(s.name, ".")+backupInfix+randSuffix())
		if err := os.Rename(dst, s.backup); err != nil {
			s.backup = ""
			return fmt.Errorf("move %s aside: %w", dst, err)
		}
	default:
		s.existed = true
		s.backup = filepath.Join(binDir, "."+strings.TrimPrefix(s.name, ".")+backupInfix+randSuffix())
		if err := os.Link(dst, s.backup); err != nil {
			s.backup = ""
			return fmt.Errorf("keep a backup of %s: %w", dst, err)
		}
	}
	if err := os.Rename(s.tmp, dst); err != nil {
		return fmt.Errorf("replace %s: %w", dst, err)
	}
	s.done = true
	return nil
}

// rollback undoes swaps in reverse order and removes temporary links.
func rollback(binDir string, swaps []*swap) {
	for k := len(swaps) - 1; k >= 0; k-- {
		s := swaps[k]
		dst := filepath.Join(binDir, s.name)
		switch {
		case s.exchanged:
			_ = unix.Renameat2(unix.AT_FDCWD, s.tmp, unix.AT_FDCWD, dst, unix.RENAME_EXCHANGE)
		case s.backup != "":
			_ = os.Rename(s.backup, dst)
		case s.done && !s.existed:
			_ = os.Remove(dst)
		}
		if s.tmp != "" {
			if fi, err := os.Lstat(s.tmp); err == nil && fi.Mode()&os.ModeSymlink != 0 {
				_ = os.Remove(s.tmp)
			}
		}
	}
	_ = fsroot.SyncDir(binDir)
}

// testHookAtPoint lets tests stop the process at a fault point (a crash).
var testHookAtPoint func(point string)

// releaseDirName matches the directories versionDirName makes.
var releaseDirName = regexp.MustCompile(`^gvisor\.[A-Za-z0-9._-]+-[0-9a-f]{12}(\.[0-9a-z]+)?$`)

// removeOldReleases keeps the installed release and the previous one and removes
// every other release directory, including one a crashed install left behind,
// and directories that adopted a manual install.
func removeOldReleases(binDir string, st State, log *slog.Logger) {
	keep := map[string]bool{path.Base(st.Dir): true}
	if st.Previous != "" {
		keep[path.Base(st.Previous)] = true
	}
	if cur, err := os.Readlink(filepath.Join(binDir, CurrentLink)); err == nil {
		keep[cur] = true // never what an entry point resolves into
	}
	entries, _ := os.ReadDir(binDir)
	for _, e := range entries {
		ours := releaseDirName.MatchString(e.Name()) || strings.HasPrefix(e.Name(), adoptedPrefix)
		if !e.IsDir() || keep[e.Name()] || !ours {
			continue
		}
		if err := os.RemoveAll(filepath.Join(binDir, e.Name())); err != nil {
			log.Warn("could not remove an old release directory", "dir", filepath.Join(binDir, e.Name()), "error", err)
		}
	}
}

// ownedDir reports whether a node path is one of this tool's release directories.
func ownedDir(binDir, d string) bool {
	return filepath.Dir(d) == filepath.Clean(binDir) && strings.HasPrefix(filepath.Base(d), "gvisor.")
}

// moveExecutable renames a downloaded file into the staged tree, mode 0755, fsynced.
func moveExecutable(from, to string) error {
	f, err := os.OpenFile(from, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Chmod(0o755)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(from, to)
}

// cleanStaging removes what an interrupted run left in the bin directory. A
// directory adopting a manual install stays while .gvisor-current points at it
// (a crash in the middle of a migration): the entry points resolve into it.
func cleanStaging(binDir string) {
	cur, _ := os.Readlink(filepath.Join(binDir, CurrentLink))
	entries, _ := os.ReadDir(binDir)
	for _, e := range entries {
		n := e.Name()
		if n == cur {
			continue
		}
		if strings.HasPrefix(n, stagingPrefix) || strings.HasPrefix(n, adoptedPrefix) || strings.Contains(n, tmpLinkInfix) || strings.Contains(n, backupInfix) {
			os.RemoveAll(filepath.Join(binDir, n))
		}
	}
}

// lockInstall takes the node's install lock (nodepaths.InstallLock, in the root-only
// run directory): concurrent installs (a boot unit, an operator, the DaemonSet's
// pod) serialize, nobody else can hold it, and the wait ends with ctx.
func (i *Installer) lockInstall(ctx context.Context) (func(), error) {
	return nodelock.Acquire(ctx, i.Root, nodepaths.InstallLock, func() {
		i.log().Info("waiting for the install lock: another gvisor-bootstrap run holds it", "lock", i.Root.Path(nodepaths.InstallLock))
	})
}

func randSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func syncDir(dir string) error { return fsroot.SyncDir(dir) }
