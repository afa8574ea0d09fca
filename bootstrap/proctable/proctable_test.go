package proctable

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/proctable/proctabletest"
)

const dir = "/usr/local/bin/gvisor.20260914.0-0123456789ab"

// copyExecutable copies the machine's sleep(1) to p.
func copyExecutable(t *testing.T, p string) {
	t.Helper()
	src, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

// start runs p and returns the process, killed and reaped at the end of the test.
func start(t *testing.T, p string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(p, "600")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p, err)
	}
	t.Cleanup(func() { stop(cmd) })
	return cmd
}

func stop(cmd *exec.Cmd) {
	if cmd.ProcessState == nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
}

func TestFindsTheProcessesExecutingFromADirectory(t *testing.T) {
	if !proctabletest.InOwnPIDNamespace(t) {
		return
	}
	root := fsroot.New(t.TempDir())
	proctabletest.MountProc(t, root.Path("/proc"))
	tab := Of(root)
	exe := root.Path(dir + "/runsc")
	copyExecutable(t, exe)
	if err := os.Mkdir(root.Path(dir+"/gvisor-bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	copyExecutable(t, root.Path(dir+"/gvisor-bin/checkpointgofer"))

	if p, found, err := tab.ExecutingFrom(dir); err != nil || found {
		t.Fatalf("nothing started yet: %+v %v %v", p, found, err)
	}

	// A sidecar in a subdirectory.
	side := start(t, root.Path(dir+"/gvisor-bin/checkpointgofer"))
	p, found, err := tab.ExecutingFrom(dir)
	if err != nil || !found || p.PID != side.Process.Pid || p.Exe != root.Path(dir+"/gvisor-bin/checkpointgofer") {
		t.Fatalf("sidecar %d running: %+v %v %v", side.Process.Pid, p, found, err)
	}
	stop(side)

	// The executable removed from the directory: /proc/<pid>/exe reads "(deleted)".
	cmd := start(t, exe)
	if err := os.Remove(exe); err != nil {
		t.Fatal(err)
	}
	p, found, err = tab.ExecutingFrom(dir)
	if err != nil || !found || p.PID != cmd.Process.Pid || !strings.HasSuffix(p.Exe, " (deleted)") {
		t.Fatalf("deleted executable %d running: %+v %v %v", cmd.Process.Pid, p, found, err)
	}
	stop(cmd)
	if p, found, err := tab.ExecutingFrom(dir); err != nil || found {
		t.Fatalf("after the process ended: %+v %v %v", p, found, err)
	}

	// Started through another name of the same inode (as a reader in another
	// mount namespace sees the path): matched by inode.
	copyExecutable(t, exe)
	other := root.Path("/opt/elsewhere/runsc")
	if err := os.MkdirAll(filepath.Dir(other), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(exe, other); err != nil {
		t.Fatal(err)
	}
	cmd = start(t, other)
	p, found, err = tab.ExecutingFrom(dir)
	if err != nil || !found || p.PID != cmd.Process.Pid || p.Exe != other {
		t.Fatalf("same inode under another path %d running: %+v %v %v", cmd.Process.Pid, p, found, err)
	}
	// Another directory is not in use.
	copyExecutable(t, root.Path("/usr/local/bin/gvisor.20261001.0-ba9876543210/runsc"))
	if p, found, err := tab.ExecutingFrom("/usr/local/bin/gvisor.20261001.0-ba9876543210"); err != nil || found {
		t.Fatalf("other directory: %+v %v %v", p, found, err)
	}
}

func TestCannotTellWithoutTheNodesProcesses(t *testing.T) {
	root := fsroot.New(t.TempDir())
	copyExecutable(t, root.Path(dir+"/runsc"))
	// An image folder or a DaemonSet pod: no /proc under the root.
	if _, found, err := Of(root).ExecutingFrom(dir); err == nil || found || !strings.Contains(err.Error(), "not visible") {
		t.Fatalf("no /proc: %v %v", found, err)
	}
	// A plain directory at /proc.
	if err := os.Mkdir(root.Path("/proc"), 0o555); err != nil {
		t.Fatal(err)
	}
	_, found, err := Of(root).ExecutingFrom(dir)
	if err == nil || found || !strings.Contains(err.Error(), "not a procfs mount") {
		t.Fatalf("/proc a plain directory: %v %v", found, err)
	}
	t.Logf("error: %v", err)
}
