package reconcile

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	backoffpkg "github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/backoff"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/nodepaths"
)

// Never a loop. kubelet's gate runs at every kubelet start, and kubelet's
// Restart= starts it again every few seconds: a run that restarts containerd
// and fails would restart containerd (twice, with the rollback) each time, on a
// node running pods. So a failed attempt is remembered by its input — the
// config files containerd loads and the options files, the containerd release,
// the gVisor release — and an identical input does not restart containerd
// again until one of them changes. A different input may try again, but only
// after a pause that doubles with each consecutive failure.

// FailedAttemptPath is on /run: a reboot is a fresh start.
var FailedAttemptPath = nodepaths.FailedAttempt

// backoffBase and backoffMax bound the pause between attempts that restart
// containerd after failures (variables for tests).
var (
	backoffBase = 10 * time.Second
	backoffMax  = 10 * time.Minute
)

// failedAttempt is the last attempt that restarted containerd and failed.
type failedAttempt struct {
	Key   string    `json:"key"`
	At    time.Time `json:"at"`
	Count int       `json:"consecutive_failures"`
	Error string    `json:"error"`
}

func loadAttempt(root fsroot.Root) (failedAttempt, bool) {
	var a failedAttempt
	b, err := root.ReadFile(FailedAttemptPath)
	if err != nil || json.Unmarshal(b, &a) != nil {
		return a, false
	}
	return a, true
}

// ErrNotRetried: the restart was not attempted again (identical input, or the
// back-off after earlier failures has not run out).
var ErrNotRetried = errors.New("containerd not restarted again")

// mayRestart refuses a restart that would repeat a failed attempt.
func (r *Reconciler) mayRestart(key string, now time.Time) error {
	a, ok := loadAttempt(r.Root)
	if !ok || key == "" {
		return nil
	}
	if a.Key == key {
		return fmt.Errorf("%w: the same config, containerd and gVisor release already failed at %s (%s); change one of them (or remove %s) and run again", ErrNotRetried, a.At.Format(time.RFC3339), a.Error, r.Root.Path(FailedAttemptPath))
	}
	if wait := backoff(a.Count); now.Before(a.At.Add(wait)) {
		return fmt.Errorf("%w: backing off after %d failed attempt(s), the last at %s (%s); the next is allowed from %s", ErrNotRetried, a.Count, a.At.Format(time.RFC3339), a.Error, a.At.Add(wait).Format(time.RFC3339))
	}
	return nil
}

func backoff(failures int) time.Duration {
	return backoffpkg.Doubling(backoffBase, backoffMax, failures)
}

// recordAttempt remembers a failed attempt (err != nil) or forgets it.
func (r *Reconciler) recordAttempt(key string, now time.Time, err error) {
	if key == "" {
		return
	}
	if err == nil {
		if rerr := r.Root.Remove(FailedAttemptPath); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			r.Log.Warn("could not forget the failed attempt", "path", r.Root.Path(FailedAttemptPath), "error", rerr)
		}
		return
	}
	a, _ := loadAttempt(r.Root)
	a = failedAttempt{Key: key, At: now, Count: a.Count + 1, Error: err.Error()}
	b, _ := json.MarshalIndent(a, "", "  ")
	if werr := r.Root.WriteFile(FailedAttemptPath, append(b, '\n'), fsroot.WriteOptions{Mode: 0o600}); werr != nil {
		r.Log.Warn("could not remember the failed attempt: the next run may restart containerd again", "path", r.Root.Path(FailedAttemptPath), "error", werr)
	}
}

// attemptKey identifies a run's input.
func (r *Reconciler) attemptKey(change ConfigChange) string {
	if change.Fingerprint == "" {
		return ""
	}
	return change.Fingerprint + "|release=" + r.Cfg.Release.Version + "|" + r.Cfg.Release.URL
}
