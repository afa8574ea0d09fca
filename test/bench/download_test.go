package bench

import (
	"os"
	"os/exec"
	"path/filepath"
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
	const rel = "20260914.0"
	runsc, err := os.ReadFile(realBin(b, "runsc"))
	if err != nil {
		b.Fatal(err)
	}
	shim, err := os.ReadFile(realBin(b, "containerd-shim-runsc-v1"))
	if err != nil {
		b.Fatal(err)
	}
	srv := releasetest.NewServer(b)
	srv.AddLoose(rel, "x86_64", runsc, shim)
	dirURL := srv.DirURL(rel, "x86_64")
	bytes := float64(len(runsc) + len(shim))
	gvb := tool(b)
	work := b.TempDir()

	var tTool, tCurl, tCurlCheck time.Duration
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
		cmd := exec.Command(gvb, "--root", root, "install", "--release", rel, "--arch", "x86_64", "--release-url", dirURL)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("install: %v %s", err, out)
		}
		tTool += time.Since(t0)
	}
	n := float64(b.N)
	toolMBs := bytes / 1e6 / (tTool.Seconds() / n)
	curlMBs := bytes / 1e6 / (tCurl.Seconds() / n)
	b.ReportMetric(toolMBs, "tool-MB/s")
	b.ReportMetric(curlMBs, "curl-MB/s")
	checkMBs := bytes / 1e6 / (tCurlCheck.Seconds() / n)
	b.ReportMetric(checkMBs, "curl+sha512sum-MB/s")
	b.ReportMetric(100*toolMBs/curlMBs, "tool/curl-%")
	b.ReportMetric(100*toolMBs/checkMBs, "tool/curl+sha512sum-%")
	b.ReportMetric(bytes/1e6, "MB")
}
