package containerd

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// tripContext is done from its n+1th Err() call on: cancellation that arrives
// while the planning is under way, at a point the test chooses without timing.
type tripContext struct {
	context.Context
	calls, n int64
	done     chan struct{}
}

func newTripContext(n int64) *tripContext {
	return &tripContext{Context: context.Background(), n: n, done: make(chan struct{})}
}

func (c *tripContext) Err() error {
	if atomic.AddInt64(&c.calls, 1) > c.n {
		return context.Canceled
	}
	return nil
}

func (c *tripContext) Done() <-chan struct{} { return c.done }

func (c *tripContext) Deadline() (time.Time, bool) { return time.Time{}, false }

// A cancelled context (SIGTERM, the gate's start timeout) stops the planning
// of a large config with an error saying so, and nothing is written: up front,
// and part-way (during the edit's self-check, which reads the whole result).
func TestPlanStopsWhenCancelled(t *testing.T) {
	big := bigConfig(2<<20, 0)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	// The first parse checks about every 1024 of the config's ~28000
	// statements: 40 checks end it during the second (the self-check's).
	for name, ctx := range map[string]context.Context{"up front": cancelled, "part-way": newTripContext(40)} {
		t.Run(name, func(t *testing.T) {
			for _, mode := range []string{"inplace", "dropin"} {
				node := newScratchNode(t, mustVersion(t, "2.3.7"), "")
				node.C.Containerd.Mode = mode
				if err := os.WriteFile(node.configPath(), big, 0o644); err != nil {
					t.Fatal(err)
				}
				_, err := node.C.Ensure(ctx, false)
				if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "stopped before it finished") || !strings.Contains(err.Error(), "nothing was written") {
					t.Fatalf("%s: err = %v, want a stop because of the cancelled context", mode, err)
				}
				if got, _ := os.ReadFile(node.configPath()); string(got) != string(big) {
					t.Fatalf("%s: the config was changed by a cancelled plan", mode)
				}
				var files []string
				filepath.Walk(node.Dir, func(p string, info os.FileInfo, err error) error {
					if err == nil && !info.IsDir() {
						files = append(files, p)
					}
					return nil
				})
				if len(files) != 1 {
					t.Fatalf("%s: files after a cancelled plan: %v", mode, files)
				}
			}
		})
	}
	// The trip point is really part-way: one whole parse of the config takes
	// fewer than 40 checks, so the stop above came after planning had begun.
	if _, err := parseDocumentContext(newTripContext(40), "big", big); err != nil {
		t.Fatalf("one parse of the big config needs 40 checks or more: %v", err)
	}
}

// Without cancellation the same input plans (the test above fails for the
// right reason).
func TestPlanBigConfigWithoutCancel(t *testing.T) {
	node := newScratchNode(t, mustVersion(t, "2.3.7"), "")
	if err := os.WriteFile(node.configPath(), bigConfig(2<<20, 0), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := node.C.PlanContext(context.Background())
	if err != nil || !p.RestartNeeded {
		t.Fatalf("plan = %+v, %v", p.Changes, err)
	}
}

// A stopped check is a problem, never a pass.
func TestCheckStoppedIsAProblem(t *testing.T) {
	node := newScratchNode(t, mustVersion(t, "2.3.7"), "")
	if err := os.WriteFile(node.configPath(), bigConfig(1<<20, 0), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	probs := node.C.CheckContext(ctx)
	if len(probs) != 1 || !strings.Contains(probs[0].What, "stopped before it finished") {
		t.Fatalf("problems of a stopped check: %+v", probs)
	}
}
