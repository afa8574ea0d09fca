package release

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/config"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/release/releasetest"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/test/syncbuf"
)

const (
	rel1 = "20260914.0"
	rel2 = "20261001.0"
	arch = "x86_64"
	bin  = "/usr/local/bin"
)

// env is one node root and one release server.
type env struct {
	t    *testing.T
	srv  *releasetest.Server
	root fsroot.Root
	logs *syncbuf.Buffer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return &env{t: t, srv: releasetest.NewServer(t), root: fsroot.New(t.TempDir()), logs: &syncbuf.Buffer{}}
}

func (e *env) installer(release string) *Installer {
	cfg := config.Default().Release
	cfg.Version = release
	cfg.BaseURL = e.srv.BaseURL()
	cfg.Arch = arch
	cfg.Timeout = config.Duration(10 * time.Second)
	cfg.Retries = 2
	cfg.SHA512 = map[string]string{}
	return &Installer{
		Root: e.root, Cfg: cfg, Backoff: time.Millisecond,
		Log: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

func (e *env) install(in *Installer) Result {
	e.t.Helper()
	res, err := in.Install(context.Background(), false)
	if err != nil {
		e.t.Fatalf("install: %v\nlog:\n%s", err, e.logs)
	}
	return res
}

// sidecars of a bundle in tests.
func bundleFiles(version string) map[string][]byte {
	return map[string][]byte{
		RunscName:                        releasetest.Script("runsc", version),
		ShimName:                         releasetest.Script("shim", version),
		"gvisor-bin/checkpointgofer":     releasetest.Script("checkpointgofer", version),
		"gvisor-bin/runsc-metric-server": releasetest.Script("runsc-metric-server", version),
	}
}

// snap is what a node's install looks like on disk: every file's bytes and
// mode, every symlink's target, the state file's bytes. With meta it also holds
// inodes and timestamps (including directories'), which only a write changes.
type snap map[string]string

func snapshot(t *testing.T, root fsroot.Root, meta bool) snap {
	t.Helper()
	s := snap{}
	for _, top := range []string{bin, filepath.Dir(StatePath)} {
		dir := root.Path(top)
		_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err != nil {
				return nil
			}
			rel := root.NodePath(p)
			st := fi.Sys().(*syscall.Stat_t)
			m := ""
			if meta {
				m = " ino=" + itoa(int64(st.Ino)) + " mtime=" + itoa(st.Mtim.Nano()) + " ctime=" + itoa(st.Ctim.Nano())
			}
			switch {
			case fi.Mode()&os.ModeSymlink != 0:
				target, _ := os.Readlink(p)
				s[rel] = "link " + target + m
			case fi.IsDir():
				if meta {
					s[rel] = "dir" + m
				}
			default:
				data, _ := os.ReadFile(p)
				s[rel] = fi.Mode().String() + " " + releasetest.Digest(data) + m
			}
			return nil
		})
	}
	return s
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// unchanged asserts the node is exactly as before (after a failed install).
func (e *env) unchanged(before snap) {
	e.t.Helper()
	if diff := cmp.Diff(before, snapshot(e.t, e.root, false)); diff != "" {
		e.t.Errorf("a failed install changed the node (-before +after):\n%s", diff)
	}
}

// runInstalled runs BinDir/<name> and returns its output.
func (e *env) runInstalled(name string) string {
	e.t.Helper()
	out, err := execOutput(e.root.Path(filepath.Join(bin, name)))
	if err != nil {
		e.t.Fatalf("run installed %s: %v: %s", name, err, out)
	}
	return out
}

func execOutput(p string, args ...string) (string, error) {
	out, err := exec.Command(p, args...).CombinedOutput()
	return string(out), err
}
