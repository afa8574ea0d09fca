// Package faultpoint is deterministic crash injection for the fault-matrix tests
// (test/faults): a process started with GVB_FAULTPOINT=<name> kills itself with
// SIGKILL when it reaches Hit("<name>"), so a test can stop `gvisor-bootstrap run`
// at one exact step (between two renames, before a restart) and then prove the
// node is wholly old or wholly new. Without the variable Hit is a comparison with
// an empty string read once at start: nothing a boot would notice.
package faultpoint

import (
	"os"
	"runtime"
	"syscall"
)

// Env names the fault point to crash at.
const Env = "GVB_FAULTPOINT"

// ActionEnv = "stop" makes the point SIGSTOP the process instead of killing it:
// the test then changes the node behind the paused run (another agent rewriting
// containerd's config) and resumes it with SIGCONT.
const ActionEnv = "GVB_FAULTPOINT_ACTION"

// armed is read once: Hit sits on hot paths and must not look up the environment.
var armed, action = os.Getenv(Env), os.Getenv(ActionEnv)

// Hit kills the process with SIGKILL (no deferred functions, no cleanup, like a
// power cut for this process) when GVB_FAULTPOINT equals name.
func Hit(name string) {
	if armed == "" || armed != name {
		return
	}
	if action == "stop" {
		stop()
		return
	}
	kill()
}

// kill and stop are variables so the package's own test can observe a hit in-process.
//
// Both signal the calling thread (tgkill), not the process: a process-directed
// signal is taken by some thread of the Go runtime, and the one running the fault
// point would keep going until the stop reached it. Directed at this thread, the
// signal acts when the tgkill system call returns, before the next statement.
var kill = func() {
	signalSelf(syscall.SIGKILL)
	select {} // never go on
}

var stop = func() { signalSelf(syscall.SIGSTOP) }

func signalSelf(sig syscall.Signal) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	_ = syscall.Tgkill(os.Getpid(), syscall.Gettid(), sig)
}
