// Package reconcile is the node agent's one job: install → configure → restart
// containerd only if its effective config changed and it is running → verify
// through the CRI → report, under a lock, with rollback when containerd does not
// come back serving runsc.
package reconcile

import (
	"context"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/cri"
)

// Problem is one thing wrong with the node, with what the operator can do.
type Problem struct {
	Path string `json:"path,omitempty"`
	What string `json:"what"`
	Fix  string `json:"fix,omitempty"`
}

// Binaries installs and checks runsc and its shim (bootstrap/release behind it).
type Binaries interface {
	// Ensure installs the wanted release unless it is already installed and
	// intact; changed reports whether anything was written.
	Ensure(ctx context.Context, dryRun bool) (changed bool, summary string, err error)
	// Problems checks the installed binaries without network or writes; deep
	// re-hashes them instead of trusting the recorded fingerprint.
	Problems(deep bool) []Problem
	// Present reports whether a runsc and shim are installed at all.
	Present() bool
}

// ContainerdConfig registers runsc in containerd's config (bootstrap/containerd
// behind it).
type ContainerdConfig interface {
	// Ensure stops when ctx is done (SIGTERM, the unit's start timeout): planning
	// a large config takes a while.
	Ensure(ctx context.Context, dryRun bool) (ConfigChange, error)
	Problems() []Problem
	// FileHasRunsc reports whether the config on disk registers the runsc handler.
	FileHasRunsc() bool
	// Expect is the handler as registered: what the CRI must serve
	// (cri.Status.CheckServed).
	Expect() cri.Expect
}

// ConfigChange is what Ensure did (or would do, in a dry run).
type ConfigChange struct {
	Changed bool
	// RestartNeeded: containerd's effective config changed; a change of the runsc
	// options file alone needs no restart (the shim reads it per sandbox).
	RestartNeeded bool
	Diff          string
	Summary       string
	// Undo restores the files as they were before Ensure.
	Undo func() error
	// ConfigPath is containerd's main config file (a node path) and ConfigAfter the
	// content this Ensure left in it (or found right): a run that finds other
	// content there at its end reconciles again.
	ConfigPath  string
	ConfigAfter []byte
	// Fingerprint identifies the input the change was planned from (the files
	// containerd loads, the options files, containerd's release): a failed
	// attempt with the same input is not repeated.
	Fingerprint string
}

// Warner is implemented by seams that know of problems that do not stop gVisor
// pods (containerd releases with known gVisor bugs): they go into the journal,
// the report and the metrics.
type Warner interface {
	Warnings() []string
}
