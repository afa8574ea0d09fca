package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/release"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/release/releasetest"
)

func runInstallCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(append([]string{"install"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestInstallCommand(t *testing.T) {
	srv := releasetest.NewServer(t)
	runsc := releasetest.Script("runsc", "20260914.0")
	srv.AddLoose("20260914.0", "x86_64", runsc, releasetest.Script("shim", "20260914.0"))
	srv.AddBundle("20261001.0", "aarch64", map[string][]byte{
		"runsc": releasetest.Script("runsc", "20261001.0"), "containerd-shim-runsc-v1": releasetest.Script("shim", "20261001.0"),
		"gvisor-bin/checkpointgofer": releasetest.Script("checkpointgofer", "20261001.0"),
	})
	root := t.TempDir()
	// The config file says one thing; flags override it.
	cfgPath := filepath.Join(root, "etc/gvisor-bootstrap/config.toml")
	os.MkdirAll(filepath.Dir(cfgPath), 0o755)
	cfg := "[release]\nversion = \"20260914.0\"\narch = \"x86_64\"\nbin_dir = \"/opt/from-config\"\nbase_url = \"" + srv.BaseURL() + "\"\nretries = 0\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	// Dry run: says what it would fetch, changes nothing.
	code, out, errs := runInstallCLI(t, "--root", root, "--dry-run")
	if code != ExitOK || !strings.Contains(out, "would install gVisor release 20260914.0") || !strings.Contains(out, srv.DirURL("20260914.0", "x86_64")+"/runsc") {
		t.Fatalf("dry run: %d\n%s\n%s", code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(root, "opt")); err == nil || len(srv.Requests()) != 0 {
		t.Fatal("dry run changed something or fetched")
	}

	// Config only.
	code, out, errs = runInstallCLI(t, "--root", root, "--json")
	if code != ExitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	var res struct {
		OK bool `json:"ok"`
		release.Result
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || !res.OK || !res.Changed || res.Layout != "loose" ||
		res.Digests["runsc"] != releasetest.Digest(runsc) {
		t.Fatalf("json %v: %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(root, "opt/from-config/runsc")); err != nil {
		t.Fatal(err)
	}

	// Flags override the file: another release, arch and bin dir,.
	code, out, errs = runInstallCLI(t, "--root", root, "--release", "20261001.0", "--arch", "aarch64",
		"--bin-dir", "/opt/from-flag", "--timeout", "30s", "--retries", "1", "--deep")
	if code != ExitOK || !strings.Contains(out, "installed gVisor release 20261001.0 (aarch64, bundle layout)") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(root, "opt/from-flag/gvisor-bin/checkpointgofer")); err != nil {
		t.Fatal(err)
	}

	// Second run: nothing to do, no request.
	srv.ResetLog()
	code, out, _ = runInstallCLI(t, "--root", root, "--release", "20261001.0", "--arch", "aarch64", "--bin-dir", "/opt/from-flag")
	if code != ExitOK || !strings.Contains(out, "nothing to do") || len(srv.Requests()) != 0 {
		t.Fatalf("second run: %d %q %v", code, out, srv.Requests())
	}

	// A pin that the server contradicts: exit 1, JSON error, nothing changed.
	bad := strings.Repeat("ab", 64)
	code, out, errs = runInstallCLI(t, "--root", root, "--json", "--release-url", srv.DirURL("20260914.0", "x86_64"), "--sha512", "runsc="+bad, "--bin-dir", "/opt/from-flag")
	if code != ExitFailed || !strings.Contains(out, `"ok":false`) || !strings.Contains(errs, "pins release.sha512.runsc") {
		t.Fatalf("pin conflict: %d\n%s\n%s", code, out, errs)
	}
}

func TestInstallCommandBadFlags(t *testing.T) {
	root := t.TempDir()
	for _, args := range [][]string{
		{"--retries", "many"},
		{"--timeout", "soon"},
		{"--timeout", "-5s"},
		{"--arch", "sparc64"},
		{"--release", "../../etc"},
		{"--release-url", "ftp://mirror/gvisor"},
		{"--sha512", "runsc=xyz"},
		{"--sha512", "kernel=" + strings.Repeat("a", 128)},
		{"--bin-dir", "relative/bin"},
		{"--no-such-flag"},
		{"extra-argument"},
	} {
		code, out, errs := runInstallCLI(t, append([]string{"--root", root}, args...)...)
		if code != ExitUsage || errs == "" {
			t.Errorf("%v: exit %d, want %d\n%s%s", args, code, ExitUsage, out, errs)
		}
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("bad flags changed the root: %v", entries)
	}
	code, out, _ := runInstallCLI(t, "--help")
	if code != ExitOK || !strings.Contains(out, "--sha512") || !strings.Contains(out, "e.g.") {
		t.Errorf("help: %d %s", code, out)
	}
}
