package release

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
)

const fixInstall = "run `gvisor-bootstrap install`"

// Verify checks, without network access and without writing, that the
// configured release is installed and its files are intact. deep re-hashes every
// file; otherwise a file whose fingerprint matches the state is trusted (see
// FileState). No problems means healthy.
func (i *Installer) Verify(deep bool) []Problem {
	w, err := i.want()
	if err != nil {
		return []Problem{{Path: "release config", What: err.Error(), Fix: "fix the release settings or flags"}}
	}
	st, err := LoadState(i.Root)
	if err != nil {
		return []Problem{{Path: StatePath, What: err.Error(), Fix: fixInstall}}
	}
	return i.check(st, w, deep)
}

// check compares the state with what is wanted and the files on disk.
func (i *Installer) check(st State, w want, deep bool) []Problem {
	if st.Release == "" {
		return []Problem{{Path: StatePath, What: "no gVisor release installed by gvisor-bootstrap", Fix: fixInstall}}
	}
	runsc := nodeJoin(w.binDir, RunscName)
	var ps []Problem
	// The release is identified by its version, arch and place, not by where it was
	// fetched from: an image build installs from an uploaded copy (file://) and the
	// node's config names the real mirror; refetching the same release from
	// elsewhere would only cost a download (and need network on a baked image's
	// first boot). Pinned digests, checked below, make the identity exact.
	if st.Release != w.release || st.Arch != w.arch || st.BinDir != w.binDir {
		ps = append(ps, Problem{Path: runsc,
			What: fmt.Sprintf("installed release %s (%s, from %s, in %s) but the configuration wants %s (%s, from %s, in %s)",
				st.Release, st.Arch, st.Source, st.BinDir, w.release, w.arch, redact(w.source), w.binDir),
			Fix: fixInstall})
		return ps
	}
	for name, pin := range i.Cfg.SHA512 {
		got := st.Artifacts[name]
		if got == "" {
			got = st.Files[nodeJoin(st.Dir, name)].SHA512
		}
		if got != strings.ToLower(pin) {
			ps = append(ps, Problem{Path: nodeJoin(w.binDir, name),
				What: fmt.Sprintf("installed %s has sha512 %q, but release.sha512.%s pins %s", name, got, name, pin), Fix: fixInstall})
		}
	}
	for _, n := range []string{RunscName, ShimName} {
		if _, ok := st.Files[nodeJoin(st.Dir, n)]; !ok {
			ps = append(ps, Problem{Path: StatePath, What: "the install record lists no " + n, Fix: fixInstall})
		}
	}
	for _, link := range sortedKeys(st.Links) {
		target := st.Links[link]
		got, err := os.Readlink(i.Root.LinkPath(link))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			ps = append(ps, Problem{Path: link, What: "missing", Fix: fixInstall})
		case err != nil:
			ps = append(ps, Problem{Path: link, What: "not the symlink gvisor-bootstrap installed (" + err.Error() + ")", Fix: fixInstall})
		case got != target:
			ps = append(ps, Problem{Path: link, What: fmt.Sprintf("points to %s, not %s", got, target), Fix: fixInstall})
		default:
			if what := i.resolvesInto(link, st.Dir); what != "" {
				ps = append(ps, Problem{Path: link, What: what, Fix: fixInstall})
			}
		}
	}
	for _, p := range sortedKeys(st.Files) {
		if what := i.checkFile(p, st.Files[p], deep); what != "" {
			ps = append(ps, Problem{Path: p, What: what, Fix: fixInstall})
		}
	}
	return ps
}

// resolvesInto says what is wrong when the entry point link does not lead into
// the release directory dir (all entry points must lead into the same one), or "".
func (i *Installer) resolvesInto(link, dir string) string {
	got, err := i.Root.Resolve(link)
	if err != nil {
		return "does not resolve: " + err.Error()
	}
	want, err := i.Root.Resolve(dir)
	if err != nil {
		return "the installed release directory " + dir + " is missing: " + err.Error()
	}
	if got != want && !strings.HasPrefix(got, want+"/") {
		return fmt.Sprintf("resolves to %s, outside the installed release directory %s", i.Root.NodePath(got), dir)
	}
	return ""
}

// checkFile returns what is wrong with one installed file, or "".
func (i *Installer) checkFile(p string, rec FileState, deep bool) string {
	fp, err := fingerprint(i.Root.Path(p))
	if errors.Is(err, fs.ErrNotExist) {
		return "missing"
	}
	if err != nil {
		return err.Error()
	}
	if fp.Mode != 0o755 {
		return fmt.Sprintf("mode is %04o, want 0755", fp.Mode)
	}
	if !deep && sameFingerprint(fp, rec) {
		return ""
	}
	got, err := hashFile(i.Root.Path(p))
	if err != nil {
		return err.Error()
	}
	if got != rec.SHA512 {
		return fmt.Sprintf("content changed since install: sha512 %s, installed %s", got, rec.SHA512)
	}
	return ""
}

// refreshFingerprints re-records fingerprints of files whose content was proved
// unchanged by hashing; it reports whether any changed.
func (i *Installer) refreshFingerprints(st *State) bool {
	changed := false
	for p, rec := range st.Files {
		fp, err := fingerprint(i.Root.Path(p))
		if err != nil || sameFingerprint(fp, rec) {
			continue
		}
		fp.SHA512 = rec.SHA512 // check() hashed it and found it equal
		st.Files[p] = fp
		changed = true
	}
	return changed
}

// Uninstall removes what Install put in place: the entry points and
// .gvisor-current where they still point where it left them, the release
// directories it recorded, and the state.
// Anything else (a runsc someone put there by hand) is left alone.
func (i *Installer) Uninstall(ctx context.Context, dryRun bool) ([]string, error) {
	st, err := LoadState(i.Root)
	if err != nil {
		return nil, err
	}
	if st.Release == "" {
		return nil, nil
	}
	var removed []string
	binDir := i.Root.Path(st.BinDir)
	if !dryRun {
		unlock, err := i.lockInstall(ctx)
		if err != nil {
			return nil, err
		}
		defer unlock()
	}
	for _, link := range uninstallOrder(st.Links) {
		got, err := os.Readlink(i.Root.LinkPath(link))
		if err != nil || got != st.Links[link] {
			if !errors.Is(err, fs.ErrNotExist) {
				i.log().Warn("leaving an entry point gvisor-bootstrap did not install", "path", link)
			}
			continue
		}
		if !dryRun {
			if err := i.Root.Remove(link); err != nil {
				return removed, err
			}
		}
		removed = append(removed, link)
	}
	for _, d := range []string{st.Dir, st.Previous} {
		if d == "" || !ownedDir(st.BinDir, d) {
			continue
		}
		if _, err := os.Lstat(i.Root.LinkPath(d)); err != nil {
			continue
		}
		if !dryRun {
			if err := os.RemoveAll(i.Root.LinkPath(d)); err != nil {
				return removed, fmt.Errorf("remove %s: %w", i.Root.LinkPath(d), err)
			}
		}
		removed = append(removed, d)
	}
	if !dryRun {
		if err := i.Root.Remove(StatePath); err != nil {
			return removed, err
		}
		_ = syncDir(binDir)
	}
	removed = append(removed, StatePath)
	return removed, nil
}

// uninstallOrder lists the entry points before .gvisor-current, which they
// resolve through.
func uninstallOrder(links map[string]string) []string {
	var out, last []string
	for _, l := range sortedKeys(links) {
		if path.Base(l) == CurrentLink {
			last = append(last, l)
		} else {
			out = append(out, l)
		}
	}
	return append(out, last...)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
