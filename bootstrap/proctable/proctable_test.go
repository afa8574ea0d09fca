package proctable

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/proctable/proctabletest"
)

const dir = "/usr/local/bin/gvisor.20260914.0-0123456789ab"

func TestFindsTheProcessesExecutingFromADirectory(t *testing.T) {
	if !proctabletest.InOwnPIDNamespace(t) {
		return
	}
	root := fsroot.New(t.TempDir())
	proctabletest.MountProc(t, root.Path("/proc"))
	tab := Of(root)
	exe := root.Path(dir + "/runsc")
	proctabletest.CopySleeper(t, exe)
	if err := os.Mkdir(root.Path(dir+"/gvisor-bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	proctabletest.CopySleeper(t, root.Path(dir+"/gvisor-bin/checkpointgofer"))

	if p, found, err := tab.ExecutingFrom(dir); err != nil || found {
		t.Fatalf("nothing started yet: %+v %v %v", p, found, err)
	}

	// A sidecar in a subdirectory.
	side := proctabletest.StartSleeper(t, root.Path(dir+"/gvisor-bin/checkpointgofer"))
	p, found, err := tab.ExecutingFrom(dir)
	if err != nil || !found || p.PID != side.Process.Pid || p.Exe != root.Path(dir+"/gvisor-bin/checkpointgofer") {
		t.Fatalf("sidecar %d running: %+v %v %v", side.Process.Pid, p, found, err)
	}
	proctabletest.StopSleeper(side)

	// The executable removed from the directory: /proc/<pid>/exe reads "(deleted)".
	cmd := proctabletest.StartSleeper(t, exe)
	if err := os.Remove(exe); err != nil {
		t.Fatal(err)
	}
	p, found, err = tab.ExecutingFrom(dir)
	if err != nil || !found || p.PID != cmd.Process.Pid || !strings.HasSuffix(p.Exe, " (deleted)") {
		t.Fatalf("deleted executable %d running: %+v %v %v", cmd.Process.Pid, p, found, err)
	}
	proctabletest.StopSleeper(cmd)
	if p, found, err := tab.ExecutingFrom(dir); err != nil || found {
		t.Fatalf("after the process ended: %+v %v %v", p, found, err)
	}

	// Started through another name of the same inode (as a reader in another
	// mount namespace sees the path): matched by inode.
	proctabletest.CopySleeper(t, exe)
	other := root.Path("/opt/elsewhere/runsc")
	if err := os.MkdirAll(filepath.Dir(other), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(exe, other); err != nil {
		t.Fatal(err)
	}
	cmd = proctabletest.StartSleeper(t, other)
	p, found, err = tab.ExecutingFrom(dir)
	if err != nil || !found || p.PID != cmd.Process.Pid || p.Exe != other {
		t.Fatalf("same inode under another path %d running: %+v %v %v", cmd.Process.Pid, p, found, err)
	}
	// Another directory is not in use.
	proctabletest.CopySleeper(t, root.Path("/usr/local/bin/gvisor.20261001.0-ba9876543210/runsc"))
	if p, found, err := tab.ExecutingFrom("/usr/local/bin/gvisor.20261001.0-ba9876543210"); err != nil || found {
		t.Fatalf("other directory: %+v %v %v", p, found, err)
	}
}

func TestCannotTellWithoutTheNodesProcesses(t *testing.T) {
	root := fsroot.New(t.TempDir())
	proctabletest.CopySleeper(t, root.Path(dir+"/runsc"))
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
