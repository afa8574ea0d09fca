// Package proctable answers one question about a node's processes: does any of
// them execute a file from a given directory. The release step asks it before
// removing the previous release's directory, which running sandboxes and their
// shims execute from (/proc/<pid>/exe points into it) until they end.
//
// It reads the procfs at the root's /proc: on the node itself that is /proc;
// under --root R it must be the node's procfs mounted at R/proc. Anything that
// is not a whole, readable view of a pid namespace (no procfs there, a process
// whose executable may not be inspected, no readable process 1) is an error:
// the caller cannot tell and must keep the directory.
package proctable

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
)

// Process is a process executing from a directory.
type Process struct {
	PID int
	// Exe is what /proc/<pid>/exe reads (with " (deleted)" when the file is gone).
	Exe string
}

// Table is the node's process table, as far as the release step needs it.
type Table interface {
	// ExecutingFrom returns a process whose executable is a file under dir (a
	// node path); found is false when there is none. An error means the table
	// cannot tell: the caller must treat dir as in use.
	ExecutingFrom(dir string) (p Process, found bool, err error)
}

// Of is the process table of the node under root: the procfs at root's /proc.
func Of(root fsroot.Root) Table { return procfs{root: root} }

type procfs struct{ root fsroot.Root }

type fileID struct{ dev, ino uint64 }

// ExecutingFrom scans every process once. A process matches when its
// executable's path (as this process reads /proc/<pid>/exe, " (deleted)"
// stripped) lies under the directory, or when its executable is the same inode
// as a file in the directory: a reader in another mount namespace (the
// DaemonSet's pod) sees paths differently, inodes the same. Only executables
// are looked at, not other mappings: gVisor's binaries are static, nothing maps
// them as libraries, and every one of them (runsc, the shim, gvisor-bin/*)
// runs as a process's executable.
//
// The scan is a snapshot: a process started from the directory after it passed
// is not seen. Nothing starts from a previous release's directory (the entry
// points resolve into the current one) except a process already running from
// it, which the scan sees.
func (t procfs) ExecutingFrom(dir string) (Process, bool, error) {
	proc, err := t.root.Resolve("/proc")
	if err != nil {
		return Process{}, false, err
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(proc, &sfs); err != nil {
		return Process{}, false, fmt.Errorf("no process table at %s (%v): the node's processes are not visible here", proc, err)
	}
	if sfs.Type != unix.PROC_SUPER_MAGIC {
		return Process{}, false, fmt.Errorf("%s is not a procfs mount: the node's processes are not visible here", proc)
	}
	hostDir, err := t.root.Resolve(dir)
	if err != nil {
		return Process{}, false, err
	}
	ids, err := fileIDs(hostDir)
	if err != nil {
		return Process{}, false, err
	}
	prefixes := []string{hostDir + "/"}
	if node := path.Clean("/"+dir) + "/"; node != prefixes[0] {
		prefixes = append(prefixes, node)
	}

	entries, err := os.ReadDir(proc)
	if err != nil {
		return Process{}, false, fmt.Errorf("list processes in %s: %w", proc, err)
	}
	var unknown error
	initSeen := false
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid < 1 {
			continue
		}
		exe := filepath.Join(proc, e.Name(), "exe")
		target, err := os.Readlink(exe)
		if gone(err) {
			continue // exited, a zombie or a kernel thread: executes no file
		}
		if err != nil {
			if unknown == nil {
				unknown = fmt.Errorf("cannot read %s (%w), so what process %d executes is unknown", exe, err, pid)
			}
			continue
		}
		if pid == 1 {
			initSeen = true
		}
		name := strings.TrimSuffix(target, " (deleted)")
		for _, p := range prefixes {
			if strings.HasPrefix(name, p) {
				return Process{PID: pid, Exe: target}, true, nil
			}
		}
		if len(ids) == 0 {
			continue
		}
		var st unix.Stat_t
		err = unix.Stat(exe, &st)
		if gone(err) {
			continue
		}
		if err != nil {
			if unknown == nil {
				unknown = fmt.Errorf("cannot stat %s (%w), so what process %d executes is unknown", exe, err, pid)
			}
			continue
		}
		if ids[fileID{dev: st.Dev, ino: st.Ino}] {
			return Process{PID: pid, Exe: target}, true, nil
		}
	}
	if unknown != nil {
		return Process{}, false, unknown
	}
	if !initSeen {
		// hidepid, or a procfs of a dying namespace: processes may be hidden.
		return Process{}, false, fmt.Errorf("%s shows no readable process 1: not a whole pid namespace's view", proc)
	}
	return Process{}, false, nil
}

// fileIDs are the device and inode of every regular file under dir.
func fileIDs(dir string) (map[fileID]bool, error) {
	ids := map[fileID]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		ids[fileID{dev: st.Dev, ino: st.Ino}] = true
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list the files of %s: %w", dir, err)
	}
	return ids, nil
}

func gone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH)
}
