package release

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/config"
)

// What to download for a release, in which order, and how each artifact is
// checked before anything is installed.

// plan lists what a real run would try to fetch, in order.
func (i *Installer) plan(w want) []string {
	var out []string
	if i.tryBundle() {
		out = append(out, fileURL(w.source, BundleName+checksumSuffix), fileURL(w.source, BundleName))
	}
	if i.tryLoose() {
		for _, n := range []string{RunscName, ShimName} {
			out = append(out, fileURL(w.source, n+checksumSuffix), fileURL(w.source, n))
		}
	}
	for k, u := range out {
		out[k] = redact(u)
	}
	return out
}

// A pinned bundle digest means only the bundle is acceptable; digests pinned for
// the loose files only mean only loose files are: otherwise the bundle's
// sidecars would run as root without any pinned anchor.
func (i *Installer) tryBundle() bool {
	return i.Cfg.SHA512[BundleName] != "" || (i.Cfg.SHA512[RunscName] == "" && i.Cfg.SHA512[ShimName] == "")
}

func (i *Installer) tryLoose() bool { return i.Cfg.SHA512[BundleName] == "" }

// fetchRelease downloads and checks the release into tree: the bundle when the
// server has one, else the loose files. It returns the layout and the digests of
// the downloaded artifacts, and the digests of the files staged in tree, computed
// while they were written.
func (i *Installer) fetchRelease(ctx context.Context, f *fetcher, w want, dl, tree string) (layout string, artifacts, staged map[string]string, err error) {
	var bundleErr error
	if i.tryBundle() {
		d, entries, ferr := i.fetchArtifact(ctx, f, w.source, BundleName, dl, tree)
		if ferr == nil {
			return LayoutBundle, map[string]string{BundleName: d}, entries, nil
		}
		if !isNotFound(ferr) || !i.tryLoose() {
			return "", nil, nil, ferr
		}
		bundleErr = ferr
		i.log().Info("no release bundle; trying loose files", "url", redact(fileURL(w.source, BundleName)))
	}
	artifacts = map[string]string{}
	for _, name := range []string{RunscName, ShimName} {
		d, _, err := i.fetchArtifact(ctx, f, w.source, name, dl, "")
		if err != nil {
			if isNotFound(err) && name == RunscName {
				return "", nil, nil, i.missingRelease(ctx, f, w, bundleErr, err)
			}
			return "", nil, nil, err
		}
		if err := moveExecutable(filepath.Join(dl, name), filepath.Join(tree, name)); err != nil {
			return "", nil, nil, fmt.Errorf("stage %s: %w; %s", name, err, localFix)
		}
		artifacts[name] = d
	}
	return LayoutLoose, artifacts, artifacts, nil
}

// fetchArtifact downloads name and its published .sha512 into dl and checks the
// digest. The small checksum file comes first, so a pin conflict or a missing
// release costs no large download. With a tree, the artifact is the bundle and
// is unpacked into tree as it downloads; the staged files' digests are returned.
func (i *Installer) fetchArtifact(ctx context.Context, f *fetcher, src, name, dl, tree string) (string, map[string]string, error) {
	sumURL := fileURL(src, name+checksumSuffix)
	sumPath := filepath.Join(dl, name+checksumSuffix)
	published := ""
	switch err := f.fetch(ctx, sumURL, sumPath, maxChecksumFile); {
	case err == nil:
		data, rerr := os.ReadFile(sumPath)
		if rerr != nil {
			return "", nil, rerr
		}
		d, perr := parseSHA512File(data, name)
		if perr != nil {
			return "", nil, fmt.Errorf("%s: %w; check the mirror or pin the digest with --sha512 %s=HEX", redact(sumURL), perr, name)
		}
		published = d
	case isNotFound(err):
		// Decided below: fine when pinned, otherwise an error once the artifact
		// itself is known to exist.
	default:
		return "", nil, err
	}
	pinned := i.Cfg.SHA512[name]
	wantDigest, from, err := expectedDigest(name, pinned, published, sumURL)
	if err != nil && published != "" {
		return "", nil, err // the published digest contradicts the pin
	}
	artURL := fileURL(src, name)
	artPath := filepath.Join(dl, name)
	if err == nil {
		if nerr := i.mayFetch(name, artURL, wantDigest); nerr != nil {
			return "", nil, nerr
		}
	}
	var got string
	var staged map[string]string
	var ferr error
	if tree != "" && err == nil {
		got, staged, ferr = f.fetchUnpacked(ctx, artURL, artPath, maxDownload, tree)
		var ue *unpackError
		if errors.As(ferr, &ue) && got != wantDigest {
			ferr = nil // not the published bundle: say that, not how it failed to unpack
		}
	} else {
		got, ferr = f.fetchHashed(ctx, artURL, artPath, maxDownload)
	}
	if ferr != nil {
		return "", nil, ferr
	}
	if err != nil {
		return "", nil, err // the artifact exists but has no checksum
	}
	if got != wantDigest {
		cerr := &ChecksumError{Name: name, URL: artURL, Want: wantDigest, Got: got, WantFrom: from}
		i.recordFetch(name, artURL, wantDigest, cerr)
		return "", nil, cerr
	}
	i.recordFetch(name, artURL, wantDigest, nil)
	i.log().Info("verified", "file", name, "sha512", got, "against", redactFrom(from))
	return got, staged, nil
}

