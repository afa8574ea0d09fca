package reconcile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"syscall"
	"time"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/config"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/cri"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/faultpoint"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/nodelock"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/nodepaths"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/systemd"
)

// LockPath serialises every run on a node: boot, path-triggered, kubelet gate,
// manual, and the DaemonSet's pod (which mounts its directory).
const LockPath = nodepaths.RunLock

// Outcome of a run; the CLI maps it to the exit code.
type Outcome string

const (
	Healthy  Outcome = "healthy"
	Repaired Outcome = "repaired"
	Failed   Outcome = "failed"
)

// Reconciler holds the seams of one node.
type Reconciler struct {
	Root fsroot.Root
	Cfg  config.Config
	Bins Binaries
	Conf ContainerdConfig
	// Systemd connects to the node's service manager; ErrUnavailable means there is
	// none (an image folder): then containerd is never restarted.
	Systemd func(ctx context.Context) (systemd.Manager, error)
	CRI     func() (cri.Runtime, error)
	Log     *slog.Logger
	// Status reports progress (systemd STATUS=); may be nil.
	Status func(string)
	// Ready, when set, is called once the files are right and before containerd is
	// restarted. The boot unit is ordered Before=containerd.service: until it
	// reports READY=1, a containerd start job waits for it, so a restart asked
	// from inside its own start would deadlock until the restart timeout. kubelet
	// stays safe: its gate takes the run lock and verifies again.
	Ready func()
	// PollEvery is the CRI polling interval (default 200ms).
	PollEvery time.Duration
}

// Options of one run.
type Options struct {
	DryRun bool
	// Gate: kubelet is about to start, containerd must be up and serving runsc.
	Gate bool
}

// Report is what a run did and found.
type Report struct {
	Outcome        Outcome   `json:"outcome"`
	Start          time.Time `json:"start"`
	DurationMS     float64   `json:"duration_ms"`
	BinariesChange string    `json:"binaries_change,omitempty"`
	ConfigChange   string    `json:"config_change,omitempty"`
	Diff           string    `json:"diff,omitempty"`
	Restarts       int       `json:"containerd_restarts"`
	RolledBack     bool      `json:"rolled_back,omitempty"`
	Containerd     string    `json:"containerd_state"`
	// RuntimeChecked is false when no CRI answered (containerd not running yet, or
	// an image folder): only the files were checked.
	RuntimeChecked bool `json:"runtime_checked"`
	HandlerSeen    bool `json:"handler_in_cri"`
	// Served: the CRI serves the handler as the gVisor runtime this tool
	// registered (cri.Status.CheckServed), not just under its name.
	Served   bool      `json:"handler_served"`
	Problems []Problem `json:"problems,omitempty"`
	// Warnings are known problems that do not stop gVisor pods (a containerd
	// release with gVisor bugs); they are logged and counted in the metrics.
	Warnings []string `json:"warnings,omitempty"`
	Error    string   `json:"error,omitempty"`
	DryRun   bool     `json:"dry_run,omitempty"`
	// Advertised says whether the DaemonSet's run left the Node labelled ready
	// (nil: this run does not advertise, e.g. on the host); NotAdvertised says why
	// not, in one line.
	Advertised    *bool  `json:"advertised,omitempty"`
	NotAdvertised string `json:"not_advertised,omitempty"`

	// ConfigFingerprint is containerd's config file as this run left it
	// (FileFingerprint), for a watcher to notice a later rewrite.
	ConfigFingerprint string `json:"-"`

	configPath  string
	configAfter []byte
}

func (r *Reconciler) status(msg string) {
	if r.Status != nil {
		r.Status(msg)
	}
	r.Log.Info(msg)
}

// Lock takes the node-wide run lock, waiting until ctx ends; log says when it
// has to wait.
func Lock(ctx context.Context, root fsroot.Root, log *slog.Logger) (func(), error) {
	return nodelock.Acquire(ctx, root, LockPath, func() {
		if log != nil {
			log.Info("waiting for the run lock: another gvisor-bootstrap run holds it", "lock", root.Path(LockPath))
		}
	})
}

