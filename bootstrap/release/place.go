package release

import (
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
)

// How files are placed, and why.
//
// runsc finds its sidecars in "gvisor-bin/" next to the path of its own
// executable with symlinks resolved (gVisor runsc/gvisorbinaries: it reads
// /proc/self/exe). So each release goes into its own versioned directory,
//
//	BinDir/gvisor.<release>-<hash>/{runsc, containerd-shim-runsc-v1, gvisor-bin/}
//
// written completely (every file fsynced, mode 0755) under a temporary name and
// renamed into place, and BinDir/runsc, BinDir/containerd-shim-runsc-v1 and
// BinDir/gvisor-bin are symlinks into it, each replaced by rename(2) of a fresh
// symlink. A runsc started through BinDir/runsc always runs the release
// directory's runsc and therefore always uses THAT directory's sidecars: runsc and
// its sidecars come from the same release in every state a crash can leave,
// which a swapped gvisor-bin link next to a separately renamed runsc file cannot
// promise (a crash between the two renames would pair them wrongly).
//
// Order: the versioned directory, then gvisor-bin (used by tools and people
// following the documented layout; runsc itself resolves through its real path),
// then the shim, then runsc last, then the state. A crash between renames leaves
// older entry points next to newer ones, each self-consistent; the state still
// describes the old release, so the next run sees the links differ and finishes
// the job. A failure (not a crash) in the middle is rolled back: every replaced
// entry was hard-linked to a backup name first.
//
// A running runsc keeps its old inode and its old directory: the previous
// release's directory is kept (State.Previous) until the next upgrade, because
// sandboxes started from it still exec its sidecars (checkpoint, metrics).

const (
	stagingPrefix = ".gvisor-staging-"
	tmpLinkInfix  = ".gvisor-new-"
	backupInfix   = ".gvisor-old-"
)

type swap struct {
	name, target string // entry in BinDir, symlink target relative to BinDir
	tmp          string // the new symlink, created before any swap
	backup       string // the previous entry, kept until commit
	exchanged    bool   // the previous entry was a directory, now at tmp
	existed      bool
	done         bool
}

// place moves the staged tree into its versioned directory, swaps the entry
// points and writes the state; any failure before the state is written is
// undone.
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
	faultpoint.Hit("release-dir-renamed")

	swaps := []*swap{{name: ShimName, target: name + "/" + ShimName}, {name: RunscName, target: name + "/" + RunscName}}
	if layout == LayoutBundle {
		swaps = append([]*swap{{name: SidecarDir, target: name + "/" + SidecarDir}}, swaps...)
		if _, err := os.Stat(filepath.Join(verDir, SidecarDir)); err != nil {
			if err := os.Mkdir(filepath.Join(verDir, SidecarDir), 0o755); err != nil {
				os.RemoveAll(verDir)
				return State{}, fmt.Errorf("create %s: %w", filepath.Join(verDir, SidecarDir), err)
			}
		}
	}
	fail := func(err error) (State, error) {
		rollback(binDir, swaps)
		os.RemoveAll(verDir)
		return State{}, fmt.Errorf("%w; the previous installation was restored", err)
	}
	// Prepare everything that can run out of space before touching an entry point.
	for _, s := range swaps {
		s.tmp = filepath.Join(binDir, "."+s.name+tmpLinkInfix+randSuffix())
		if err := os.Symlink(s.target, s.tmp); err != nil {
			return fail(fmt.Errorf("create symlink %s: %w", s.tmp, err))
		}
	}
	for _, s := range swaps {
		if err := swapIn(binDir, s); err != nil {
			return fail(err)
		}
		if testHookAfterSwap != nil {
			testHookAfterSwap(s.name)
		}
		faultpoint.Hit("release-swapped:" + s.name)
	}
	if err := fsroot.SyncDir(binDir); err != nil {
		return fail(err)
	}

	st := State{
		Release: w.release, Arch: w.arch, Layout: layout, Source: redact(w.source), BinDir: w.binDir,
		InstalledAt: time.Now().UTC(),
		Dir:         nodeJoin(w.binDir, name),
		Links:       map[string]string{},
		Artifacts:   artifacts,
		Files:       map[string]FileState{},
	}
	if old.Dir != "" && old.Dir != st.Dir && old.BinDir == w.binDir {
		st.Previous = old.Dir
	}
	for _, s := range swaps {
		st.Links[nodeJoin(w.binDir, s.name)] = s.target
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
	faultpoint.Hit("release-state-saved")

	// Committed. Drop backups, a gvisor-bin link of ours that a loose release
	// no longer needs, and releases older than the previous one.
	for _, s := range swaps {
		if s.backup != "" {
			os.RemoveAll(s.backup)
		}
	}
	if layout == LayoutLoose {
		link := filepath.Join(binDir, SidecarDir)
		if t, err := os.Readlink(link); err == nil && t == old.Links[nodeJoin(w.binDir, SidecarDir)] {
			os.Remove(link)
		}
	}
	removeOldReleases(binDir, st, i.log())
	return st, nil
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
		s.backup = filepath.Join(binDir, "."+s.name+backupInfix+randSuffix())
		if err := os.Rename(dst, s.backup); err != nil {
			s.backup = ""
			return fmt.Errorf("move %s aside: %w", dst, err)
		}
	default:
		s.existed = true
		s.backup = filepath.Join(binDir, "."+s.name+backupInfix+randSuffix())
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

// testHookAfterSwap lets tests stop the process between two swaps (a crash).
var testHookAfterSwap func(name string)

// releaseDirName matches the directories versionDirName makes.
var releaseDirName = regexp.MustCompile(`^gvisor\.[A-Za-z0-9._-]+-[0-9a-f]{12}(\.[0-9a-z]+)?$`)

// removeOldReleases keeps the installed release and the previous one and removes
// every other release directory, including one a crashed install left behind.
func removeOldReleases(binDir string, st State, log *slog.Logger) {
	keep := map[string]bool{path.Base(st.Dir): true}
	if st.Previous != "" {
		keep[path.Base(st.Previous)] = true
	}
	entries, _ := os.ReadDir(binDir)
	for _, e := range entries {
		if !e.IsDir() || keep[e.Name()] || !releaseDirName.MatchString(e.Name()) {
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

// cleanStaging removes what an interrupted run left in the bin directory.
func cleanStaging(binDir string) {
	entries, _ := os.ReadDir(binDir)
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, stagingPrefix) || strings.Contains(n, tmpLinkInfix) || strings.Contains(n, backupInfix) {
			os.RemoveAll(filepath.Join(binDir, n))
		}
	}
}

// lockDir takes an exclusive flock on a directory: concurrent installs (a boot
// unit and an operator) serialize without creating a lock file.
func lockDir(dir string) (func(), error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

func randSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func syncDir(dir string) error { return fsroot.SyncDir(dir) }
