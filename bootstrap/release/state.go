package release

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
	"time"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/nodepaths"
)

// StatePath is the node path of the record of what was installed.
const StatePath = nodepaths.ReleaseState

// State records one installation. It is written last, atomically, so it only
// ever describes files that are completely in place.
type State struct {
	Release string `json:"release"`
	Arch    string `json:"arch"`
	Layout  string `json:"layout"`
	// Source is the release directory URL the files came from, its query (an
	// Azure SAS token is a credential) redacted: the state file is world-readable,
	// and a rotated token must not force a reinstall.
	Source      string    `json:"source"`
	BinDir      string    `json:"bin_dir"`
	InstalledAt time.Time `json:"installed_at"`
	// Dir is the node path of the versioned directory holding this release;
	// Previous is the one before it, kept while sandboxes still run from it
	// (removed, and Previous emptied, by the first run after they ended).
	Dir      string `json:"dir"`
	Previous string `json:"previous,omitempty"`
	// Links maps each entry point and .gvisor-current (node paths) to its
	// symlink target (".gvisor-current/runsc", "gvisor.<release>-<hash>"). A
	// state written by an earlier version records per-release targets
	// ("gvisor.<release>-<hash>/runsc"); it stays valid until the next upgrade
	// migrates the links.
	Links map[string]string `json:"links"`
	// Artifacts are the digests of what was downloaded (gvisor.tar.bz2, or runsc
	// and the shim), by file name.
	Artifacts map[string]string `json:"artifacts"`
	// Files maps each installed file (node path) to its digest and fingerprint.
	Files map[string]FileState `json:"files"`
}

// FileState is an installed file's digest plus the fingerprint that lets a
// no-op run trust the digest without re-hashing.
//
// Why the fingerprint is sound: changing a file's bytes needs write(2),
// truncate(2) or replacing the name (rename, unlink+create). Writes and
// truncation update mtime AND ctime; a replacement changes the inode (and a new
// inode gets a fresh ctime). utimensat(2) can set mtime back, but setting any
// timestamp updates ctime to the current time, and no system call sets ctime: only
// moving the system clock (CAP_SYS_TIME) or editing the block device directly
// could forge it, and `--deep` (boot.deep_verify) re-hashes for those threat
// models. Size, mode, mtime and ctime to the nanosecond and the inode all equal
// therefore means the content is what was hashed at install. One caveat: on a
// filesystem whose timestamps are coarse (jiffies), a write in the same tick as
// the install's final stat could go unnoticed; the installer is the only writer
// at that moment.
type FileState struct {
	SHA512  string `json:"sha512"`
	Size    int64  `json:"size"`
	Mode    uint32 `json:"mode"`
	MtimeNs int64  `json:"mtime_ns"`
	CtimeNs int64  `json:"ctime_ns"`
	Inode   uint64 `json:"inode"`
}

// LoadState reads the state under root. A missing file is the zero State.
func LoadState(root fsroot.Root) (State, error) {
	var st State
	data, err := root.ReadFile(StatePath)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read %s: %w", root.Path(StatePath), err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return State{}, fmt.Errorf("%s is not valid JSON (%v): delete it and run `gvisor-bootstrap install` to reinstall", root.Path(StatePath), err)
	}
	return st, nil
}

func saveState(root fsroot.Root, st State) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return root.WriteFile(StatePath, append(data, '\n'), fsroot.WriteOptions{Mode: 0o644})
}

// fingerprint stats p without following symlinks.
func fingerprint(p string) (FileState, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return FileState{}, err
	}
	if !fi.Mode().IsRegular() {
		return FileState{}, fmt.Errorf("%s is not a regular file", p)
	}
	sys, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return FileState{}, fmt.Errorf("%s: no inode information", p)
	}
	return FileState{
		Size:    fi.Size(),
		Mode:    uint32(fi.Mode().Perm()),
		MtimeNs: sys.Mtim.Nano(),
		CtimeNs: sys.Ctim.Nano(),
		Inode:   sys.Ino,
	}, nil
}

// sameFingerprint compares everything but the digest.
func sameFingerprint(a, b FileState) bool {
	a.SHA512, b.SHA512 = "", ""
	return a == b
}
