// Package fakesystemd is systemd's D-Bus API as far as gvisor-bootstrap uses it
// (Manager.RestartUnit with its JobRemoved signal, a unit's ActiveState), served
// on a private bus run by the real dbus-daemon at <root>/run/dbus/system_bus_socket,
// so the real `gvisor-bootstrap run --root <root>` connects to it exactly as on a
// node. Restarting the unit runs a function the test gives (it restarts a real
// containerd process). Nothing of systemd itself runs: job ordering, unit files
// and cgroups are not modelled.
package fakesystemd

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/test/syncbuf"

	"github.com/godbus/dbus/v5"
)

// Unit is one service the fake manages.
type Unit struct {
	// Restart stops and starts the service; an error makes the job "failed".
	Restart func() error
	// Active reports whether the service runs (ActiveState "active", else "failed").
	Active func() bool
	// Stop stops the service; a job failed by FailNext calls it (the old process
	// is gone and the new one exited), when set.
	Stop func() error
}

// Manager is the fake systemd1 on its bus.
type Manager struct {
	mu       sync.Mutex
	conn     *dbus.Conn
	units    map[string]*Unit
	jobs     uint32
	restarts map[string]int
	calls    []string
	// FailNext makes the next n restart jobs fail: the service is stopped and not
	// started again (as when the unit's ExecStart exits at once).
	FailNext int
}

// Start runs dbus-daemon with a bus socket under root and registers the fake
// manager on it; both end with the test.
func Start(t testing.TB, root string, units map[string]*Unit) *Manager {
	t.Helper()
	dbusDaemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		t.Fatalf("dbus-daemon (apt-get install dbus-daemon): %v", err)
	}
	sock := filepath.Join(root, "run/dbus/system_bus_socket")
	if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "bus.conf")
	if err := os.WriteFile(cfg, []byte(busConfig(sock)), 0o644); err != nil {
		t.Fatal(err)
	}
	var daemonLog syncbuf.Buffer
	d := exec.Command(dbusDaemon, "--config-file="+cfg, "--nofork", "--nopidfile", "--nosyslog")
	d.Stdout, d.Stderr = &daemonLog, &daemonLog
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = d.Wait(); close(exited) }()
	t.Cleanup(func() { _ = d.Process.Kill(); <-exited })
	conn, err := connectWhenServing(sock, exited, 30*time.Second)
	if err != nil {
		t.Fatalf("dbus-daemon on %s: %v; its output:\n%s", sock, err, daemonLog.String())
	}
	t.Cleanup(func() { conn.Close() })
	m := &Manager{conn: conn, units: units, restarts: map[string]int{}}
	if err := conn.Export(managerObj{m}, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager"); err != nil {
		t.Fatal(err)
	}
	for name := range units {
		if err := conn.Export(unitProps{m, name}, unitPath(name), "org.freedesktop.DBus.Properties"); err != nil {
			t.Fatal(err)
		}
	}
	reply, err := conn.RequestName("org.freedesktop.systemd1", dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own org.freedesktop.systemd1: %v %v", reply, err)
	}
	return m
}

