package release

import (
	"archive/tar"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/release/releasetest"
)

func reg(name, data string) releasetest.Entry {
	return releasetest.Entry{Name: name, Type: tar.TypeReg, Data: []byte(data)}
}

var okEntries = []releasetest.Entry{reg("runsc", "r"), reg("containerd-shim-runsc-v1", "s")}

func TestExtractBundleRefusesUnsafeEntries(t *testing.T) {
	for name, tc := range map[string]struct {
		entries []releasetest.Entry
		want    string
	}{
		"absolute path": {append(okEntries, reg("/etc/passwd", "x")), "absolute path"},
		"dot dot":       {append(okEntries, reg("gvisor-bin/../../evil", "x")), `".."`},
		"dot dot top":   {append(okEntries, reg("../runsc", "x")), `".."`},
		"symlink":       {append(okEntries, releasetest.Entry{Name: "gvisor-bin/x", Type: tar.TypeSymlink, Linkname: "/etc/shadow"}), "symlink"},
		"hard link":     {append(okEntries, releasetest.Entry{Name: "gvisor-bin/x", Type: tar.TypeLink, Linkname: "runsc"}), "hard link"},
		"device":        {append(okEntries, releasetest.Entry{Name: "gvisor-bin/kmem", Type: tar.TypeChar}), "device"},
		"fifo":          {append(okEntries, releasetest.Entry{Name: "runsc-fifo", Type: tar.TypeFifo}), ""},
		"nested":        {append(okEntries, reg("gvisor-bin/a/b", "x")), "sidecars are flat"},
		"duplicate":     {append(okEntries, reg("./runsc", "again")), "appears twice"},
		"no runsc":      {[]releasetest.Entry{reg("containerd-shim-runsc-v1", "s")}, "has no runsc"},
		"not bzip2":     {nil, "bzip2"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			archive := filepath.Join(dir, "gvisor.tar.bz2")
			data := []byte("this is not a bzip2 stream")
			if tc.entries != nil {
				data = releasetest.TarBz2(t, tc.entries)
			}
			if err := os.WriteFile(archive, data, 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "out")
			os.Mkdir(out, 0o755)
			_, err := extractBundle(archive, out)
			if name == "fifo" {
				// An unknown top-level name is skipped whatever its type.
				if err != nil {
					t.Fatalf("fifo outside the install set: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
			// Nothing escaped the output directory.
			if _, err := os.Lstat(filepath.Join(dir, "evil")); err == nil {
				t.Error("wrote outside the directory")
			}
		})
	}
}

func TestExtractBundleLayout(t *testing.T) {
	dir := t.TempDir()
	archive := filepath.Join(dir, "b.tar.bz2")
	entries := []releasetest.Entry{
		{Name: "./", Type: tar.TypeDir}, reg("./runsc", "r"), reg("containerd-shim-runsc-v1", "s"),
		{Name: "gvisor-bin/", Type: tar.TypeDir}, reg("gvisor-bin/gvisor_sentry", "g"), reg("README", "skipped"),
	}
	os.WriteFile(archive, releasetest.TarBz2(t, entries), 0o644)
	out := filepath.Join(dir, "out")
	os.Mkdir(out, 0o755)
	got, err := extractBundle(archive, out)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "runsc,containerd-shim-runsc-v1,gvisor-bin/gvisor_sentry" {
		t.Errorf("wrote %v", got)
	}
	fi, err := os.Stat(filepath.Join(out, "gvisor-bin/gvisor_sentry"))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("sidecar %v %v", fi, err)
	}
	if _, err := os.Stat(filepath.Join(out, "README")); err == nil {
		t.Error("README extracted")
	}
}

// An unsafe bundle with a valid digest is still refused, and nothing changes.
func TestInstallRefusesUnsafeBundle(t *testing.T) {
	e := newEnv(t)
	e.srv.AddBundle(rel1, arch, bundleFiles(rel1))
	e.install(e.installer(rel1))
	before := snapshot(t, e.root, false)
	e.srv.PutBundle(rel2, arch, releasetest.TarBz2(t, append(okEntries, releasetest.Entry{Name: "gvisor-bin/x", Type: tar.TypeSymlink, Linkname: "/etc/shadow"})))
	_, err := e.installer(rel2).Install(context.Background(), false)
	if err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("err %v", err)
	}
	e.unchanged(before)
}

func TestParseSHA512File(t *testing.T) {
	d := releasetest.Digest([]byte("x"))
	for in, want := range map[string]string{
		d + "  runsc\n":                  d,
		d + " *runsc\n":                  d,
		strings.ToUpper(d) + "\n":        d,
		d + "  ./dist/runsc":             d,
		"\n" + d + "  runsc\n":           d,
		d + "  containerd-shim-runsc-v1": "error",
		"deadbeef  runsc":                "error",
		"":                               "error",
	} {
		got, err := parseSHA512File([]byte(in), "runsc")
		if err != nil {
			got = "error"
		}
		if got != want {
			t.Errorf("parse %q = %q (%v), want %q", in, got, err, want)
		}
	}
}
