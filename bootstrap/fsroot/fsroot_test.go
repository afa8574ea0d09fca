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