// Run reconciles the node once.
func (r *Reconciler) Run(ctx context.Context, opt Options) Report {
	start := time.Now()
	var rep Report
	restarts, repaired := 0, false
	// Another agent may rewrite containerd's config while a run is in progress
	// (Azure's provisioning does it on reimage); a path-unit trigger fired then is
	// merged into the running job and lost. So a run that finds the file changed
	// behind it goes again, a bounded number of times.
	for attempt := 1; ; attempt++ {
		rep = r.run(ctx, opt)
		restarts += rep.Restarts
		repaired = repaired || rep.Outcome == Repaired
		if opt.DryRun || rep.Outcome == Failed || attempt == 3 || r.configStillOurs(&rep) {
			break
		}
		r.Log.Warn("containerd's config was rewritten during the run: reconciling again", "path", r.Root.Path(r.Cfg.Containerd.ConfigPath))
	}
	rep.Restarts, rep.Start = restarts, start
	if repaired && rep.Outcome == Healthy {
		rep.Outcome = Repaired
	}
	rep.DurationMS = float64(time.Since(start).Microseconds()) / 1000
	return rep
}

// configStillOurs reports whether containerd's config still holds what this run
// left in it, and records its fingerprint. The fingerprint is taken before the
// content is compared: a rewrite after the comparison then shows as a changed
// fingerprint to the watcher; one before it, as other content here.
func (r *Reconciler) configStillOurs(rep *Report) bool {
	path := rep.configPath
	if path == "" {
		path = r.Cfg.Containerd.ConfigPath
	}
	rep.ConfigFingerprint = FileFingerprint(r.Root.Path(path))
	if rep.configPath == "" {
		return true // the seam does not say what it left: nothing to compare
	}
	cur, err := r.Root.ReadFile(path)
	if err != nil {
		return rep.configAfter == nil && errors.Is(err, fs.ErrNotExist)
	}
	return bytes.Equal(cur, rep.configAfter)
}

// FileFingerprint changes whenever the file is written or replaced.
func FileFingerprint(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return "missing"
	}
	ino := uint64(0)
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		ino = s.Ino
	}
	return fmt.Sprintf("%d/%d/%d", st.Size(), st.ModTime().UnixNano(), ino)
}

func (r *Reconciler) run(ctx context.Context, opt Options) Report {
	rep := Report{Start: time.Now(), DryRun: opt.DryRun}
	fail := func(err error) Report {
		rep.Outcome, rep.Error = Failed, err.Error()
		r.Log.Error("reconcile failed", "error", err)
		return rep
	}
	if !opt.DryRun {
		unlock, err := Lock(ctx, r.Root, r.Log)
		if err != nil {
			return fail(err)
		}
		defer unlock()
	}

	r.status("checking gVisor binaries")
	binChanged, binSummary, binErr := r.Bins.Ensure(ctx, opt.DryRun)
	rep.BinariesChange = binSummary
	if binErr != nil && !r.Bins.Present() {
		return fail(fmt.Errorf("install gVisor: %w", binErr))
	}

	r.status("checking containerd's config")
	if _, failedBefore := loadAttempt(r.Root); failedBefore && !opt.DryRun {
		// A change that needs a restart is not even written when the same input
		// already failed (or the back-off runs): writing it and undoing it on
		// every run would be a loop of its own.
		if pre, err := r.Conf.Ensure(ctx, true); err == nil && pre.RestartNeeded {
			if err := r.mayRestart(r.attemptKey(pre), time.Now()); err != nil {
				return fail(fmt.Errorf("configure containerd: %w", err))
			}
		}
	}
	if w, ok := r.Conf.(Warner); ok {
		for _, msg := range w.Warnings() {
			r.Log.Warn(msg)
			rep.Warnings = append(rep.Warnings, msg)
		}
	}
	change, err := r.Conf.Ensure(ctx, opt.DryRun)
	if err != nil {
		return fail(fmt.Errorf("configure containerd: %w", err))
	}
	rep.ConfigChange, rep.Diff = change.Summary, change.Diff
	rep.configPath, rep.configAfter = change.ConfigPath, change.ConfigAfter
	faultpoint.Hit("reconcile-config-done")

	if opt.DryRun {
		rep.Outcome = Healthy
		if binChanged || change.Changed {
			rep.Outcome = Repaired
		}
		return rep
	}

	if err := r.converge(ctx, opt, change, &rep); err != nil {
		return fail(err)
	}
	if binErr != nil {
		// Old binaries are in place and serve, but the wanted release is not.
		return fail(fmt.Errorf("install gVisor (the previously installed release is still in place): %w", binErr))
	}
	rep.Outcome = Healthy
	if binChanged || change.Changed || rep.Restarts > 0 {
		rep.Outcome = Repaired
	}
	return rep
}

