// Package faults is the fault matrix: each test injects one fault into a real
// `gvisor-bootstrap run` (the binary, built once in TestMain, run as a
// subprocess against a temp node root), checks what the operator sees, and proves
// the node is wholly in its old state or wholly in its new one. README.md in this
// directory is the table.
package faults

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/release/releasetest"
)

// bin is gvisor-bootstrap built from this tree (cmd/gvisor-bootstrap), as `make build` does.
var bin string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// `make test-short` is unit tests only; the matrix runs real processes,
		// mounts and servers.
		fmt.Println("fault matrix skipped under -short; run `make test`")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "gvb-faults-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "gvisor-bootstrap")
	build := exec.Command("go", "build", "-o", bin, "github.com/gvisor-bootstrap/gvisor-bootstrap/cmd/gvisor-bootstrap")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build gvisor-bootstrap: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	arch   = "x86_64"
	oldRel = "20260101.0"
	newRel = "20260202.0"
)

// releaseFiles is one release's bundle content: runsc, the shim and a sidecar,
// each a small script naming its release so any mix-up is visible.
func releaseFiles(rel string) map[string][]byte {
	return map[string][]byte{
		"runsc":                      releasetest.Script("runsc", rel),
		"containerd-shim-runsc-v1":   releasetest.Script("containerd-shim-runsc-v1", rel),
		"gvisor-bin/checkpointgofer": releasetest.Script("checkpointgofer", rel),
	}
}

// The AKS Ubuntu 22.04 shape (containerd 1.7, version = 2, SystemdCgroup).
const oldContainerdConfig = `version = 2
oom_score = 0

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "mcr.microsoft.com/oss/kubernetes/pause:3.6"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/bin/runc"
        SystemdCgroup = true
`

// node is a temp node root, the loopback release server and the tool's config.
type node struct {
	t      *testing.T
	dir    string
	root   fsroot.Root
	srv    *releasetest.Server
	extra  string // appended to the tool's config file
	rel    string // the release the config asks for
	cdVers string
	// resetURL is a second server that replaced the release server (network faults).
	resetURL string
}

func newNode(t *testing.T) *node {
	t.Helper()
	return newNodeIn(t, t.TempDir())
}

// newNodeIn makes the node in dir (a short one when a containerd socket lives
// under it: unix socket paths are limited to 108 bytes).
func newNodeIn(t *testing.T, dir string) *node {
	t.Helper()
	n := &node{t: t, dir: dir, srv: releasetest.NewServer(t), rel: newRel, cdVers: "1.7.35"}
	n.root = fsroot.New(n.dir)
	n.srv.AddBundle(oldRel, arch, releaseFiles(oldRel))
	n.srv.AddBundle(newRel, arch, releaseFiles(newRel))
	n.writeFile("/etc/containerd/config.toml", oldContainerdConfig, 0o644)
	n.writeToolConfig()
	return n
}

func (n *node) writeToolConfig() {
	cfg := fmt.Sprintf(`[release]
version = %q
base_url = %q
arch = %q
retries = 1
timeout = "3s"

[containerd]
version = %q
`, n.rel, n.srv.BaseURL(), arch, n.cdVers) + n.extra
	n.writeFile("/etc/gvisor-bootstrap/config.toml", cfg, 0o644)
}

func (n *node) path(p string) string { return n.root.Path(p) }

func (n *node) writeFile(p, data string, mode fs.FileMode) {
	n.t.Helper()
	full := n.path(p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		n.t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(data), mode); err != nil {
		n.t.Fatal(err)
	}
}

func (n *node) read(p string) []byte {
	b, err := os.ReadFile(n.path(p))
	if err != nil {
		return nil
	}
	return b
}

// result of one subprocess run.
type result struct {
	code   int
	killed bool // ended by SIGKILL (a fault point)
	stdout string
	stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d killed=%v\nstdout:\n%s\nstderr:\n%s", r.code, r.killed, r.stdout, r.stderr)
}

// exec runs gvisor-bootstrap against the node; env adds variables (GVB_FAULTPOINT).
func (n *node) exec(env []string, args ...string) result {
	n.t.Helper()
	cmd := exec.Command(bin, append([]string{"--root", n.dir}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		ws := ee.Sys().(syscall.WaitStatus)
		r.code, r.killed = ws.ExitStatus(), ws.Signaled() && ws.Signal() == syscall.SIGKILL
	} else if err != nil {
		n.t.Fatalf("run %s: %v", bin, err)
	}
	return r
}

func (n *node) run(args ...string) result {
	n.t.Helper()
	r := n.exec(nil, append([]string{"run"}, args...)...)
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.Contains(l, "FAILED") {
			n.t.Logf("user sees (exit %d): %s", r.code, l)
		}
	}
	return r
}

