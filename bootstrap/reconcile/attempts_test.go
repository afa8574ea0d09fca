package reconcile

import (
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
)

func TestFailedAttemptsBackOff(t *testing.T) {
	r := &Reconciler{Root: fsroot.New(t.TempDir()), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	if err := r.mayRestart("a", t0); err != nil {
		t.Fatalf("no failure yet: %v", err)
	}
	r.recordAttempt("a", t0, errors.New("boom"))
	if err := r.mayRestart("a", t0.Add(24*time.Hour)); !errors.Is(err, ErrNotRetried) {
		t.Fatalf("identical input retried: %v", err)
	}
	if err := r.mayRestart("b", t0.Add(backoffBase-time.Second)); !errors.Is(err, ErrNotRetried) {
		t.Fatalf("new input retried within the back-off: %v", err)
	}
	if err := r.mayRestart("b", t0.Add(backoffBase)); err != nil {
		t.Fatalf("new input refused after the back-off: %v", err)
	}
	// Consecutive failures double the pause, up to the cap.
	r.recordAttempt("b", t0, errors.New("boom"))
	r.recordAttempt("c", t0, errors.New("boom"))
	if err := r.mayRestart("d", t0.Add(3*backoffBase)); !errors.Is(err, ErrNotRetried) {
		t.Fatalf("third try within 4x the base: %v", err)
	}
	if err := r.mayRestart("d", t0.Add(4*backoffBase)); err != nil {
		t.Fatalf("third try after 4x the base: %v", err)
	}
	if backoff(100) != backoffMax {
		t.Fatalf("back-off not capped: %v", backoff(100))
	}
	// A success forgets it all.
	r.recordAttempt("c", t0, nil)
	if err := r.mayRestart("c", t0); err != nil {
		t.Fatalf("after a success: %v", err)
	}
}
