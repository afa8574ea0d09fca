// Package release fetches gVisor's runsc, its containerd shim and the sidecar
// binaries of a pinned release, checks them against mandatory sha512 digests and
// installs them atomically and idempotently under a node root.
//
// Files by concern: source.go (which URL), fetch.go (go-getter, retries,
// failure classification), download.go (which artifacts, checked how),
// checksum.go, bundle.go (safe extraction), progress.go, place.go (atomic
// placement; the layout on disk and why), migrate.go (moving entry points of
// other layouts to that one without a mixed crash state), previous.go (the
// previous release's directory, removed once no process executes from it),
// state.go (what was
// installed and the fingerprint that makes a no-op cheap), verify.go (verify and
// uninstall).
//
// On disk, each release is a directory BinDir/gvisor.<release>-<hash> holding
// runsc, containerd-shim-runsc-v1 and gvisor-bin/; BinDir/.gvisor-current links
// to the current one and is replaced by a single rename on upgrade; BinDir/runsc,
// BinDir/containerd-shim-runsc-v1 and BinDir/gvisor-bin link through it and never
// change.
package release

import (
	"context"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/config"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/faultpoint"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/proctable"
)

// Installer installs one configured gVisor release under Root.
type Installer struct {
	Root fsroot.Root
	Cfg  config.Release
	Log  *slog.Logger
	// Progress receives a progress bar when it is a terminal; otherwise downloads
	// are reported as structured log lines.
	Progress io.Writer
	// HTTPClient is the base client (tests, proxies); nil uses a clone of the
	// default transport (which honours HTTPS_PROXY).
	HTTPClient *http.Client
	// Deep re-hashes every installed file instead of trusting the recorded
	// fingerprint (--deep, boot.deep_verify).
	Deep bool
	// Backoff is the first retry delay (default 1s); it doubles up to 30s.
	Backoff time.Duration
	// Procs is the node's process table, asked whether a process still executes
	// from the previous release's directory; nil reads the procfs at Root's /proc.
	Procs proctable.Table
}

// Result describes what Install did, or would do in a dry run.
type Result struct {
	Changed bool   `json:"changed"`
	Release string `json:"release"`
	Arch    string `json:"arch"`
	Layout  string `json:"layout,omitempty"`
	Source  string `json:"source"`
	// Dir is the node path of the versioned directory that holds the release.
	Dir string `json:"dir,omitempty"`
	// Digests are the installed files' sha512, by path relative to Dir.
	Digests map[string]string `json:"digests,omitempty"`
	// Installed are the node paths of the entry points (runsc, the shim,
	// gvisor-bin), .gvisor-current and the versioned directory.
	Installed []string `json:"installed,omitempty"`
	DryRun    bool     `json:"dry_run,omitempty"`
	// Reasons say why an install was (or would be) needed.
	Reasons []string `json:"reasons,omitempty"`
	// WouldFetch lists the URLs a dry run would try, in order.
	WouldFetch []string `json:"would_fetch,omitempty"`
}

// Problem is one thing verify found wrong, where, and what to do about it.
type Problem struct {
	Path string `json:"path"`
	What string `json:"what"`
	Fix  string `json:"fix"`
}

func (p Problem) String() string { return fmt.Sprintf("%s: %s (%s)", p.Path, p.What, p.Fix) }

// want is what the configuration asks for.
type want struct {
	release, arch, source, binDir string
}

func (i *Installer) want() (want, error) {
	// The release names a directory even when the URL is given explicitly.
	if err := CheckVersion(i.Cfg.Version); err != nil {
		return want{}, err
	}
	arch, err := Arch(i.Cfg)
	if err != nil {
		return want{}, err
	}
	src, err := SourceDir(i.Cfg, arch)
	if err != nil {
		return want{}, err
	}
	if !strings.HasPrefix(i.Cfg.BinDir, "/") {
		return want{}, fmt.Errorf("bin dir %q must be an absolute path", i.Cfg.BinDir)
	}
	return want{release: i.Cfg.Version, arch: arch, source: src, binDir: filepath.Clean(i.Cfg.BinDir)}, nil
}

func (i *Installer) log() *slog.Logger {
	if i.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return i.Log
}

