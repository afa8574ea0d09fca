package release

import (
	"fmt"
	"net/url"
	"regexp"
	"runtime"
	"strings"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/config"
	redactpkg "github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/redact"
)

// Artifact names as gVisor's release bucket publishes them (field-facts §1).
const (
	RunscName  = "runsc"
	ShimName   = "containerd-shim-runsc-v1"
	BundleName = "gvisor.tar.bz2"
	// SidecarDir is the folder of sidecar binaries runsc looks for next to itself.
	SidecarDir = "gvisor-bin"
	// checksumSuffix names the published sha512sum file of an artifact.
	checksumSuffix = ".sha512"
)

// Layouts a release directory can have.
const (
	LayoutBundle = "bundle" // gvisor.tar.bz2 with runsc, the shim and gvisor-bin/
	LayoutLoose  = "loose"  // runsc and containerd-shim-runsc-v1 as separate files
)

// machineArch maps Go's GOARCH to the `uname -m` names the bucket uses.
var machineArch = map[string]string{"amd64": "x86_64", "arm64": "aarch64"}

// Arch returns the configured arch, or the machine's when none is set.
func Arch(cfg config.Release) (string, error) {
	if cfg.Arch != "" {
		return cfg.Arch, nil
	}
	a, ok := machineArch[runtime.GOARCH]
	if !ok {
		return "", fmt.Errorf("gVisor publishes x86_64 and aarch64 builds only; this machine is %s: set --arch or release.arch", runtime.GOARCH)
	}
	return a, nil
}

// releaseName accepts dated releases (20260914.0), nightly dates (2026-09-14) and
// "latest"; it keeps the value safe to use as a URL segment and in a directory name.
var releaseName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// CheckVersion reports whether v is usable as a release name.
func CheckVersion(v string) error {
	if !releaseName.MatchString(v) || strings.Contains(v, "..") {
		return fmt.Errorf("release %q: want a dated release such as %s (or \"latest\", which is never pinned)", v, config.DefaultRelease)
	}
	return nil
}

// SourceDir returns the directory URL holding one release for one arch: cfg.URL when
// set (a mirror, an Azure blob container with its SAS query, file:///path), else
// BaseURL/<version>/<arch>. A file:// path names a directory on the machine
// running the tool, not a node path under the root: a URL is not a node path,
// and an image build reads the release from the builder.
func SourceDir(cfg config.Release, arch string) (string, error) {
	if err := CheckSource(cfg); err != nil {
		return "", err
	}
	if cfg.URL != "" {
		u, err := parseDir(cfg.URL)
		if err != nil {
			return "", fmt.Errorf("release.url %q: %w", cfg.URL, err)
		}
		return u.String(), nil
	}
	if err := CheckVersion(cfg.Version); err != nil {
		return "", err
	}
	u, err := parseDir(cfg.BaseURL)
	if err != nil {
		return "", fmt.Errorf("release.base_url %q: %w", cfg.BaseURL, err)
	}
	return u.JoinPath(cfg.Version, arch).String(), nil
}

// CheckSource refuses a release source that install would refuse: a scheme other
// than https, http or file (go-getter forcing such as s3:: or git:: included), and
// plain HTTP unless every artifact's sha512 is pinned. Over plain HTTP the
// .sha512 file comes through the same channel as the binary, so anyone on the
// path could replace both and run their binaries as root on every node. `render`
// calls it too, so nothing is rendered that the node would refuse.
func CheckSource(cfg config.Release) error {
	key, raw := "release.base_url", cfg.BaseURL
	if cfg.URL != "" {
		key, raw = "release.url", cfg.URL
	}
	u, err := parseDir(raw)
	if err != nil {
		return fmt.Errorf("%s %q: %w", key, redact(raw), redactpkg.Error(err))
	}
	if u.Scheme == "http" && !PinsEveryArtifact(cfg.SHA512) {
		return fmt.Errorf("%s %q: plain HTTP is refused unless every artifact's sha512 is pinned "+
			"(anyone on the network path could replace both a file and its .sha512): pin release.sha512.%q, "+
			"or both release.sha512.%q and release.sha512.%q, in the tool's config (or --sha512 NAME=HEX), or use an https:// or file:// URL",
			key, redact(raw), BundleName, RunscName, ShimName)
	}
	return nil
}

// PinsEveryArtifact reports whether the pins cover every artifact the installer
// would fetch: a pinned bundle means only the bundle is fetched; otherwise both
// loose files must be pinned (see tryBundle).
func PinsEveryArtifact(pins map[string]string) bool {
	return pins[BundleName] != "" || (pins[RunscName] != "" && pins[ShimName] != "")
}

func parseDir(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return nil, fmt.Errorf("no host; want e.g. https://storage.googleapis.com/gvisor/releases/release/%s/x86_64", config.DefaultRelease)
		}
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("file URLs name a local path: file:///path (three slashes)")
		}
		if !strings.HasPrefix(u.Path, "/") {
			return nil, fmt.Errorf("file URLs need an absolute path: file:///path")
		}
	default:
		return nil, fmt.Errorf("scheme %q not supported: use https://, http:// or file:///path", u.Scheme)
	}
	// go-getter reads "//" in a path as a subdirectory marker; keep paths clean.
	u.Path = "/" + strings.Trim(collapseSlashes(u.Path), "/")
	u.RawPath = ""
	u.Fragment = ""
	return u, nil
}

func collapseSlashes(p string) string {
	for strings.Contains(p, "//") {
		p = strings.ReplaceAll(p, "//", "/")
	}
	return p
}

// fileURL returns the URL of one file in the release directory, keeping the
// directory's query (an Azure SAS token applies to every blob in the container).
func fileURL(dir, name string) string {
	u, err := url.Parse(dir)
	if err != nil {
		return dir + "/" + name
	}
	return u.JoinPath(name).String()
}

// otherArch is the arch a wrong-arch diagnosis probes.
func otherArch(a string) string {
	if a == "x86_64" {
		return "aarch64"
	}
	return "x86_64"
}