func isNotFound(err error) bool {
	var fe *FetchError
	return errors.As(err, &fe) && fe.Kind == KindNotFound
}

// missingRelease explains a release directory with neither layout. When the URL
// was built from the base URL it probes the other arch once, to tell a wrong
// --arch from a wrong --release.
func (i *Installer) missingRelease(ctx context.Context, f *fetcher, w want, bundleErr, looseErr error) error {
	tried := redact(fileURL(w.source, RunscName))
	if bundleErr != nil {
		tried = redact(fileURL(w.source, BundleName)) + " and " + tried
	}
	if i.Cfg.URL != "" {
		return &missingError{looseErr, fmt.Sprintf("no gVisor release at %s: neither %s nor %s exists (tried %s); check that --release-url points at the directory of one release for %s",
			redact(w.source), BundleName, RunscName, tried, w.arch)}
	}
	other := otherArch(w.arch)
	if otherDir, err := SourceDir(i.Cfg, other); err == nil {
		probe := &fetcher{client: f.client, timeout: f.timeout, retries: 0, backoff: f.backoff, log: f.log}
		if tmp, err := os.MkdirTemp("", "gvisor-probe-"); err == nil {
			defer os.RemoveAll(tmp)
			for _, n := range []string{BundleName + checksumSuffix, RunscName + checksumSuffix} {
				if probe.fetch(ctx, fileURL(otherDir, n), filepath.Join(tmp, n), maxChecksumFile) == nil {
					machine, _ := Arch(config.Release{})
					return &missingError{looseErr, fmt.Sprintf("release %s is not published for %s (tried %s) but is for %s: wrong architecture; check --arch / release.arch (this machine is %s)",
						w.release, w.arch, tried, other, machine)}
				}
			}
		}
	}
	return &missingError{looseErr, fmt.Sprintf("no gVisor release %s for %s at %s (HTTP 404 for %s); check --release (e.g. %s) and --arch (x86_64 or aarch64)",
		w.release, w.arch, redact(w.source), tried, config.DefaultRelease)}
}

// missingError keeps the underlying not-found FetchError for errors.As.
type missingError struct {
	err error
	msg string
}

func (e *missingError) Error() string { return e.msg }
func (e *missingError) Unwrap() error { return e.err }

// hashTree hashes every staged file and checks pinned digests of runsc and the
// shim (which, in a bundle, are checked in addition to the bundle's digest).
//
// known holds digests already computed while the files were written (a loose
// artifact hashed as it downloaded, a bundle entry hashed as it was unpacked);
// only the rest is read back.
func (i *Installer) hashTree(tree, layout string, known map[string]string) (map[string]string, error) {
	digests := map[string]string{}
	err := filepath.WalkDir(tree, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(tree, p)
		if h, ok := known[filepath.ToSlash(rel)]; ok {
			digests[filepath.ToSlash(rel)] = h
			return nil
		}
		h, err := hashFile(p)
		if err != nil {
			return err
		}
		digests[filepath.ToSlash(rel)] = h
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("hash staged files: %w", err)
	}
	if layout == LayoutBundle {
		for _, n := range []string{RunscName, ShimName} {
			if pin := strings.ToLower(i.Cfg.SHA512[n]); pin != "" && pin != digests[n] {
				return nil, &ChecksumError{Name: n, URL: BundleName + ":" + n, Want: pin, Got: digests[n], WantFrom: "release.sha512." + n}
			}
		}
	}
	return digests, nil
}
