package release

import (
	"context"
	"errors"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/config"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/release/releasetest"
)

// noise is incompressible: bzip2 -1 makes one block per 100 kB of it.
func noise(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestBundleUnpacksWhileItDownloads: the server sends half of the bundle and
// holds the rest back until the first file exists in the staging tree. Only
// an installer that unpacks as the bytes arrive gets past that point before
// the server's deadline.
func TestBundleUnpacksWhileItDownloads(t *testing.T) {
	files := bundleFiles(rel1)
	files[RunscName] = append(releasetest.Script("runsc", rel1), noise(2<<20, 1)...)
	bundle := releasetest.TarBz2(t, []releasetest.Entry{
		{Name: RunscName, Type: '0', Data: files[RunscName]},
		{Name: ShimName, Type: '0', Data: files[ShimName]},
	})
	e := newEnv(t)
	seen := make(chan bool, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/rel/gvisor.tar.bz2.sha512":
			w.Write(releasetest.SHA512Line(bundle, BundleName))
		case "/rel/gvisor.tar.bz2":
			w.Header().Set("Content-Length", itoa(int64(len(bundle))))
			half := len(bundle) / 2
			w.Write(bundle[:half])
			w.(http.Flusher).Flush()
			ok := false
			for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline) && !ok; time.Sleep(10 * time.Millisecond) {
				m, _ := filepath.Glob(e.root.Path(bin + "/" + stagingPrefix + "*/tree/" + RunscName))
				ok = len(m) > 0
			}
			seen <- ok
			w.Write(bundle[half:])
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	in := e.installer(rel1)
	in.Cfg.URL = srv.URL + "/rel"
	in.Cfg.SHA512[BundleName] = releasetest.Digest(bundle) // pinned: plain HTTP is fine
	in.Cfg.Timeout = config.Duration(2 * time.Minute)
	res := e.install(in)
	if !<-seen {
		t.Fatalf("runsc was not being unpacked while half of the bundle was still to come\nlog:\n%s", e.logs)
	}
	if res.Digests[RunscName] != releasetest.Digest(files[RunscName]) {
		t.Errorf("runsc digest %s", res.Digests[RunscName])
	}
}

// TestTruncatedBundleRetriedFromAnEmptyTree: the first attempt dies halfway
// through a multi-block bundle after files were staged; the retry unpacks
// into an empty tree (a leftover file would make it fail). On one core.
func TestTruncatedBundleRetriedFromAnEmptyTree(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	e := newEnv(t)
	files := bundleFiles(rel1)
	files[RunscName] = append(releasetest.Script("runsc", rel1), noise(1<<20, 2)...)
	e.srv.AddBundle(rel1, arch, files)
	p := releasetest.BasePath + "/" + rel1 + "/" + arch + "/" + BundleName
	e.srv.SetFault(p, releasetest.Fault{Times: 1, Truncate: true})
	res := e.install(e.installer(rel1))
	if n := e.srv.Count(p); n != 2 {
		t.Errorf("bundle requested %d times, want 2", n)
	}
	for name, data := range files {
		if res.Digests[name] != releasetest.Digest(data) {
			t.Errorf("%s: digest %s, want %s", name, res.Digests[name], releasetest.Digest(data))
		}
	}
}

// TestCorruptBundle: a bundle damaged in transit is reported as the checksum
// mismatch it is, not as whatever broke while unpacking it; a corrupt bundle
// whose published digest matches it is an unpack error, not retried.
func TestCorruptBundle(t *testing.T) {
	e := newEnv(t)
	files := bundleFiles(rel1)
	files[RunscName] = append(releasetest.Script("runsc", rel1), noise(1<<20, 3)...)
	good := e.srv.AddBundle(rel1, arch, files)
	bad := append([]byte(nil), good...)
	bad[len(bad)/3] ^= 0x10
	p := releasetest.BasePath + "/" + rel1 + "/" + arch + "/" + BundleName
	e.srv.Put(p, bad)
	_, err := e.installer(rel1).Install(context.Background(), false)
	var ce *ChecksumError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a checksum mismatch", err)
	}
	e.srv.PutBundle(rel1, arch, bad)
	e.srv.ResetLog()
	_, err = e.installer(rel1).Install(context.Background(), false)
	t.Logf("error: %v", err)
	if err == nil || errors.As(err, &ce) || !strings.Contains(err.Error(), "bzip2") || !strings.Contains(err.Error(), "unpack") {
		t.Fatalf("err = %v, want an unpack error naming bzip2", err)
	}
	if n := e.srv.Count(p); n != 1 {
		t.Errorf("corrupt bundle fetched %d times; it must not be retried", n)
	}
	if m, _ := filepath.Glob(e.root.Path(bin + "/" + stagingPrefix + "*")); len(m) != 0 {
		t.Errorf("staging left behind: %v", m)
	}
}

// TestCorruptBundleFromFileURL: from file://, the bundle is unpacked while
// it is copied, and what is unpacked is what is hashed: a damaged bundle is
// the checksum mismatch, and nothing is installed or left staged.
func TestCorruptBundleFromFileURL(t *testing.T) {
	e := newEnv(t)
	files := bundleFiles(rel1)
	files[RunscName] = append(releasetest.Script("runsc", rel1), noise(1<<20, 3)...)
	good := e.srv.AddBundle(rel1, arch, files)
	dir := t.TempDir()
	e.srv.WriteTree(rel1, arch, dir)
	bad := append([]byte(nil), good...)
	bad[len(bad)/3] ^= 0x10
	if err := os.WriteFile(filepath.Join(dir, BundleName), bad, 0o644); err != nil {
		t.Fatal(err)
	}
	in := e.installer(rel1)
	in.Cfg.URL = "file://" + dir
	_, err := in.Install(context.Background(), false)
	var ce *ChecksumError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a checksum mismatch", err)
	}
	if _, err := os.Lstat(e.root.Path(bin + "/" + RunscName)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("runsc installed from a corrupt bundle (%v)", err)
	}
	if m, _ := filepath.Glob(e.root.Path(bin + "/" + stagingPrefix + "*")); len(m) != 0 {
		t.Errorf("staging left behind: %v", m)
	}
	// The good bundle then installs (once the failed-download back-off is
	// cleared, as its message says).
	if err := os.WriteFile(filepath.Join(dir, BundleName), good, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(e.root.Path("/run/gvisor-bootstrap/failed-download.json")); err != nil {
		t.Fatal(err)
	}
	if res := e.install(in); res.Layout != LayoutBundle {
		t.Fatalf("result %+v", res)
	}
}
