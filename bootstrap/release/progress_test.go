package release

import (
	"bytes"
	"crypto/rand"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

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

func TestProgressBarOnTerminal(t *testing.T) {
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
	for _, want := range []string{"msg=\"download started\"", "percent=50", "msg=\"download finished\"", "gvisor.tar.bz2"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}
