// Package systemd is the seam between the reconcile and the node's service manager:
// a small Manager interface, its D-Bus implementation (go-systemd) and a fake for
// unit tests.
package systemd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/nodepaths"
)

// Manager is what the reconcile needs from systemd.
type Manager interface {
	// ActiveState is the unit's ActiveState: "active", "inactive", "activating",
	// "failed", ... A unit systemd does not know is "inactive".
	ActiveState(ctx context.Context, unit string) (string, error)
	// Restart restarts the unit and waits for the job's result.
	Restart(ctx context.Context, unit string) error
	// Start starts the unit (a no-op when it is active) and waits for the job.
	Start(ctx context.Context, unit string) error
	// Stop stops the unit and waits for the job's result; a unit systemd does
	// not know is already stopped.
	Stop(ctx context.Context, unit string) error
	// Reload is `systemctl daemon-reload`.
	Reload(ctx context.Context) error
	// RunTransient starts argv as a transient service named unit (`systemd-run
	// --unit`) and waits until it has started, not until it ends: the work then
	// belongs to the host and outlives the caller (a pod being deleted).
	RunTransient(ctx context.Context, unit, description string, argv []string) error
	Close()
}

// ErrUnavailable means no systemd answers for this root (an image folder, a test
// root, a container without the host's bus).
var ErrUnavailable = errors.New("systemd is not reachable")

// Connect talks to the systemd of the node behind root: the running system's own
// bus when root is "/", else the system bus socket found under the root (the
// DaemonSet mounts the host's /run/dbus at /host/run/dbus).
func Connect(ctx context.Context, root fsroot.Root) (Manager, error) {
	socket := root.Path(nodepaths.DBusSocket)
	if _, err := os.Stat(socket); err != nil {
		if root.IsHost() {
			// systemd's private socket works without dbus-daemon (early boot).
			if c, err := sdbus.NewSystemdConnectionContext(ctx); err == nil {
				return &dbusManager{conn: c}, nil
			}
		}
		return nil, fmt.Errorf("%w: no D-Bus socket at %s", ErrUnavailable, socket)
	}
	conn, err := sdbus.NewConnection(func() (*godbus.Conn, error) {
		c, err := godbus.Dial("unix:path=" + socket)
		if err != nil {
			return nil, err
		}
		if err := c.Auth([]godbus.Auth{godbus.AuthExternal(fmt.Sprint(os.Getuid()))}); err != nil {
			c.Close()
			return nil, err
		}
		if err := c.Hello(); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: connect to %s: %v", ErrUnavailable, socket, err)
	}
	return &dbusManager{conn: conn}, nil
}

type dbusManager struct{ conn *sdbus.Conn }

func (m *dbusManager) ActiveState(ctx context.Context, unit string) (string, error) {
	p, err := m.conn.GetUnitPropertyContext(ctx, unit, "ActiveState")
	if err != nil {
		return "", fmt.Errorf("read ActiveState of %s over D-Bus: %w", unit, err)
	}
	return strings.Trim(p.Value.String(), `"`), nil
}

// jobFunc queues a unit job (go-systemd's RestartUnitContext, StartUnitContext, ...).
type jobFunc func(ctx context.Context, unit, mode string, done chan<- string) (int, error)

// job queues verb on unit and waits for the job's result.
func job(ctx context.Context, verb, unit string, queue jobFunc) error {
	done := make(chan string, 1)
	if _, err := queue(ctx, unit, "replace", done); err != nil {
		return fmt.Errorf("%s %s over D-Bus: %w", verb, unit, err)
	}
	select {
	case res := <-done:
		if res != "done" {
			return fmt.Errorf("%s %s: job result %q; see `journalctl -u %s`", verb, unit, res, unit)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s %s: %w", verb, unit, ctx.Err())
	}
}

func (m *dbusManager) Restart(ctx context.Context, unit string) error {
	return job(ctx, "restart", unit, m.conn.RestartUnitContext)
}

func (m *dbusManager) Start(ctx context.Context, unit string) error {
	return job(ctx, "start", unit, m.conn.StartUnitContext)
}

func (m *dbusManager) Stop(ctx context.Context, unit string) error {
	err := job(ctx, "stop", unit, m.conn.StopUnitContext)
	var de godbus.Error
	if errors.As(err, &de) && de.Name == "org.freedesktop.systemd1.NoSuchUnit" {
		return nil // a unit systemd does not know is already stopped
	}
	return err
}

func (m *dbusManager) Reload(ctx context.Context) error {
	if err := m.conn.ReloadContext(ctx); err != nil {
		return fmt.Errorf("systemd daemon-reload over D-Bus: %w", err)
	}
	return nil
}

func (m *dbusManager) RunTransient(ctx context.Context, unit, description string, argv []string) error {
	props := []sdbus.Property{
		sdbus.PropDescription(description),
		sdbus.PropType("exec"), // the job is done once the binary runs
		sdbus.PropExecStart(argv, true),
	}
	return job(ctx, "start transient", unit, func(ctx context.Context, unit, mode string, done chan<- string) (int, error) {
		return m.conn.StartTransientUnitContext(ctx, unit, mode, props, done)
	})
}

func (m *dbusManager) Close() { m.conn.Close() }
