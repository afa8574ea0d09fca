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

// A skipped entry is decompressed to get past it: it counts against the bounds,
// and one larger than any README is refused from its header, before a byte of
// it is decompressed.
func TestExtractBundleBoundsCountSkippedEntries(t *testing.T) {
	for name, e := range map[string]releasetest.Entry{
		// header only: 16 GiB announced, nothing behind it (a bomb's header)
		"16 GiB README":        {Name: "README", Type: tar.TypeReg, Size: 16 << 30},
		"README over the skip": {Name: "README", Type: tar.TypeReg, Data: make([]byte, maxSkippedEntry+1)},
		"file over the bound":  {Name: "gvisor-bin/big", Type: tar.TypeReg, Size: maxBundleFile + 1},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			archive := filepath.Join(dir, "gvisor.tar.bz2")
			if err := os.WriteFile(archive, releasetest.TarBz2(t, append(append([]releasetest.Entry{}, okEntries...), e)), 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "out")
			os.Mkdir(out, 0o755)
			_, err := extractBundle(archive, out)
			if err == nil || !strings.Contains(err.Error(), "exceeds the size bounds") || !strings.Contains(err.Error(), e.Name) {
				t.Fatalf("err %v, want the bounds refusal naming %s", err, e.Name)
			}
			// What was unpacked before it is in the staging directory, which the
			// installer removes (TestBundleBombOnTheNode in test/faults).
		})
	}
}

// Unpacking stops when the context ends, even inside one entry.
func TestExtractBundleStopsOnCancel(t *testing.T) {
	dir := t.TempDir()
	archive := filepath.Join(dir, "gvisor.tar.bz2")
	big := releasetest.Entry{Name: "runsc", Type: tar.TypeReg, Data: make([]byte, 64<<20)}
	if err := os.WriteFile(archive, releasetest.TarBz2(t, []releasetest.Entry{big, reg("containerd-shim-runsc-v1", "s")}), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	os.Mkdir(out, 0o755)
	// The context ends after 50 reads of the decompressed stream: well inside
	// runsc (64 MiB is far more than 50 reads of tar's 32 KiB buffer... or any).
	ctx := &endsAfter{Context: context.Background(), left: 50}
	_, _, err := extractBundleHashed(ctx, archive, out)
	if err == nil || !strings.Contains(err.Error(), "unpacking stopped") {
		t.Fatalf("err %v, want the unpacking stopped by the cancel", err)
	}
	if st, err := os.Stat(filepath.Join(out, "runsc")); err == nil && st.Size() == 64<<20 {
		t.Fatal("runsc was written whole after the cancel")
	}
}

// endsAfter is a context that is canceled after its Err has been asked n times.
type endsAfter struct {
	context.Context
	left int
}

func (c *endsAfter) Err() error {
	if c.left--; c.left < 0 {
		return context.Canceled
	}
	return nil
}

// TestExtractBundleLargeFiles: files of many MiB (whose disk writes start as
// they are written) unpack byte for byte.
func TestExtractBundleLargeFiles(t *testing.T) {
	big := make([]byte, 2*writebackEvery+12345)
	for i := range big {
		big[i] = byte(i * 7 / 5)
	}
	entries := []releasetest.Entry{
		{Name: "runsc", Type: tar.TypeReg, Data: big},
		reg("containerd-shim-runsc-v1", "s"),
	}
	archive := filepath.Join(t.TempDir(), BundleName)
	if err := os.WriteFile(archive, releasetest.TarBz2(t, entries), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := extractBundle(archive, dir); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "runsc"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(big) {
		t.Fatalf("runsc: %d bytes, want %d, or different bytes", len(got), len(big))
	}
}
