// Package cri asks containerd, through the Kubernetes CRI API, what kubelet would
// see: whether a runtime handler is registered and which pods use it.
package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
)

// Status is the part of the CRI runtime status the bootstrap cares about.
type Status struct {
	RuntimeReady bool
	// Handlers are the runtime handlers the CRI lists (containerd 2.x).
	Handlers []string
	// ConfigRuntimes maps runtime name to runtimeType from the verbose config info
	// (containerd 1.7 and 2.x).
	ConfigRuntimes map[string]string
	// Runtimes is each runtime's config from the verbose info: what containerd
	// really runs for the handler.
	Runtimes map[string]RuntimeInfo
}

// RuntimeInfo is one runtime of the CRI's verbose config info (the same JSON
// names on containerd 1.7 and 2.x).
type RuntimeInfo struct {
	Type    string         `json:"runtimeType"`
	Path    string         `json:"runtimePath"`
	Options map[string]any `json:"options"`
}

// HasHandler reports whether kubelet can use the handler: containerd 2.x lists it in
// runtimeHandlers; 1.7 only shows it in the config info.
func (s Status) HasHandler(name string) bool {
	for _, h := range s.Handlers {
		if h == name {
			return true
		}
	}
	_, ok := s.ConfigRuntimes[name]
	return ok
}

// Runtime is what the reconcile needs from the CRI.
type Runtime interface {
	Status(ctx context.Context) (Status, error)
	// Version is the runtime's name and version, e.g. "containerd", "v2.3.7".
	Version(ctx context.Context) (name, version string, err error)
	// SandboxesWithHandler lists ready pod sandboxes using the handler.
	SandboxesWithHandler(ctx context.Context, handler string) ([]string, error)
	Close() error
}

// Dial connects to the CRI socket at a node path under root. It does not wait for
// the socket: callers poll Status for readiness.
func Dial(root fsroot.Root, address string) (Runtime, error) {
	sock := root.Path(address)
	conn, err := grpc.NewClient("unix://"+sock,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
	if err != nil {
		return nil, fmt.Errorf("CRI endpoint %s: %w", sock, err)
	}
	return &client{conn: conn, rt: runtimeapi.NewRuntimeServiceClient(conn), sock: sock}, nil
}

type client struct {
	conn *grpc.ClientConn
	rt   runtimeapi.RuntimeServiceClient
	sock string
}

func (c *client) Status(ctx context.Context) (Status, error) {
	resp, err := c.rt.Status(ctx, &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		return Status{}, fmt.Errorf("CRI Status on %s: %w", c.sock, err)
	}
	return parseStatus(resp)
}

func parseStatus(resp *runtimeapi.StatusResponse) (Status, error) {
	st := Status{ConfigRuntimes: map[string]string{}, Runtimes: map[string]RuntimeInfo{}}
	for _, cond := range resp.GetStatus().GetConditions() {
		if cond.Type == runtimeapi.RuntimeReady {
			st.RuntimeReady = cond.Status
		}
	}
	for _, h := range resp.GetRuntimeHandlers() {
		st.Handlers = append(st.Handlers, h.GetName())
	}
	sort.Strings(st.Handlers)
	if raw, ok := resp.GetInfo()["config"]; ok {
		var cfg struct {
			Containerd struct {
				Runtimes map[string]RuntimeInfo `json:"runtimes"`
			} `json:"containerd"`
		}
		if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
			return st, fmt.Errorf("CRI Status: decode config info: %w", err)
		}
		for name, r := range cfg.Containerd.Runtimes {
			st.ConfigRuntimes[name] = r.Type
			st.Runtimes[name] = r
		}
	}
	return st, nil
}

func (c *client) Version(ctx context.Context) (string, string, error) {
	resp, err := c.rt.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		return "", "", fmt.Errorf("CRI Version on %s: %w", c.sock, err)
	}
	return resp.GetRuntimeName(), resp.GetRuntimeVersion(), nil
}

func (c *client) SandboxesWithHandler(ctx context.Context, handler string) ([]string, error) {
	resp, err := c.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{
		Filter: &runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}},
	})
	if err != nil {
		return nil, fmt.Errorf("CRI ListPodSandbox on %s: %w", c.sock, err)
	}
	var ids []string
	for _, s := range resp.GetItems() {
		if s.GetRuntimeHandler() == handler {
			ids = append(ids, s.GetMetadata().GetNamespace()+"/"+s.GetMetadata().GetName())
		}
	}
	return ids, nil
}

func (c *client) Close() error { return c.conn.Close() }

// WaitStatus polls Status until the CRI answers or ctx ends; it returns the last
// error when it never answered.
func WaitStatus(ctx context.Context, rt Runtime, every time.Duration) (Status, error) {
	for {
		callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := rt.Status(callCtx)
		cancel()
		if err == nil {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return Status{}, fmt.Errorf("%w (gave up: %v)", err, ctx.Err())
		case <-time.After(every):
		}
	}
}
