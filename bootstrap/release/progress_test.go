package release

import (
	"bytes"
	"crypto/rand"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns a pseudo-terminal's master and slave ends.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); m.Close() })
	return m, s
}

func bigRelease(e *env) {
	big := make([]byte, 2<<20)
	_, _ = rand.Read(big)
	files := bundleFiles(rel1)
	files["gvisor-bin/gvisor_sentry"] = big
	e.srv.AddBundle(rel1, arch, files)
}

// installOnTerminal installs a big release with a pseudo-terminal as the progress
// writer; it returns the env and what was drawn on the terminal.
func installOnTerminal(t *testing.T) (*env, string) {
	e := newEnv(t)
	bigRelease(e)
	master, slave := openPTY(t)
	var buf bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _, _ = io.Copy(&buf, master) }()
	in := e.installer(rel1)
	in.Progress = slave
	e.install(in)
	slave.Close()
	master.Close()
	wg.Wait()
	return e, buf.String()
}

func TestProgressBarOnTerminal(t *testing.T) {
	e, tty := installOnTerminal(t)
	buf := bytes.NewBufferString(tty)
	if out := buf.String(); !strings.Contains(out, "gvisor.tar.bz2") || !strings.Contains(out, "100%") || !strings.Contains(out, "MB") {
		t.Errorf("no progress bar on the terminal:\n%q", out)
	}
	if strings.Contains(e.logs.String(), "download started") {
		t.Error("logged progress lines although a bar was shown")
	}
}

func TestProgressLinesWithoutTerminal(t *testing.T) {
	e := newEnv(t)
	bigRelease(e)
	var notTTY bytes.Buffer
	in := e.installer(rel1)
	in.Progress = &notTTY
	e.install(in)
	if notTTY.Len() != 0 {
		t.Errorf("wrote a bar to a non-terminal: %q", notTTY.String())
	}
	logs := e.logs.String()
	for _, want := range []string{"msg=\"download started\"", "msg=\"download finished\"", "gvisor.tar.bz2"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

// A systemd unit whose output is a console (the kubelet gate with TTYPath, a
// serial console) is not a person watching: plain lines, no bar.
func TestNoProgressBarOnASystemdUnitsTerminal(t *testing.T) {
	for _, env := range []string{"INVOCATION_ID", "JOURNAL_STREAM"} {
		t.Run(env, func(t *testing.T) {
			t.Setenv(env, "1")
			e, tty := installOnTerminal(t)
			buf := bytes.NewBufferString(tty)
			if buf.Len() != 0 {
				t.Errorf("drew on the unit's terminal: %q", buf.String())
			}
			if !strings.Contains(e.logs.String(), "download finished") {
				t.Errorf("no progress lines in the log:\n%s", e.logs.String())
			}
		})
	}
}

// Progress lines come at most once per interval however fast the bytes arrive.
func TestProgressLinesAreRateLimited(t *testing.T) {
	var logs bytes.Buffer
	clock := time.Unix(0, 0)
	now := func() time.Time { return clock }
	tr := logTracker{log: slog.New(slog.NewTextHandler(&logs, nil)), url: "u", every: 5 * time.Second, now: now}
	const chunk, chunks = 1000, 100
	rc := tr.TrackProgress("u", 0, chunk*chunks, io.NopCloser(bytes.NewReader(make([]byte, chunk*chunks))))
	buf := make([]byte, chunk)
	for {
		clock = clock.Add(time.Second) // one chunk a second: 100 s in all
		if _, err := rc.Read(buf); err != nil {
			break
		}
	}
	got := strings.Count(logs.String(), "msg=downloading")
	if got < 18 || got > 20 {
		t.Errorf("%d progress lines over 100 s at one per 5 s:\n%s", got, logs.String())
	}
	if !strings.Contains(logs.String(), "percent=50") || !strings.Contains(logs.String(), "download finished") {
		t.Errorf("lines lack the percentage or the end:\n%s", logs.String())
	}
}