// connectWhenServing connects to the bus once dbus-daemon answers on it. The socket
// file appears before the daemon listens, so only a completed handshake and Hello
// (dbus.Connect) followed by a Ping to the bus itself count.
func connectWhenServing(sock string, exited <-chan struct{}, within time.Duration) (*dbus.Conn, error) {
	deadline := time.After(within)
	var last error
	for {
		conn, err := dbus.Connect("unix:path=" + sock)
		if err == nil {
			if err = conn.BusObject().Call("org.freedesktop.DBus.Peer.Ping", 0).Err; err == nil {
				return conn, nil
			}
			conn.Close()
		}
		last = err
		select {
		case <-exited:
			return nil, fmt.Errorf("dbus-daemon exited before serving (last connect: %v)", last)
		case <-deadline:
			return nil, fmt.Errorf("no answer on the bus within %s (last: %v)", within, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Restarts is how many restart jobs ran for unit.
func (m *Manager) Restarts(unit string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.restarts[unit]
}

func busConfig(sock string) string {
	return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=` + sock + `</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
  </policy>
</busconfig>
`
}

type managerObj struct{ m *Manager }

// RestartUnit returns a job path at once and runs the restart in the background,
// then emits JobRemoved with "done" or "failed", as systemd does.
func (o managerObj) RestartUnit(name, mode string) (dbus.ObjectPath, *dbus.Error) {
	m := o.m
	m.mu.Lock()
	u, ok := m.units[name]
	m.jobs++
	id := m.jobs
	fail := m.FailNext > 0
	if fail {
		m.FailNext--
	}
	m.restarts[name]++
	m.mu.Unlock()
	if !ok {
		return "", dbus.NewError("org.freedesktop.systemd1.NoSuchUnit", []any{"Unit " + name + " not found."})
	}
	job := dbus.ObjectPath(fmt.Sprintf("/org/freedesktop/systemd1/job/%d", id))
	go func() {
		result := "done"
		if fail {
			result = "failed"
			if u.Stop != nil {
				_ = u.Stop()
			}
		} else if err := u.Restart(); err != nil {
			result = "failed"
		}
		// The caller registers its listener before its call returns; a short
		// pause keeps the signal after the method return on the bus.
		time.Sleep(time.Millisecond)
		_ = m.conn.Emit("/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager.JobRemoved", id, job, name, result)
	}()
	return job, nil
}

// Reload answers daemon-reload (systemctl daemon-reload); it is counted.
func (o managerObj) Reload() *dbus.Error {
	o.m.record("Reload")
	return nil
}

// StartUnit and StopUnit are recorded (Calls) and their job ends "done" at once:
// units other than the managed ones (the tool's own path unit) have no process.
func (o managerObj) StartUnit(name, mode string) (dbus.ObjectPath, *dbus.Error) {
	return o.m.job("StartUnit "+name, name), nil
}

func (o managerObj) StopUnit(name, mode string) (dbus.ObjectPath, *dbus.Error) {
	return o.m.job("StopUnit "+name, name), nil
}

// transientProp is one entry of StartTransientUnit's a(sv) properties.
type transientProp struct {
	Name  string
	Value dbus.Variant
}

// StartTransientUnit (systemd-run) is recorded with its Type and ExecStart argv, e.g.
// "StartTransientUnit x.service Type=exec /usr/local/bin/gvisor-bootstrap uninstall";
// nothing is run.
func (o managerObj) StartTransientUnit(name, mode string, props []transientProp, aux []struct {
	Name  string
	Props []transientProp
}) (dbus.ObjectPath, *dbus.Error) {
	call := "StartTransientUnit " + name
	for _, p := range props {
		switch p.Name {
		case "Type":
			call += " Type=" + fmt.Sprint(p.Value.Value())
		case "ExecStart":
			var execs []struct {
				Path    string
				Argv    []string
				Unclean bool
			}
			if err := dbus.Store([]any{p.Value.Value()}, &execs); err != nil {
				return "", dbus.MakeFailedError(err)
			}
			for _, e := range execs {
				call += " " + strings.Join(e.Argv, " ")
			}
		}
	}
	return o.m.job(call, name), nil
}

func (m *Manager) job(call, name string) dbus.ObjectPath {
	m.record(call)
	m.mu.Lock()
	m.jobs++
	id := m.jobs
	m.mu.Unlock()
	job := dbus.ObjectPath(fmt.Sprintf("/org/freedesktop/systemd1/job/%d", id))
	go func() {
		time.Sleep(time.Millisecond)
		_ = m.conn.Emit("/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager.JobRemoved", id, job, name, "done")
	}()
	return job
}

func (m *Manager) record(call string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, call)
}

// Calls lists the Reload, StartUnit and StopUnit calls in order, e.g.
// "StartUnit gvisor-bootstrap.path".
func (m *Manager) Calls() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.calls...)
}

type unitProps struct {
	m    *Manager
	name string
}

// Get answers org.freedesktop.DBus.Properties.Get for the unit's ActiveState.
func (p unitProps) Get(iface, prop string) (dbus.Variant, *dbus.Error) {
	if prop != "ActiveState" {
		return dbus.Variant{}, dbus.NewError("org.freedesktop.DBus.Error.UnknownProperty", []any{prop})
	}
	state := "failed"
	if p.m.units[p.name].Active() {
		state = "active"
	}
	return dbus.MakeVariant(state), nil
}

// unitPath is systemd's object path for a unit name (go-systemd's PathBusEscape).
func unitPath(name string) dbus.ObjectPath {
	out := "/org/freedesktop/systemd1/unit/"
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' && i > 0 {
			out += string(c)
		} else {
			out += fmt.Sprintf("_%02x", c)
		}
	}
	return dbus.ObjectPath(out)
}
