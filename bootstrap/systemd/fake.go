package systemd

import (
	"context"
	"fmt"
	"sync"
)

// Fake is an in-memory Manager for unit tests. OnRestart, when set, runs on every
// restart (for example to restart a real containerd process behind the seam) and
// its error fails the restart.
type Fake struct {
	mu       sync.Mutex
	States   map[string]string
	Restarts map[string]int
	Reloads  int
	Stops    []string
	Starts   []string
	// Transient lists RunTransient's calls: the unit, then argv.
	Transient [][]string
	OnRestart func(unit string) error
}

// NewFake returns a Fake where the given units are active.
func NewFake(active ...string) *Fake {
	f := &Fake{States: map[string]string{}, Restarts: map[string]int{}}
	for _, u := range active {
		f.States[u] = "active"
	}
	return f
}

func (f *Fake) ActiveState(_ context.Context, unit string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s, ok := f.States[unit]; ok {
		return s, nil
	}
	return "inactive", nil
}

func (f *Fake) Restart(_ context.Context, unit string) error {
	f.mu.Lock()
	f.Restarts[unit]++
	hook := f.OnRestart
	f.mu.Unlock()
	if hook != nil {
		if err := hook(unit); err != nil {
			f.mu.Lock()
			f.States[unit] = "failed"
			f.mu.Unlock()
			return fmt.Errorf("restart %s: %w", unit, err)
		}
	}
	f.mu.Lock()
	f.States[unit] = "active"
	f.mu.Unlock()
	return nil
}

func (f *Fake) Start(_ context.Context, unit string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Starts = append(f.Starts, unit)
	f.States[unit] = "active"
	return nil
}

func (f *Fake) Stop(_ context.Context, unit string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Stops = append(f.Stops, unit)
	if _, ok := f.States[unit]; ok {
		f.States[unit] = "inactive"
	}
	return nil
}

func (f *Fake) Reload(context.Context) error {
	f.mu.Lock()
	f.Reloads++
	f.mu.Unlock()
	return nil
}

func (f *Fake) RunTransient(_ context.Context, unit, _ string, argv []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Transient = append(f.Transient, append([]string{unit}, argv...))
	f.States[unit] = "active"
	return nil
}

func (f *Fake) Close() {}

// RestartCount is how many times unit was restarted.
func (f *Fake) RestartCount(unit string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.Restarts[unit]
}
