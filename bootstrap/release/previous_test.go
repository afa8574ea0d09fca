package release

import (
	"context"
	"errors"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/proctable"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/proctable/proctabletest"
)

func (e *env) noWrites(before snap, what string) {
	e.t.Helper()
	if diff := cmp.Diff(before, snapshot(e.t, e.root, true)); diff != "" {
		e.t.Errorf("%s wrote (-before +after):\n%s\nlog:\n%s", what, diff, e.logs)
	}
}

func exists(t *testing.T, p string) bool {
	t.Helper()
	_, err := os.Lstat(p)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// A real process executes from the old release across an upgrade: its directory
// stays while it runs (even once its file is deleted) and goes at the first run
// after it ended. The test runs in its own pid namespace, whose procfs is the
// root's /proc: the process table is exactly what the test starts.
func TestPreviousReleaseKeptWhileAProcessExecutesFromItThenRemoved(t *testing.T) {
	if !proctabletest.InOwnPIDNamespace(t) {
		return
	}
	e := newEnv(t)
	proctabletest.MountProc(t, e.root.Path("/proc"))
	rel3 := "20261101.0"
	for _, r := range []string{rel1, rel2, rel3} {
		e.srv.AddBundle(r, arch, bundleFiles(r))
	}
	r1 := e.install(e.installer(rel1))
	old := e.root.Path(r1.Dir)
	sandbox := filepath.Join(old, "gvisor-bin", "runsc-sandbox")
	proctabletest.CopySleeper(t, sandbox)
	cmd := proctabletest.StartSleeper(t, sandbox)

	r2 := e.install(e.installer(rel2))
	st, _ := LoadState(e.root)
	if st.Dir != r2.Dir || st.Previous != r1.Dir || !exists(t, old) {
		t.Fatalf("after the upgrade under a running process: dir %s previous %q, %s exists %v\n%s", st.Dir, st.Previous, old, exists(t, old), e.logs)
	}
	if !strings.Contains(e.logs.String(), "a process executes from it") {
		t.Errorf("no debug line for the kept directory:\n%s", e.logs)
	}

	before := snapshot(t, e.root, true)
	if res := e.install(e.installer(rel2)); res.Changed {
		t.Errorf("no-op run changed: %+v", res)
	}
	e.noWrites(before, "a no-op run with the previous release in use")

	// The process's file deleted from the directory: /proc/<pid>/exe reads
	// "… (deleted)", and the process still runs from the directory.
	if err := os.Remove(sandbox); err != nil {
		t.Fatal(err)
	}
	e.install(e.installer(rel2))
	if !exists(t, old) {
		t.Fatalf("previous release removed under a process executing a deleted file from it\n%s", e.logs)
	}

	proctabletest.StopSleeper(cmd)
	e.install(e.installer(rel2))
	if exists(t, old) {
		t.Fatalf("previous release %s kept after its last process ended\n%s", old, e.logs)
	}
	st, _ = LoadState(e.root)
	if st.Previous != "" || st.Dir != r2.Dir {
		t.Errorf("state after the removal: dir %s previous %q", st.Dir, st.Previous)
	}
	if !strings.Contains(e.logs.String(), "removed the previous release directory") {
		t.Errorf("removal not logged:\n%s", e.logs)
	}
	if ps := e.installer(rel2).Verify(true); len(ps) != 0 {
		t.Errorf("verify after the removal: %v", ps)
	}
	noLeftovers(t, e, path.Base(r2.Dir))
	if got := e.runInstalled(RunscName); !strings.Contains(got, rel2) {
		t.Errorf("runsc is %q", got)
	}

	before = snapshot(t, e.root, true)
	e.install(e.installer(rel2))
	e.noWrites(before, "a no-op run with no previous release")

	// An upgrade with nothing executing from the old release removes it at once.
	r3 := e.install(e.installer(rel3))
	if st, _ = LoadState(e.root); st.Previous != "" || exists(t, e.root.Path(r2.Dir)) {
		t.Errorf("unused release %s after the upgrade: previous %q, exists %v", r2.Dir, st.Previous, exists(t, e.root.Path(r2.Dir)))
	}
	noLeftovers(t, e, path.Base(r3.Dir))
}

// Without the node's processes in sight (a temporary root without /proc, as
// an image folder; a plain directory at /proc) the previous release is kept,
// and the run says why once at info level.
func TestPreviousReleaseKeptWhenTheProcessesCannotBeSeen(t *testing.T) {
	for _, plainProc := range []bool{false, true} {
		e := newEnv(t)
		if plainProc {
			if err := os.Mkdir(e.root.Path("/proc"), 0o555); err != nil {
				t.Fatal(err)
			}
		}
		e.srv.AddBundle(rel1, arch, bundleFiles(rel1))
		e.srv.AddBundle(rel2, arch, bundleFiles(rel2))
		r1 := e.install(e.installer(rel1))
		e.install(e.installer(rel2))
		before := snapshot(t, e.root, true)
		e.install(e.installer(rel2))
		e.noWrites(before, "a no-op run that cannot see the processes")
		if st, _ := LoadState(e.root); st.Previous != r1.Dir || !exists(t, e.root.Path(r1.Dir)) {
			t.Errorf("/proc a plain directory %v: previous %q, %s exists %v", plainProc, st.Previous, r1.Dir, exists(t, e.root.Path(r1.Dir)))
		}
		logs := e.logs.String()
		const msg = `msg="keeping the previous release directory: cannot tell whether a process still executes from it"`
		if strings.Count(logs, "level=INFO "+msg) != 1 || strings.Count(logs, "level=DEBUG "+msg) != 1 || !strings.Contains(logs, "not visible") {
			t.Errorf("/proc a plain directory %v: want the reason once at info, then at debug:\n%s", plainProc, logs)
		}
	}
}

// The seam: when the previous directory is scanned, and what a scan's answer does.
func TestPreviousReleaseScans(t *testing.T) {
	e := newEnv(t)
	e.srv.AddBundle(rel1, arch, bundleFiles(rel1))
	e.srv.AddBundle(rel2, arch, bundleFiles(rel2))
	procs := &proctable.Fake{}
	in := func(r string) *Installer { i := e.installer(r); i.Procs = procs; return i }

	r1 := e.install(in(rel1))
	e.install(in(rel1))
	if len(procs.Scans) != 0 {
		t.Fatalf("scans with no previous release: %v", procs.Scans)
	}

	procs.Set(r1.Dir, &proctable.Process{PID: 4242, Exe: r1.Dir + "/runsc"})
	e.install(in(rel2))
	if n := procs.Count(r1.Dir); n != 1 {
		t.Errorf("the upgrade scanned %d times, want once", n)
	}
	before := snapshot(t, e.root, true)
	e.install(in(rel2))
	if n := procs.Count(r1.Dir); n != 2 {
		t.Errorf("a no-op run scanned %d times, want once", n-1)
	}
	e.noWrites(before, "a no-op run with the previous release in use")

	// Cannot tell: kept.
	procs.Set(r1.Dir, nil)
	procs.Err = errors.New("no process table here")
	e.install(in(rel2))
	if !exists(t, e.root.Path(r1.Dir)) {
		t.Fatal("previous release removed though the process table could not tell")
	}
	procs.Err = nil

	// A dry run neither scans nor removes.
	n := procs.Count(r1.Dir)
	if _, err := in(rel2).Install(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	if procs.Count(r1.Dir) != n || !exists(t, e.root.Path(r1.Dir)) {
		t.Errorf("dry run scanned %d times, previous exists %v", procs.Count(r1.Dir)-n, exists(t, e.root.Path(r1.Dir)))
	}

	// A previous directory that is not one of ours is never scanned nor removed.
	st, _ := LoadState(e.root)
	notOurs := "/usr/local/bin/not-ours"
	if err := os.Mkdir(e.root.Path(notOurs), 0o755); err != nil {
		t.Fatal(err)
	}
	forged := st
	forged.Previous = notOurs
	if err := saveState(e.root, forged); err != nil {
		t.Fatal(err)
	}
	e.install(in(rel2))
	if procs.Count(notOurs) != 0 || !exists(t, e.root.Path(notOurs)) {
		t.Errorf("a directory not ours: scanned %d times, exists %v", procs.Count(notOurs), exists(t, e.root.Path(notOurs)))
	}
	if err := saveState(e.root, st); err != nil {
		t.Fatal(err)
	}

	// Unused: removed, the scan repeated under the install lock.
	n = procs.Count(r1.Dir)
	e.install(in(rel2))
	if got := procs.Count(r1.Dir) - n; got != 2 || exists(t, e.root.Path(r1.Dir)) {
		t.Errorf("unused previous release: %d scans (want 2), exists %v", got, exists(t, e.root.Path(r1.Dir)))
	}
	if st, _ := LoadState(e.root); st.Previous != "" {
		t.Errorf("previous %q after the removal", st.Previous)
	}

	// A stale record (the directory removed by hand) is cleared without a scan.
	st, _ = LoadState(e.root)
	st.Previous = r1.Dir
	if err := saveState(e.root, st); err != nil {
		t.Fatal(err)
	}
	n = procs.Count(r1.Dir)
	e.install(in(rel2))
	if st, _ := LoadState(e.root); st.Previous != "" || procs.Count(r1.Dir) != n {
		t.Errorf("stale record: previous %q, %d scans", st.Previous, procs.Count(r1.Dir)-n)
	}
}
