package release

import (
	"context"
	"log/slog"
	"testing"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/release/releasetest"
)

// BenchmarkInstallNoop is the boot path when the release is already installed:
// read the state, stat the files and links, no hashing, no network, no write.
// The goal is well under 20 ms.
func BenchmarkInstallNoop(b *testing.B) {
	srv := releasetest.NewServer(b)
	srv.AddBundle(rel1, arch, bundleFiles(rel1))
	e := &env{srv: srv, root: fsroot.New(b.TempDir()), logs: &syncBuffer{}}
	in := e.installer(rel1)
	in.Log = slog.New(slog.DiscardHandler)
	if _, err := in.Install(context.Background(), false); err != nil {
		b.Fatal(err)
	}
	srv.ResetLog()
	b.ReportAllocs()
	for b.Loop() {
		res, err := in.Install(context.Background(), false)
		if err != nil || res.Changed {
			b.Fatalf("%+v %v", res, err)
		}
	}
	if n := len(srv.Requests()); n != 0 {
		b.Fatalf("%d requests on the no-op path", n)
	}
}
