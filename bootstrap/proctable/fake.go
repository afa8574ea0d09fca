package proctable

import (
	"path"
	"sync"
)

// Fake is a process table for unit tests: Running maps a node directory to the
// process executing from it; Err makes every scan unable to tell.
type Fake struct {
	mu      sync.Mutex
	Running map[string]Process
	Err     error
	// Scans counts the calls, by directory.
	Scans map[string]int
}

func (f *Fake) ExecutingFrom(dir string) (Process, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	dir = path.Clean(dir)
	if f.Scans == nil {
		f.Scans = map[string]int{}
	}
	f.Scans[dir]++
	if f.Err != nil {
		return Process{}, false, f.Err
	}
	p, ok := f.Running[dir]
	return p, ok, nil
}

// Set makes a process run from dir (p nil: none).
func (f *Fake) Set(dir string, p *Process) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Running == nil {
		f.Running = map[string]Process{}
	}
	if p == nil {
		delete(f.Running, path.Clean(dir))
		return
	}
	f.Running[path.Clean(dir)] = *p
}

// Count is the number of scans of dir so far.
func (f *Fake) Count(dir string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.Scans[path.Clean(dir)]
}
