package containerd

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
)

// Version is a containerd release.
type Version struct {
	Major, Minor, Patch int
	Raw                 string
}

func (v Version) String() string {
	return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
}

// Less reports whether v is older than major.minor.
func (v Version) Less(major, minor int) bool {
	return v.Major < major || v.Major == major && v.Minor < minor
}

// IsZero reports an unknown version.
func (v Version) IsZero() bool { return v == Version{} }

// versionRe finds the release in `containerd --version` output
// ("containerd github.com/containerd/containerd/v2 v2.3.7 <commit>",
// "containerd github.com/containerd/containerd 1.6.20~ds1 ...") or a bare "v1.7.35".
var versionRe = regexp.MustCompile(`(?:^|\s)v?(\d+)\.(\d+)\.(\d+)`)

// ParseVersion reads a containerd version from `containerd --version` output or a
// bare version such as "v1.7.35" or "1.7.35".
func ParseVersion(s string) (Version, error) {
	m := versionRe.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return Version{}, fmt.Errorf("cannot read a containerd version from %q: want output of `containerd --version` or a version such as 1.7.35", s)
	}
	v := Version{Raw: strings.TrimSpace(s)}
	v.Major, _ = strconv.Atoi(m[1])
	v.Minor, _ = strconv.Atoi(m[2])
	v.Patch, _ = strconv.Atoi(m[3])
	return v, nil
}

// containerdCommand runs `containerd --version`; tests replace it.
var containerdCommand = func(ctx context.Context) ([]byte, error) {
	return exec.CommandContext(ctx, "containerd", "--version").CombinedOutput()
}

// DetectVersion finds the node's containerd release: the override when given
// (--containerd-version / containerd.version), else `containerd --version` when the
// root is the running system. Under another root the binary found on PATH is not the
// node's, so the version must be given.
func DetectVersion(ctx context.Context, root fsroot.Root, override string) (Version, error) {
	if override != "" {
		v, err := ParseVersion(override)
		if err != nil {
			return Version{}, fmt.Errorf("--containerd-version: %w", err)
		}
		return v, nil
	}
	if !root.IsHost() {
		return Version{}, fmt.Errorf("cannot tell which containerd the node under --root %s runs: pass --containerd-version (for example --containerd-version 2.1.4) or set containerd.version in the tool's config", root.Dir())
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := containerdCommand(ctx)
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return Version{}, fmt.Errorf("containerd is not installed (not on PATH): install containerd >= 1.7 first, or pass --containerd-version")
		}
		return Version{}, fmt.Errorf("run `containerd --version`: %v: %s; pass --containerd-version to skip detection", err, strings.TrimSpace(string(out)))
	}
	return ParseVersion(string(out))
}

// CheckSupported refuses containerd releases the runsc shim cannot work with.
func CheckSupported(v Version) error {
	if v.Less(1, 7) {
		return fmt.Errorf("containerd %s is too old: the gVisor shim needs containerd >= 1.7 (1.6 cannot parse the shim's bootstrap address and every sandbox fails); upgrade containerd", v)
	}
	return nil
}

// KnownBad says why a containerd release that works with the shim should still
// be upgraded ("" when none is known): 2.0.0 to 2.0.5 and 2.1.0 to 2.1.1 hang
// deleting gVisor pods (containerd #11708, #11871; fixed in 2.0.6 and 2.1.2).
func KnownBad(v Version) string {
	if v.Major == 2 && (v.Minor == 0 && v.Patch <= 5 || v.Minor == 1 && v.Patch <= 1) {
		return fmt.Sprintf("containerd %s hangs deleting gVisor pods (containerd issues #11708 and #11871): upgrade containerd to 2.0.6, 2.1.2 or later", v)
	}
	return ""
}