// install puts a release in place with the tool itself (the "old" state).
func (n *node) install(rel string) {
	n.t.Helper()
	if r := n.exec(nil, "install", "--release", rel); r.code != 0 {
		n.t.Fatalf("install %s: %s", rel, r)
	}
}

// binState names the release every entry point resolves into: all of runsc, the
// shim and gvisor-bin must lead into ONE directory whose files hash to exactly
// one release's files. "" means nothing is installed; anything else fails.
func (n *node) binState() string {
	n.t.Helper()
	rels := n.entryReleases()
	if len(rels) == 0 {
		return ""
	}
	seen := map[string]bool{}
	for _, r := range rels {
		seen[r] = true
	}
	if len(rels) != len(entryPoints) || len(seen) != 1 {
		n.t.Fatalf("entry points do not resolve into one release: %v\n%s", rels, n.listBin())
	}
	return rels["runsc"]
}

var entryPoints = []string{"runsc", "containerd-shim-runsc-v1", "gvisor-bin"}

// entryReleases maps each entry point that exists to the release whose versioned
// directory it resolves into. Each such directory must hold exactly one
// release's files (runsc and its sidecars can never be mixed); a half-written
// directory fails the test.
func (n *node) entryReleases() map[string]string {
	n.t.Helper()
	binDir := n.path("/usr/local/bin")
	out := map[string]string{}
	for _, name := range entryPoints {
		real, err := filepath.EvalSymlinks(filepath.Join(binDir, name))
		if err != nil {
			continue
		}
		dir := filepath.Dir(real)
		rel := ""
		for _, r := range []string{oldRel, newRel} {
			if sameFiles(dir, releaseFiles(r)) {
				rel = r
			}
		}
		if rel == "" {
			n.t.Fatalf("%s resolves into %s, which holds files of no single release\n%s", name, dir, n.listBin())
		}
		out[name] = rel
	}
	return out
}

func sameFiles(dir string, want map[string][]byte) bool {
	for name, data := range want {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || digest(got) != digest(data) {
			return false
		}
	}
	return true
}

func digest(b []byte) string { s := sha512.Sum512(b); return hex.EncodeToString(s[:]) }

func (n *node) listBin() string {
	var b strings.Builder
	_ = filepath.WalkDir(n.path("/usr/local/bin"), func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			t, _ := os.Readlink(p)
			fmt.Fprintf(&b, "  %s %s\n", strings.TrimPrefix(p, n.dir), t)
		}
		return nil
	})
	return b.String()
}

// configState says whether containerd's config is byte-equal to the old file or
// to the new one (want), and that it parses as TOML; anything else fails.
func (n *node) configState(old, new []byte) string {
	n.t.Helper()
	got := n.read("/etc/containerd/config.toml")
	var v map[string]any
	if err := toml.Unmarshal(got, &v); err != nil {
		n.t.Fatalf("containerd's config does not parse: %v\n%s", err, got)
	}
	switch {
	case bytes.Equal(got, old):
		return "old"
	case bytes.Equal(got, new):
		return "new"
	}
	n.t.Fatalf("containerd's config is neither the old nor the new file:\n%s", got)
	return ""
}

// wantNew is the containerd config a clean run writes from oldContainerdConfig,
// computed once on a scratch node by the tool itself.
func wantNew(t *testing.T) (config, options []byte) {
	t.Helper()
	return wantNewFor(t, oldContainerdConfig, "1.7.35")
}

// wantNewFor is wantNew for another starting config and containerd version.
func wantNewFor(t *testing.T, old, containerdVersion string) (config, options []byte) {
	t.Helper()
	ref := newNode(t)
	ref.cdVers = containerdVersion
	ref.writeToolConfig()
	ref.writeFile("/etc/containerd/config.toml", old, 0o644)
	if r := ref.run(); r.code != 10 {
		t.Fatalf("reference run: %s", r)
	}
	return ref.read("/etc/containerd/config.toml"), ref.read("/etc/containerd/runsc.toml")
}

// mustContain fails unless every part appears in s.
func mustContain(t *testing.T, s string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(s, p) {
			t.Errorf("output lacks %q:\n%s", p, s)
		}
	}
}

// completes proves the next plain run finishes the job: exit 10 or 0, the new
// config, the wanted release, and `verify --deep` passes.
func (n *node) completes(newConfig []byte) {
	n.t.Helper()
	r := n.run()
	if r.code != 10 && r.code != 0 {
		n.t.Fatalf("next run did not complete the job: %s", r)
	}
	if got := n.read("/etc/containerd/config.toml"); !bytes.Equal(got, newConfig) {
		n.t.Fatalf("after the next run the config is not the new one:\n%s", got)
	}
	if rel := n.binState(); rel != n.rel {
		n.t.Fatalf("after the next run release %q is installed, want %s", rel, n.rel)
	}
	if v := n.exec(nil, "verify", "--deep"); v.code != 0 {
		n.t.Fatalf("verify --deep after the next run: %s", v)
	}
}
