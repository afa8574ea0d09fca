package bench

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/config"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/release"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/release/releasetest"
)

// BenchmarkInstallInProcess is BenchmarkDownload's install without the process
// around it, for `go test -cpuprofile` (where the time of a download goes).
func BenchmarkInstallInProcess(b *testing.B) {
	const rel = "20260914.0"
	runsc, _ := os.ReadFile(realBin(b, "runsc"))
	shim, _ := os.ReadFile(realBin(b, "containerd-shim-runsc-v1"))
	srv := releasetest.NewServer(b)
	srv.AddLoose(rel, "x86_64", runsc, shim)
	cfg := config.Default().Release
	cfg.Version, cfg.Arch, cfg.URL = rel, "x86_64", srv.DirURL(rel, "x86_64")
	work := b.TempDir()
	b.SetBytes(int64(len(runsc) + len(shim)))
	for b.Loop() {
		b.StopTimer()
		root := filepath.Join(work, "root")
		os.RemoveAll(root)
		b.StartTimer()
		in := &release.Installer{Root: fsroot.New(root), Cfg: cfg, Log: quiet}
		if _, err := in.Install(context.Background(), false); err != nil {
			b.Fatal(err)
		}
	}
}
