package bench

import (
	"crypto/sha512"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/release/releasetest"
)

// BenchmarkDownload fetches a release (the real runsc and shim, loose layout, with
// their .sha512 files) from a loopback server: `gvisor-bootstrap install` (fetch,
// verify sha512, fsync, place) against `curl` fetching the same four files to
// disk, alternating in the same loop. Reported: each one's throughput over the
// two binaries' bytes and tool/curl in percent (target >= 80). The tool verifies
// sha512 digests (mandatory) and curl does not, so curl followed by `sha512sum -c`
// (the blog's install script) is reported too.
func BenchmarkDownload(b *testing.B) {
	b.Run("loopback", func(b *testing.B) { benchDownload(b, 0) })
	// A realistic link: one HTTP stream from a blob store or a mirror. The server
	// paces every response at 100 MB/s, for curl and the tool alike.
	b.Run("link-100MBps", func(b *testing.B) { benchDownload(b, 100e6) })
}

func benchDownload(b *testing.B, bytesPerSec float64) {
	const rel = "20260914.0"
	runsc, err := os.ReadFile(realBin(b, "runsc"))
	if err != nil {
		b.Fatal(err)
	}
	shim, err := os.ReadFile(realBin(b, "containerd-shim-runsc-v1"))
	if err != nil {
		b.Fatal(err)
	}
	// Plain HTTP, as curl is measured on; the tool takes plain HTTP only with
	// every digest pinned, which is also how a mirror without TLS is used.
	srv := releasetest.NewPlainServer(b)
	srv.AddLoose(rel, "x86_64", runsc, shim)
	pins := []string{}
	for name, d := range srv.Pins(rel, "x86_64") {
		pins = append(pins, "--sha512", name+"="+d)
	}
	dirURL := srv.DirURL(rel, "x86_64")
	if bytesPerSec > 0 {
		dirURL = pacedServer(b, srv, bytesPerSec) + releasetest.BasePath + "/" + rel + "/x86_64"
	}
	bytes := float64(len(runsc) + len(shim))
	gvb := tool(b)
	work := b.TempDir()

	var tTool, tCurl, tCurlCheck, tProto time.Duration
	for b.Loop() {
		b.StopTimer()
		curlDir, root := filepath.Join(work, "curl"), filepath.Join(work, "root")
		os.RemoveAll(curlDir)
		os.RemoveAll(root)
		os.MkdirAll(curlDir, 0o755)
		b.StartTimer()

		t0 := time.Now()
		args := []string{"-sS", "--fail"}
		for _, f := range []string{"runsc", "runsc.sha512", "containerd-shim-runsc-v1", "containerd-shim-runsc-v1.sha512"} {
			args = append(args, "-o", filepath.Join(curlDir, f), dirURL+"/"+f)
		}
		if out, err := exec.Command("curl", args...).CombinedOutput(); err != nil {
			b.Fatalf("curl: %v %s", err, out)
		}
		tCurl += time.Since(t0)

		// What the blog's install script does after the download: check the sums.
		check := exec.Command("sha512sum", "-c", "runsc.sha512", "-c", "containerd-shim-runsc-v1.sha512")
		check.Dir = curlDir
		if out, err := check.CombinedOutput(); err != nil {
			b.Fatalf("sha512sum: %v %s", err, out)
		}
		tCurlCheck += time.Since(t0)

		t0 = time.Now()
		cmd := exec.Command(gvb, append([]string{"--root", root, "install", "--release", rel, "--arch", "x86_64", "--release-url", dirURL}, pins...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("install: %v %s", err, out)
		}
		tTool += time.Since(t0)

		t0 = time.Now()
		singlePassFetch(b, dirURL, filepath.Join(work, "proto"))
		tProto += time.Since(t0)
	}
	n := float64(b.N)
	toolMBs := bytes / 1e6 / (tTool.Seconds() / n)
	curlMBs := bytes / 1e6 / (tCurl.Seconds() / n)
	b.ReportMetric(toolMBs, "tool-MB/s")
	b.ReportMetric(curlMBs, "curl-MB/s")
	checkMBs := bytes / 1e6 / (tCurlCheck.Seconds() / n)
	b.ReportMetric(checkMBs, "curl+sha512sum-MB/s")
	b.ReportMetric(100*toolMBs/curlMBs, "tool/curl-%")
	protoMBs := bytes / 1e6 / (tProto.Seconds() / n)
	b.ReportMetric(100*protoMBs/curlMBs, "single-pass/curl-%")
	b.ReportMetric(100*toolMBs/checkMBs, "tool/curl+sha512sum-%")
	b.ReportMetric(bytes/1e6, "MB")
}

// pacedServer serves what srv serves (fetched from it once per request over
// loopback) at bytesPerSec, in 64 KiB steps.
func pacedServer(b *testing.B, srv *releasetest.Server, bytesPerSec float64) string {
	cache := map[string][]byte{}
	for _, f := range []string{"runsc", "runsc.sha512", "containerd-shim-runsc-v1", "containerd-shim-runsc-v1.sha512"} {
		p := releasetest.BasePath + "/20260914.0/x86_64/" + f
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			b.Fatal(err)
		}
		cache[p], _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	paced := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, ok := cache[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		start := time.Now()
		for off := 0; off < len(data); off += 64 << 10 {
			end := min(off+64<<10, len(data))
			if _, err := w.Write(data[off:end]); err != nil {
				return
			}
			due := start.Add(time.Duration(float64(end) / bytesPerSec * float64(time.Second)))
			time.Sleep(time.Until(due))
		}
	}))
	b.Cleanup(paced.Close)
	return paced.URL
}

// singlePassFetch is the design proposed for bootstrap/release (not the
// product): each file is hashed while it is written (one pass, in the copy),
// checked against its .sha512, fsynced and renamed. It measures what a download
// with mandatory sha512 can cost at best, against the product's
// download-then-re-read-then-re-hash.
func singlePassFetch(b *testing.B, dirURL, dir string) {
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	for _, f := range []string{"runsc", "containerd-shim-runsc-v1"} {
		resp, err := http.Get(dirURL + "/" + f + ".sha512")
		if err != nil {
			b.Fatal(err)
		}
		sum, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp, err = http.Get(dirURL + "/" + f)
		if err != nil {
			b.Fatal(err)
		}
		out, err := os.CreateTemp(dir, "."+f)
		if err != nil {
			b.Fatal(err)
		}
		h := sha512.New()
		_, err = io.Copy(io.MultiWriter(out, h), resp.Body)
		resp.Body.Close()
		if err != nil {
			b.Fatal(err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); !strings.HasPrefix(string(sum), got) {
			b.Fatalf("%s: sha512 mismatch", f)
		}
		if err := out.Sync(); err != nil {
			b.Fatal(err)
		}
		out.Close()
		if err := os.Rename(out.Name(), filepath.Join(dir, f)); err != nil {
			b.Fatal(err)
		}
	}
}