// converge makes the running containerd serve what the files say.
func (r *Reconciler) converge(ctx context.Context, opt Options, change ConfigChange, rep *Report) error {
	unit := r.Cfg.Containerd.Unit
	mgr, err := r.Systemd(ctx)
	if err != nil && !errors.Is(err, systemd.ErrUnavailable) {
		return err
	}
	if mgr != nil {
		defer mgr.Close()
		state, err := mgr.ActiveState(ctx, unit)
		if err != nil {
			return err
		}
		rep.Containerd = state
	} else {
		rep.Containerd = "unknown (no systemd)"
	}
	running := rep.Containerd == "active" || rep.Containerd == "activating" || rep.Containerd == "reloading"

	rt, err := r.CRI()
	if err != nil {
		return err
	}
	defer rt.Close()

	if mgr == nil {
		// An image build or a test root: no service manager, so never a restart.
		// If a CRI happens to answer, still check it.
		if !opt.Gate && !r.Root.Exists(r.Cfg.Containerd.Address) {
			return nil
		}
		st, err := r.waitCRI(ctx, rt, 300*time.Millisecond)
		if err != nil {
			if opt.Gate {
				return fmt.Errorf("kubelet gate: no CRI answers at %s: %w", r.Root.Path(r.Cfg.Containerd.Address), err)
			}
			return nil
		}
		return r.checkHandler(st, rep, change.RestartNeeded)
	}

	if !running {
		if !opt.Gate {
			r.Log.Info("containerd is not running: it will load the new config when it starts; runtime check deferred", "unit", unit, "state", rep.Containerd)
			return nil
		}
		// The gate runs when kubelet starts, after containerd: give it time to come up.
	}

	key := r.attemptKey(change)
	if running && change.RestartNeeded {
		if err := r.mayRestart(key, time.Now()); err != nil {
			return err // only if the input changed during the run
		}
		err := r.restartAndVerify(ctx, mgr, rt, rep, change.Undo)
		r.recordAttempt(key, time.Now(), err)
		return err
	}

	st, err := r.waitCRI(ctx, rt, r.Cfg.Boot.VerifyTimeout.D())
	if err != nil {
		return fmt.Errorf("containerd (%s) does not answer the CRI at %s: %w; check `systemctl status %s`", rep.Containerd, r.Root.Path(r.Cfg.Containerd.Address), err, unit)
	}
	rep.RuntimeChecked = true
	serr := r.served(st, rep)
	if serr == nil {
		return nil
	}
	if !r.Conf.FileHasRunsc() {
		return fmt.Errorf("containerd's config does not register %q: %w", r.Cfg.Cluster.Handler, serr)
	}
	// The file is right but the running containerd predates it (a run killed
	// between the config write and the restart, or a restart that never happened).
	if err := r.mayRestart(key, time.Now()); err != nil {
		return fmt.Errorf("%v; %w", serr, err)
	}
	r.Log.Warn("config registers runsc but the running containerd does not serve it: restarting containerd", "unit", unit, "found", serr)
	err = r.restartAndVerify(ctx, mgr, rt, rep, nil)
	r.recordAttempt(key, time.Now(), err)
	return err
}