// Install makes the configured release the installed one. When the state says it
// already is and the files verify, it makes no network request and no write.
//
// "latest" is resolved once: a later run with release "latest" is satisfied by
// whatever "latest" was when it was installed. A boot must not turn into an
// unplanned fleet-wide upgrade; pin a dated release to move forward.
func (i *Installer) Install(ctx context.Context, dryRun bool) (Result, error) {
	w, err := i.want()
	if err != nil {
		return Result{}, err
	}
	res := Result{Release: w.release, Arch: w.arch, Source: redact(w.source), DryRun: dryRun}
	st, problems := i.current(w)
	if len(problems) == 0 {
		res = i.noop(st, res, dryRun)
		if !dryRun {
			i.dropUnusedPrevious(ctx, st, false)
		}
		return res, nil
	}
	for _, p := range problems {
		res.Reasons = append(res.Reasons, p.String())
	}
	if dryRun {
		res.Changed = true
		res.WouldFetch = i.plan(w)
		i.log().Debug("dry run: would install", "release", w.release, "arch", w.arch, "source", redact(w.source), "bin_dir", w.binDir, "reasons", res.Reasons)
		return res, nil
	}

	binDir := i.Root.Path(w.binDir)
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return res, fmt.Errorf("create bin directory %s: %w; %s", binDir, err, localFix)
	}
	unlock, err := i.lockInstall(ctx)
	if err != nil {
		return res, err
	}
	defer unlock()
	// Another run may have installed while this one waited for the lock.
	if st, problems = i.current(w); len(problems) == 0 {
		res = i.noop(st, res, false)
		i.dropUnusedPrevious(ctx, st, true)
		return res, nil
	}
	i.log().Info("installing gVisor", "release", w.release, "arch", w.arch, "source", redact(w.source), "bin_dir", w.binDir, "reasons", res.Reasons)
	cleanStaging(binDir)

	staging, err := os.MkdirTemp(binDir, stagingPrefix)
	if err != nil {
		return res, fmt.Errorf("prepare download in %s: %w; nothing was changed; %s", binDir, err, localFix)
	}
	defer os.RemoveAll(staging)
	tree, dl := filepath.Join(staging, "tree"), filepath.Join(staging, "dl")
	for _, d := range []string{tree, dl} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return res, fmt.Errorf("prepare download in %s: %w; nothing was changed; %s", binDir, err, localFix)
		}
	}

	f := i.fetcher()
	layout, artifacts, staged, err := i.fetchRelease(ctx, f, w, dl, tree)
	if err != nil {
		return res, fmt.Errorf("%w; the installed gVisor files were not changed", err)
	}
	digests, err := i.hashTree(tree, layout, staged)
	if err != nil {
		return res, fmt.Errorf("%w; the installed gVisor files were not changed", err)
	}
	faultpoint.Hit("release-downloaded")

	newState, err := i.place(st, w, layout, tree, artifacts, digests)
	if err != nil {
		return res, err
	}
	i.dropUnusedPrevious(ctx, newState, true)
	res.Changed = true
	res.Layout = layout
	res.Dir = newState.Dir
	res.Digests = digests
	res.Installed = installedPaths(newState)
	i.log().Info("installed gVisor", "release", w.release, "arch", w.arch, "layout", layout, "dir", newState.Dir)
	return res, nil
}

const localFix = "check that the bin directory (--bin-dir) is writable and its filesystem has space"

// current loads the state and checks it against what is wanted.
func (i *Installer) current(w want) (State, []Problem) {
	st, err := LoadState(i.Root)
	if err != nil {
		i.log().Warn("ignoring unreadable install state", "error", err)
		return State{}, []Problem{{Path: StatePath, What: err.Error(), Fix: "run gvisor-bootstrap install"}}
	}
	return st, i.check(st, w, i.Deep)
}

// noop fills the result from the state. The state is only rewritten when a
// file's fingerprint moved but re-hashing proved the content unchanged (an image
// copied file by file gets new inodes), so the next run is cheap again.
func (i *Installer) noop(st State, res Result, dryRun bool) Result {
	res.Changed = false
	res.Layout, res.Dir = st.Layout, st.Dir
	res.Digests = relativeDigests(st)
	res.Installed = installedPaths(st)
	if refreshed := i.refreshFingerprints(&st); refreshed && !dryRun {
		if err := saveState(i.Root, st); err != nil {
			i.log().Warn("could not record refreshed fingerprints; the next run re-hashes again", "error", err)
		}
	}
	i.log().Debug("gVisor release already installed", "release", st.Release, "arch", st.Arch, "dir", st.Dir)
	return res
}

func (i *Installer) fetcher() *fetcher {
	hc := i.HTTPClient
	if hc == nil {
		hc = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	timeout := i.Cfg.Timeout.D()
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	backoff := i.Backoff
	if backoff <= 0 {
		backoff = time.Second
	}
	return &fetcher{client: hc, timeout: timeout, retries: max(i.Cfg.Retries, 0), backoff: backoff,
		log: i.log(), progress: progressFor(i.Progress, i.log()), plainHTTP: PinsEveryArtifact(i.Cfg.SHA512)}
}

// versionDirName names the directory of one release: the release and a short
// hash of its artifacts' digests, so a re-published release never collides.
func versionDirName(release string, artifacts map[string]string) string {
	names := make([]string, 0, len(artifacts))
	for n := range artifacts {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha512.New()
	for _, n := range names {
		fmt.Fprintf(h, "%s=%s\n", n, artifacts[n])
	}
	return "gvisor." + release + "-" + hex.EncodeToString(h.Sum(nil))[:12]
}

func relativeDigests(st State) map[string]string {
	out := map[string]string{}
	for p, fs := range st.Files {
		if rel, ok := strings.CutPrefix(p, st.Dir+"/"); ok {
			out[rel] = fs.SHA512
		}
	}
	return out
}

func installedPaths(st State) []string {
	var out []string
	for p := range st.Links {
		out = append(out, p)
	}
	sort.Strings(out)
	if st.Dir != "" {
		out = append(out, st.Dir)
	}
	return out
}

// nodeJoin joins node paths.
func nodeJoin(elem ...string) string { return path.Join(elem...) }
