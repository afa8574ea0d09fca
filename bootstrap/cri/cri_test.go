package cri

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/test/containerdproc"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/test/testbin"
)

// The real containerd 2.x answers the CRI: a runtime in its config is a handler,
// one that is not there is not.
func TestStatusFromRealContainerd(t *testing.T) {
	bin := testbin.Require(t, "containerd-2")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	body := "version = 3\n" + containerdproc.Settings(dir) +
		"[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runsc]\n  runtime_type = \"io.containerd.runsc.v1\"\n"
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	p := containerdproc.New(t, bin, cfg, dir)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	rt, err := Dial(fsroot.New("/"), p.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := WaitStatus(ctx, rt, 100*time.Millisecond)
	if err != nil {
		t.Fatalf("%v\n%s", err, p.Log())
	}
	if !st.HasHandler("runsc") || st.ConfigRuntimes["runsc"] != "io.containerd.runsc.v1" {
		t.Fatalf("runsc not seen: %+v", st)
	}
	if st.HasHandler("kata") {
		t.Fatalf("kata reported but not configured: %+v", st)
	}
	name, ver, err := rt.Version(ctx)
	if err != nil || name != "containerd" || ver == "" {
		t.Fatalf("version %q %q %v", name, ver, err)
	}
	pods, err := rt.SandboxesWithHandler(ctx, "runsc")
	if err != nil || len(pods) != 0 {
		t.Fatalf("pods %v %v", pods, err)
	}
}

func TestDialUnderRootAndNoAnswer(t *testing.T) {
	root := fsroot.New(t.TempDir())
	rt, err := Dial(root, "/run/containerd/containerd.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = WaitStatus(ctx, rt, 50*time.Millisecond)
	if err == nil {
		t.Fatal("no containerd under the root, yet Status answered")
	}
	if want := root.Path("/run/containerd/containerd.sock"); !contains(err.Error(), want) {
		t.Fatalf("error %q does not name %s", err, want)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
