package cri

import (
	"context"
	"errors"
	"sync"
)

// Fake is an in-memory Runtime for unit tests.
type Fake struct {
	mu        sync.Mutex
	St        Status
	Err       error // returned by Status while set (CRI not answering)
	Name, Ver string
	Sandboxes map[string][]string // handler -> pods
	Calls     int
}

func (f *Fake) Status(context.Context) (Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	if f.Err != nil {
		return Status{}, f.Err
	}
	return f.St, nil
}

func (f *Fake) Version(context.Context) (string, string, error) {
	if f.Ver == "" {
		return "", "", errors.New("fake: no version")
	}
	return f.Name, f.Ver, nil
}

func (f *Fake) SandboxesWithHandler(_ context.Context, h string) ([]string, error) {
	return f.Sandboxes[h], nil
}

func (f *Fake) Close() error { return nil }

// Set replaces the status under the lock.
func (f *Fake) Set(st Status, err error) {
	f.mu.Lock()
	f.St, f.Err = st, err
	f.mu.Unlock()
}

// WithHandler returns st serving handler as the runtime rt, in the shape the real
// CRI reports it (listed, and in the verbose config).
func (st Status) WithHandler(handler string, rt RuntimeInfo) Status {
	st.Handlers = append(append([]string{}, st.Handlers...), handler)
	c := map[string]string{}
	for k, v := range st.ConfigRuntimes {
		c[k] = v
	}
	r := map[string]RuntimeInfo{}
	for k, v := range st.Runtimes {
		r[k] = v
	}
	c[handler], r[handler] = rt.Type, rt
	st.ConfigRuntimes, st.Runtimes = c, r
	return st
}

// GVisor is the runsc runtime as this tool registers it with options file
// configPath (and no runtime_path).
func GVisor(configPath string) RuntimeInfo {
	return RuntimeInfo{Type: RunscRuntimeType, Options: map[string]any{"TypeUrl": RunscOptionsType, "ConfigPath": configPath}}
}
