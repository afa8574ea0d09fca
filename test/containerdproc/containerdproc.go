// Package containerdproc runs a real containerd process for tests: its own root,
// state and sockets under a temp dir, a config file the test controls, and a
// Restart that behaves like `systemctl restart containerd` (stop, start, report
// whether the new process came up).
package containerdproc

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Proc is one containerd daemon under test.
type Proc struct {
	Bin        string
	ConfigPath string // the config file containerd is started with
	Dir        string
	Socket     string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	log    bytes.Buffer
	Starts int
}

// New prepares (but does not start) a containerd whose state lives in dir. The
// config file at configPath must set root, state and grpc.address; Settings writes
// those lines for the given dialect version.
func New(t testing.TB, bin, configPath, dir string) *Proc {
	p := &Proc{Bin: bin, ConfigPath: configPath, Dir: dir, Socket: filepath.Join(dir, "containerd.sock")}
	t.Cleanup(func() { _ = p.Stop() })
	return p
}

// Settings are the top-level keys that keep the daemon inside dir; put them before
// the first table of any config the test writes.
func Settings(dir string) string {
	return fmt.Sprintf("root = %q\nstate = %q\n\n[grpc]\n  address = %q\n\n[ttrpc]\n  address = %q\n\n",
		filepath.Join(dir, "root"), filepath.Join(dir, "state"),
		filepath.Join(dir, "containerd.sock"), filepath.Join(dir, "containerd.sock.ttrpc"))
}

// AKS2404Body is the AKS Ubuntu 24.04 shape of containerd's config (containerd 2
// reading `version = 2` with the new table names, runc with SystemdCgroup), minus
// the version line and the daemon's own paths: prefix it with "version = 2\n" and
// Settings(dir).
const AKS2404Body = `
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "mcr.microsoft.com/oss/kubernetes/pause:3.6"
[plugins."io.containerd.cri.v1.runtime".containerd]
  default_runtime_name = "runc"
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
  BinaryName = "/usr/bin/runc"
  SystemdCgroup = true
`

// Start launches containerd and waits until it serves the CRI, or exits.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = os.Remove(p.Socket)
	cmd := exec.Command(p.Bin, "--config", p.ConfigPath)
	cmd.Stdout, cmd.Stderr = &p.log, &p.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.Bin, err)
	}
	p.Starts++
	p.cmd, p.exited = cmd, make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { _ = c.Wait(); close(done) }(cmd, p.exited)
	// The socket file exists before containerd serves on it: wait until the CRI
	// answers a Status call (any answer from the daemon counts, even "not ready"
	// or "unimplemented" when a test's config disables the CRI plugin).
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var last error
	for {
		if last = criAnswers(ctx, p.Socket); last == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("containerd exited at start: %s", tail(p.log.String()))
		case <-ctx.Done():
			return fmt.Errorf("containerd on %s did not answer the CRI's Status within 60s (last: %v); its log:\n%s", p.Socket, last, tail(p.log.String()))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// criAnswers makes one CRI Status call; nil when the daemon answered it.
func criAnswers(ctx context.Context, socket string) error {
	if _, err := os.Stat(socket); err != nil {
		return err
	}
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = runtimeapi.NewRuntimeServiceClient(conn).Status(cctx, &runtimeapi.StatusRequest{}, grpc.WaitForReady(false))
	if c := status.Code(err); err == nil || c != codes.Unavailable && c != codes.DeadlineExceeded && c != codes.Canceled {
		return nil
	}
	return err
}

// Stop terminates containerd and waits for it.
func (p *Proc) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
	p.cmd = nil
	return nil
}

// Restart is stop then start, as systemd does it.
func (p *Proc) Restart() error {
	if err := p.Stop(); err != nil {
		return err
	}
	return p.Start()
}

// Running reports whether the process is alive.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Log is what containerd printed so far.
func (p *Proc) Log() string { p.mu.Lock(); defer p.mu.Unlock(); return p.log.String() }

// Dump runs `containerd --config F config dump`: the effective, merged config.
func Dump(ctx context.Context, bin, config string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, bin, "--config", config, "config", "dump").Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return nil, fmt.Errorf("%s config dump: %v: %s", bin, err, ee.Stderr)
		}
		return nil, err
	}
	return out, nil
}

func tail(s string) string {
	if len(s) > 2000 {
		return s[len(s)-2000:]
	}
	return s
}
