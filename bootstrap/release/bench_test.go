package release

import (
	"context"
	"crypto/sha512"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"testing"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/proctable/proctabletest"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/release/releasetest"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/test/syncbuf"
)

// BenchmarkInstallNoop is the boot path when the release is already installed:
// read the state, stat the files and links, no hashing, no network, no write.
// The goal is well under 20 ms.
func BenchmarkInstallNoop(b *testing.B) {
	srv := releasetest.NewServer(b)
	srv.AddBundle(rel1, arch, bundleFiles(rel1))
	e := &env{srv: srv, root: fsroot.New(b.TempDir()), logs: &syncbuf.Buffer{}}
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

// BenchmarkExtractBundle unpacks a real bundle (GVB_BENCH_BUNDLE, e.g. the
// one test/bench/bundle.sh packs) as a first install does from file://: the
// compressed bytes hashed as they are read, the blocks decoded on all cores,
// the files hashed, written and fsynced. For profiles of the decoding path:
// go test -run X -bench ExtractBundle -cpuprofile cpu.out ./bootstrap/release
func BenchmarkExtractBundle(b *testing.B) {
	path := os.Getenv("GVB_BENCH_BUNDLE")
	if path == "" {
		b.Skip("set GVB_BENCH_BUNDLE to a gvisor.tar.bz2")
	}
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(st.Size())
	for b.Loop() {
		b.StopTimer()
		dir := b.TempDir()
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		h := sha512.New()
		if _, _, err := extractBundleFrom(context.Background(), io.TeeReader(f, h), dir); err != nil {
			b.Fatal(err)
		}
		h.Sum(nil)
		f.Close()
	}
}

// BenchmarkInstallNoopWithPreviousInUse is the no-op run while a sandbox still
// executes from the previous release: the same, plus one scan of the node's
// /proc (here a procfs of the machine, whatever runs on it) and no write.
func BenchmarkInstallNoopWithPreviousInUse(b *testing.B) {
	srv := releasetest.NewServer(b)
	srv.AddBundle(rel1, arch, bundleFiles(rel1))
	srv.AddBundle(rel2, arch, bundleFiles(rel2))
	e := &env{srv: srv, root: fsroot.New(b.TempDir()), logs: &syncbuf.Buffer{}}
	proctabletest.MountProc(b, e.root.Path("/proc"))
	for _, r := range []string{rel1, rel2} {
		in := e.installer(r)
		in.Log = slog.New(slog.DiscardHandler)
		if r == rel2 {
			// A process executing from the old release keeps it.
			st, _ := LoadState(e.root)
			sandbox := e.root.Path(st.Dir + "/gvisor-bin/runsc-sandbox")
			proctabletest.CopySleeper(b, sandbox)
			cmd := exec.Command(sandbox, "600")
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		}
		if _, err := in.Install(context.Background(), false); err != nil {
			b.Fatal(err)
		}
	}
	in := e.installer(rel2)
	in.Log = slog.New(slog.DiscardHandler)
	st, _ := LoadState(e.root)
	if st.Previous == "" {
		b.Fatal("no previous release kept")
	}
	b.ReportAllocs()
	for b.Loop() {
		res, err := in.Install(context.Background(), false)
		if err != nil || res.Changed {
			b.Fatalf("%+v %v", res, err)
		}
	}
	if now, _ := LoadState(e.root); now.Previous != st.Previous {
		b.Fatalf("previous %q, want %q", now.Previous, st.Previous)
	}
}
