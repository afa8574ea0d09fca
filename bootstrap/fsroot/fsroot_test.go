package fsroot

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPathStaysUnderRoot(t *testing.T) {
	r := New("/host")
	for in, want := range map[string]string{
		"/etc/containerd/config.toml": "/host/etc/containerd/config.toml",
		"etc/x":                       "/host/etc/x",
		"/../../etc/passwd":           "/host/etc/passwd",
	} {
		if got := r.Path(in); got != want {
			t.Errorf("Path(%q) = %q, want %q", in, got, want)
		}
	}
	if got := r.NodePath("/host/etc/x"); got != "/etc/x" {
		t.Errorf("NodePath = %q", got)
	}
	if !New("").IsHost() || New("/tmp").IsHost() {
		t.Error("IsHost wrong")
	}
}

func TestWriteFileKeepsModeAndReplacesAtomically(t *testing.T) {
	r := New(t.TempDir())
	if err := r.WriteFile("/etc/a/b.toml", []byte("one"), WriteOptions{Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	p := r.Path("/etc/a/b.toml")
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(p)
	if err := r.WriteFile("/etc/a/b.toml", []byte("two"), WriteOptions{Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(p)
	if after.Mode().Perm() != 0o640 {
		t.Errorf("existing mode not kept: %v", after.Mode())
	}
	if os.SameFile(before, after) {
		t.Error("file replaced in place; want a new inode (rename)")
	}
	if b, _ := os.ReadFile(p); string(b) != "two" {
		t.Errorf("content %q", b)
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestWriteFileErrorNamesPath(t *testing.T) {
	dir := t.TempDir()
	r := New(dir)
	if err := os.WriteFile(filepath.Join(dir, "etc"), []byte("not a dir"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := r.WriteFile("/etc/x", []byte("y"), WriteOptions{})
	if err == nil || !contains(err.Error(), filepath.Join(dir, "etc")) {
		t.Fatalf("error %v does not name the path", err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// escapeNode is a root and, beside it, a directory outside the root that a link
// on the node names, the way a hostile or misconfigured node would.
func escapeNode(t *testing.T) (root Root, outside string) {
	t.Helper()
	parent := t.TempDir()
	dir := filepath.Join(parent, "root")
	outside = filepath.Join(parent, "elsewhere")
	for _, d := range []string{filepath.Join(dir, "etc"), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return New(dir), outside
}

// TestDirectorySymlinksResolveInsideRoot: R/etc/containerd pointing outside the
// root, absolutely or through "..", resolves as in a chroot: reads and writes land
// in R/elsewhere and the directory outside is never touched.
func TestDirectorySymlinksResolveInsideRoot(t *testing.T) {
	for name, target := range map[string]func(outside string) string{
		"absolute": func(outside string) string { return outside },
		"relative": func(outside string) string { return "../../../../../../../../.." + outside },
		"dotdot":   func(outside string) string { return "../../elsewhere" },
	} {
		t.Run(name, func(t *testing.T) {
			r, outside := escapeNode(t)
			tgt := target(outside)
			if err := os.Symlink(tgt, filepath.Join(r.Dir(), "etc/containerd")); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(outside, "config.toml"), []byte("host's own"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := r.WriteFile("/etc/containerd/config.toml", []byte("node"), WriteOptions{}); err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(filepath.Join(outside, "config.toml")); string(b) != "host's own" {
				t.Fatalf("wrote outside the root: %s holds %q", outside, b)
			}
			ents, _ := os.ReadDir(outside)
			if len(ents) != 1 {
				t.Fatalf("outside directory changed: %v", ents)
			}
			b, err := r.ReadFile("/etc/containerd/config.toml")
			if err != nil || string(b) != "node" {
				t.Fatalf("ReadFile through the link = %q, %v", b, err)
			}
			// Where it landed: the link's target taken as a node path.
			wantDir := filepath.Join(r.Dir(), filepath.Join("/", tgt))
			if name == "dotdot" {
				wantDir = filepath.Join(r.Dir(), "elsewhere")
			}
			if got := r.Path("/etc/containerd/config.toml"); got != filepath.Join(wantDir, "config.toml") {
				t.Fatalf("Path = %s, want %s", got, filepath.Join(wantDir, "config.toml"))
			}
			if got := r.LinkPath("/etc/containerd"); got != filepath.Join(r.Dir(), "etc/containerd") {
				t.Fatalf("LinkPath of the link itself = %s", got)
			}
			if err := r.Remove("/etc/containerd/config.toml"); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(outside, "config.toml")); err != nil {
				t.Fatalf("Remove through the link removed the host's file: %v", err)
			}
		})
	}
}

// TestFileSymlinkFollowedInsideRoot: reading a file link follows it inside the
// root; writing replaces the entry, as rename(2) on the node does.
func TestFileSymlinkFollowedInsideRoot(t *testing.T) {
	r, outside := escapeNode(t)
	if err := os.WriteFile(filepath.Join(outside, "passwd"), []byte("host secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(r.Dir(), "etc/x")
	if err := os.Symlink(filepath.Join(outside, "passwd"), link); err != nil {
		t.Fatal(err)
	}
	if b, err := r.ReadFile("/etc/x"); err == nil {
		t.Fatalf("read the host's file through an absolute link: %q", b)
	}
	if r.Exists("/etc/x") {
		t.Fatal("Exists followed the link out of the root")
	}
	if err := r.WriteFile("/etc/x", []byte("node"), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "passwd")); string(b) != "host secret" {
		t.Fatalf("host file changed: %q", b)
	}
	if b, _ := os.ReadFile(link); string(b) != "node" {
		t.Fatalf("entry = %q", b)
	}
}

// TestSymlinkLoopFailsClosed: a loop is an error on every use, never a guess.
func TestSymlinkLoopFailsClosed(t *testing.T) {
	r, _ := escapeNode(t)
	if err := os.Symlink("/etc/loop", filepath.Join(r.Dir(), "etc/loop")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Resolve("/etc/loop/x"); err == nil {
		t.Fatal("Resolve of a loop succeeded")
	}
	if err := r.WriteFile("/etc/loop/x", []byte("y"), WriteOptions{}); err == nil {
		t.Fatal("WriteFile through a loop succeeded")
	}
	if _, err := os.Stat(r.Path("/etc/loop/x")); err == nil {
		t.Fatal("Path of a loop resolved")
	}
}

// On a real node (--root /) Path follows links as on a temporary root: the
// installed release is found through its .gvisor-current link (the e2e's baked
// node re-downloaded on every boot when "/" was only cleaned).
func TestHostRootPathFollowsSymlinks(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "release.1")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("release.1", filepath.Join(dir, ".current")); err != nil {
		t.Fatal(err)
	}
	host := New("/")
	want, _ := filepath.EvalSymlinks(target)
	if got := host.Path(filepath.Join(dir, ".current")); got != want {
		t.Fatalf("Path on / = %s, want %s", got, want)
	}
	if got := host.LinkPath(filepath.Join(dir, ".current")); filepath.Base(got) != ".current" {
		t.Fatalf("LinkPath on / followed the link: %s", got)
	}
	if got := host.Path(filepath.Join(dir, "missing/file")); got != filepath.Join(filepath.Dir(want), "missing/file") {
		t.Fatalf("Path on / of a missing file = %s", got)
	}
}