// restartAndVerify restarts containerd and waits until the CRI lists runsc; when it
// does not, it restores the previous config (undo), restarts again and fails.
func (r *Reconciler) restartAndVerify(ctx context.Context, mgr systemd.Manager, rt cri.Runtime, rep *Report, undo func() error) error {
	unit := r.Cfg.Containerd.Unit
	r.status("restarting " + unit + " to load the runsc handler")
	faultpoint.Hit("reconcile-before-restart")
	err := r.restart(ctx, mgr, unit)
	rep.Restarts++
	var st cri.Status
	if err == nil {
		faultpoint.Hit("reconcile-after-restart")
		st, err = r.waitCRI(ctx, rt, r.Cfg.Boot.VerifyTimeout.D())
		if err == nil {
			rep.RuntimeChecked = true
			if err = r.served(st, rep); err == nil {
				return nil
			}
			err = fmt.Errorf("after the restart: %w", err)
		}
	}
	if undo == nil {
		return fmt.Errorf("containerd after restart: %w", err)
	}
	r.Log.Error("containerd did not come back serving runsc: restoring the previous config", "error", err)
	if uerr := undo(); uerr != nil {
		return fmt.Errorf("containerd after restart: %v; restoring the previous config ALSO failed: %w", err, uerr)
	}
	rep.RolledBack = true
	rerr := r.restart(ctx, mgr, unit)
	rep.Restarts++
	if rerr != nil {
		return fmt.Errorf("containerd failed with the new config (%v); the previous config is restored but containerd did not restart: %w", err, rerr)
	}
	return fmt.Errorf("containerd failed with the new config (%v); the previous config is restored and containerd restarted with it; see `journalctl -u %s`", err, unit)
}

func (r *Reconciler) restart(ctx context.Context, mgr systemd.Manager, unit string) error {
	if r.Ready != nil {
		r.Ready()
	}
	ctx, cancel := context.WithTimeout(ctx, r.Cfg.Containerd.RestartTimeout.D())
	defer cancel()
	if err := mgr.Restart(ctx, unit); err != nil {
		return err
	}
	state, err := mgr.ActiveState(ctx, unit)
	if err != nil {
		return err
	}
	if state != "active" {
		return fmt.Errorf("%s is %s after restart", unit, state)
	}
	return nil
}

func (r *Reconciler) waitCRI(ctx context.Context, rt cri.Runtime, timeout time.Duration) (cri.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	every := r.PollEvery
	if every == 0 {
		every = 200 * time.Millisecond
	}
	return cri.WaitStatus(ctx, rt, every)
}

func (r *Reconciler) checkHandler(st cri.Status, rep *Report, restartNeeded bool) error {
	rep.RuntimeChecked = true
	err := r.served(st, rep)
	if err == nil {
		return nil
	}
	if restartNeeded || r.Conf.FileHasRunsc() {
		return fmt.Errorf("containerd answers at %s but %v, and no systemd is reachable to restart it; restart containerd on the node", r.Root.Path(r.Cfg.Containerd.Address), err)
	}
	return err
}

// served is the one check of what the CRI serves (cri.Status.CheckServed),
// recorded in the report.
func (r *Reconciler) served(st cri.Status, rep *Report) error {
	want := r.Conf.Expect()
	if want.Handler == "" {
		want.Handler = r.Cfg.Cluster.Handler
	}
	rep.HandlerSeen = st.HasHandler(want.Handler)
	err := st.CheckServed(r.Root, want)
	rep.Served = err == nil
	return err
}
