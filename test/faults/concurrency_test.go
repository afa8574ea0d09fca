package faults

import (
	"bytes"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/release/releasetest"
)

// TestConcurrentRuns starts 8 `run`s at once on one fresh root. They serialise on
// the run lock: exactly one repairs (exit 10) and the others find nothing to do
// (exit 0); the result equals one run; and nothing is written twice, counted by
// inotify (each file replaced by exactly one rename) and by the server's request
// log (one download of each artifact).
func TestConcurrentRuns(t *testing.T) {
	newConfig, newOptions := wantNew(t)
	n := newNode(t)
	n.writeFile("/usr/local/bin/.keep", "", 0o644)
	w := newWatcher(t, n.path("/etc/containerd"), n.path("/usr/local/bin"))
	n.srv.ResetLog()

	const runs = 8
	var wg sync.WaitGroup
	codes := make([]int, runs)
	outs := make([]string, runs)
	start := make(chan struct{})
	for i := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(bin, "--root", n.dir, "run")
			var errb bytes.Buffer
			cmd.Stderr = &errb
			<-start
			err := cmd.Run()
			if ee, ok := err.(*exec.ExitError); ok {
				codes[i] = ee.ExitCode()
			} else if err != nil {
				codes[i] = -1
			}
			outs[i] = errb.String()
		}()
	}
	close(start)
	wg.Wait()

	repaired, healthy := 0, 0
	for i, c := range codes {
		switch c {
		case 10:
			repaired++
		case 0:
			healthy++
		default:
			t.Errorf("run %d: exit %d\n%s", i, c, outs[i])
		}
	}
	if repaired != 1 || healthy != runs-1 {
		t.Fatalf("exit codes %v: want one 10 and %d zeros", codes, runs-1)
	}
	if n.binState() != newRel || n.configState(nil, newConfig) != "new" || !bytes.Equal(n.read("/etc/containerd/runsc.toml"), newOptions) {
		t.Fatal("the result is not that of one run")
	}
	for _, name := range []string{"gvisor.tar.bz2", "gvisor.tar.bz2.sha512"} {
		p := releasetest.BasePath + "/" + newRel + "/" + arch + "/" + name
		if c := n.srv.Count(p); c != 1 {
			t.Errorf("%s downloaded %d times, want 1 (requests: %v)", name, c, n.srv.Requests())
		}
	}
	ev := w.renamedInto()
	t.Logf("renames into watched dirs: %v", ev)
	for _, name := range []string{"config.toml", "runsc.toml", "runsc", "containerd-shim-runsc-v1", "gvisor-bin"} {
		if ev[name] != 1 {
			t.Errorf("%s replaced %d times, want 1", name, ev[name])
		}
	}
	dirs := 0
	for name, c := range ev {
		if strings.HasPrefix(name, "gvisor."+newRel) {
			dirs += c
		}
	}
	if dirs != 1 {
		t.Errorf("release directory moved into place %d times, want 1", dirs)
	}
}

// watcher counts IN_MOVED_TO events (an atomic replace is a rename) by file name.
type watcher struct {
	t  *testing.T
	fd int
}

func newWatcher(t *testing.T, dirs ...string) *watcher {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	for _, d := range dirs {
		if _, err := unix.InotifyAddWatch(fd, d, unix.IN_MOVED_TO); err != nil {
			t.Fatalf("watch %s: %v", d, err)
		}
	}
	return &watcher{t: t, fd: fd}
}

func (w *watcher) renamedInto() map[string]int {
	out := map[string]int{}
	buf := make([]byte, 1<<16)
	for {
		k, err := unix.Read(w.fd, buf)
		if err == syscall.EAGAIN || k <= 0 {
			return out
		}
		if err != nil {
			w.t.Fatal(err)
		}
		for off := 0; off+unix.SizeofInotifyEvent <= k; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
			if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
				w.t.Fatal("inotify queue overflow: counts would be wrong")
			}
			out[strings.TrimRight(string(name), "\x00")]++
			off += unix.SizeofInotifyEvent + int(ev.Len)
		}
	}
}
