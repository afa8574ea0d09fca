package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/containerd"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/test/syncbuf"
)

func runMain(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb syncbuf.Buffer
	code := MainContext(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func nodeArgs(root string, rel string, more ...string) []string {
	return append([]string{"--root", root, "--release-url", "file://" + rel, "--containerd-version", "2.1.3"}, more...)
}

func TestRunExitCodesOnAFolderRoot(t *testing.T) {
	root, rel := t.TempDir(), serveRelease(t)
	code, out, errs := runMain(t, append([]string{"run"}, nodeArgs(root, rel, "--json")...)...)
	if code != ExitRepaired {
		t.Fatalf("first run exit %d, want %d (repaired)\n%s\n%s", code, ExitRepaired, out, errs)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep["outcome"] != "repaired" || rep["runtime_checked"] != false {
		t.Fatalf("json %v: %s", err, out)
	}
	code, out, _ = runMain(t, append([]string{"run"}, nodeArgs(root, rel)...)...)
	if code != ExitOK || !strings.Contains(out, "healthy") || !strings.Contains(out, "runtime check deferred") {
		t.Fatalf("second run exit %d: %s", code, out)
	}
	code, out, _ = runMain(t, append([]string{"verify"}, nodeArgs(root, rel)...)...)
	if code != ExitOK || !strings.Contains(out, "runtime check did not run") {
		t.Fatalf("verify exit %d: %s", code, out)
	}
	code, out, _ = runMain(t, append([]string{"status", "--json"}, nodeArgs(root, rel)...)...)
	var st statusView
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 || st.Release == "" || !st.HandlerInFile || st.LastRun == nil || st.HandlerInCRI != nil {
		t.Fatalf("status %d %v: %s", code, err, out)
	}
}

func TestVerifyListsEveryProblem(t *testing.T) {
	root, rel := t.TempDir(), serveRelease(t)
	code, out, _ := runMain(t, append([]string{"verify"}, nodeArgs(root, rel)...)...)
	if code != ExitFailed {
		t.Fatalf("verify on an empty node exit %d: %s", code, out)
	}
	for _, want := range []string{"runsc", "config"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q:\n%s", want, out)
		}
	}
}

func TestRunGateFailsClosedUnlessContinue(t *testing.T) {
	root := t.TempDir()
	bad := t.TempDir() // an empty release dir: nothing to install
	code, _, errs := runMain(t, append([]string{"run", "--gate"}, nodeArgs(root, bad)...)...)
	if code != ExitFailed || !strings.Contains(errs, "FAILED") {
		t.Fatalf("gate exit %d: %s", code, errs)
	}
	r := fsroot.New(root)
	if err := r.WriteFile("/etc/gvisor-bootstrap/config.toml", []byte("[boot]\non_failure = \"continue\"\n"), fsroot.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	code, _, errs = runMain(t, append([]string{"run", "--gate"}, nodeArgs(root, bad)...)...)
	if code != ExitOK || !strings.Contains(errs, "CANNOT run gVisor pods") {
		t.Fatalf("gate with on_failure=continue exit %d: %s", code, errs)
	}
}

// A config this binary cannot load (a key a newer release added, from a newer
// ConfigMap during a DaemonSet upgrade) still has the operator's boot.on_failure:
// the gate honours "continue", and otherwise fails closed with bad-input's code.
func TestRunGateHonoursOnFailureWhenTheConfigDoesNotLoad(t *testing.T) {
	root, rel := t.TempDir(), serveRelease(t)
	r := fsroot.New(root)
	write := func(cfg string) {
		if err := r.WriteFile("/etc/gvisor-bootstrap/config.toml", []byte(cfg), fsroot.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	write("[boot]\non_failure = \"continue\"\n[future]\nknob = 1\n")
	code, _, errs := runMain(t, append([]string{"run", "--gate"}, nodeArgs(root, rel)...)...)
	if code != ExitOK || !strings.Contains(errs, "future") || !strings.Contains(errs, "CANNOT run gVisor pods") {
		t.Fatalf("gate, unloadable config with on_failure=continue: exit %d: %s", code, errs)
	}
	if code, _, _ := runMain(t, append([]string{"run"}, nodeArgs(root, rel)...)...); code != ExitUsage {
		t.Fatalf("run without --gate on an unloadable config: exit %d, want %d", code, ExitUsage)
	}
	write("[boot]\non_failure = \"fail\"\n[future]\nknob = 1\n")
	if code, _, errs := runMain(t, append([]string{"run", "--gate"}, nodeArgs(root, rel)...)...); code != ExitUsage || strings.Contains(errs, "CANNOT") {
		t.Fatalf("gate, unloadable config with on_failure=fail: exit %d: %s", code, errs)
	}
}

func TestRunWatchRepairsARewrittenConfig(t *testing.T) {
	root, rel := t.TempDir(), serveRelease(t)
	r := fsroot.New(root)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncbuf.Buffer
	done := make(chan int)
	go func() {
		done <- MainContext(ctx, append([]string{"run", "--watch", "--watch-interval", "20ms"}, nodeArgs(root, rel)...), &out, &errb)
	}()
	waitFor(t, func() bool {
		b, _ := r.ReadFile("/etc/containerd/config.toml")
		ok, _ := containerd.HasRunsc(b)
		return ok
	}, &out, &errb)
	// Azure's provisioning rewrites the file without runsc (a new inode).
	// Written whole and renamed into place: the watcher must not read a
	// half-written file (a real agent's partial write is another test's case).
	tmp := r.Path("/etc/containerd/.config.toml.agent")
	if err := os.WriteFile(tmp, []byte("version = 2\n\n[plugins.\"io.containerd.cri.v1.runtime\".containerd]\n  default_runtime_name = \"runc\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, r.LinkPath("/etc/containerd/config.toml")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		b, _ := r.ReadFile("/etc/containerd/config.toml")
		ok, _ := containerd.HasRunsc(b)
		return ok
	}, &out, &errb)
	b, _ := r.ReadFile("/etc/containerd/config.toml")
	if !strings.Contains(string(b), `default_runtime_name = "runc"`) || !strings.Contains(string(b), `"io.containerd.cri.v1.runtime".containerd.runtimes.runsc`) {
		t.Fatalf("rewritten file not repaired in its own dialect:\n%s", b)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("--watch did not stop on cancel")
	}
}

func waitFor(t *testing.T, cond func() bool, logs ...fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			for _, l := range logs {
				t.Log(l.String())
			}
			t.Fatal("condition not met in 60s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestGlobalFlagsMayPrecedeTheCommand(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{[]string{"--root", "/host", "run", "--gate"}, []string{"run", "--root", "/host", "--gate"}},
		{[]string{"--json", "--config=/x.toml", "status"}, []string{"status", "--json", "--config=/x.toml"}},
		{[]string{"run", "--root", "/host"}, []string{"run", "--root", "/host"}},
		{[]string{"--root", "/host"}, []string{"--root", "/host"}},
	} {
		if got := commandFirst(tc.in); strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("commandFirst(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	code, out, _ := runMain(t, "--json", "version")
	if code != ExitOK || !strings.Contains(out, `"version"`) {
		t.Fatalf("exit %d: %s", code, out)
	}
}

func TestInstallUnitsIntoAnImageFolder(t *testing.T) {
	root := t.TempDir()
	code, out, errs := runMain(t, "install", "--root", root, "--units", "--skip-binaries")
	if code != ExitOK {
		t.Fatalf("exit %d: %s %s", code, out, errs)
	}
	r := fsroot.New(root)
	self, _ := os.Executable()
	want, _ := os.ReadFile(self)
	got, err := r.ReadFile("/usr/local/bin/gvisor-bootstrap")
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("binary not installed: %v", err)
	}
	st, _ := os.Stat(r.Path("/usr/local/bin/gvisor-bootstrap"))
	if st.Mode().Perm() != 0o755 {
		t.Fatalf("mode %v", st.Mode())
	}
	for _, p := range []string{"/etc/systemd/system/gvisor-bootstrap.service", "/etc/systemd/system/kubelet.service.d/10-gvisor-bootstrap.conf", "/etc/systemd/system/multi-user.target.wants/gvisor-bootstrap.service"} {
		if _, err := os.Lstat(r.LinkPath(p)); err != nil {
			t.Errorf("%s not installed", p)
		}
	}
	code, out, _ = runMain(t, "install", "--root", root, "--units", "--skip-binaries", "--json")
	if code != ExitOK || strings.Contains(out, `"units"`) {
		t.Fatalf("second install changed something (exit %d): %s", code, out)
	}
	if code, _, _ := runMain(t, "install", "--root", root, "--skip-binaries"); code != ExitUsage {
		t.Fatalf("--skip-binaries without --units: exit %d", code)
	}
}

// A release that cannot be installed must not leave kubelet ungated: the units and
// the kubelet drop-in go in first.
func TestInstallUnitsBeforeAFailingRelease(t *testing.T) {
	root, empty := t.TempDir(), t.TempDir()
	code, _, errs := runMain(t, "install", "--root", root, "--units", "--release-url", "file://"+empty)
	if code != ExitFailed {
		t.Fatalf("install from an empty release dir: exit %d %s", code, errs)
	}
	if _, err := os.Lstat(fsroot.New(root).LinkPath("/etc/systemd/system/kubelet.service.d/10-gvisor-bootstrap.conf")); err != nil {
		t.Fatalf("kubelet gate not installed after a failed release install: %v", err)
	}
}
