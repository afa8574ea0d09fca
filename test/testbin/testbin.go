// Package testbin finds the real third-party programs that tests run against:
// binaries built by test/tools/build-binaries.sh into .cache/bin (containerd,
// runsc, the shim, crictl) and tools from Debian's packages (packer, cloud-init,
// systemd-analyze).
//
// `make test` sets GVB_TEST_BIN, and then a missing program fails the test: the
// suite must prove behaviour against the real thing. A bare `go test` without it
// skips those tests with a message saying how to run them.
package testbin

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Dir is the cache of built binaries, or "" when not running under `make test`.
func Dir() string { return os.Getenv("GVB_TEST_BIN") }

// Require returns the path of a real program: first the build cache, then PATH.
func Require(t testing.TB, name string) string {
	t.Helper()
	dir := Dir()
	if dir != "" {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if dir == "" {
		t.Skipf("%s not found; run `make test` (it builds and installs the real programs the tests need)", name)
	}
	t.Fatalf("%s is required but neither in %s nor on PATH: run test/tools/build-binaries.sh or .ci/run", name, dir)
	return ""
}
