package systemd

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
)

func TestConnectUnderAFolderWithoutBusIsUnavailable(t *testing.T) {
	root := fsroot.New(t.TempDir())
	_, err := Connect(context.Background(), root)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("want ErrUnavailable, got %v", err)
	}
	if !strings.Contains(err.Error(), root.Path("/run/dbus/system_bus_socket")) {
		t.Fatalf("error does not name the socket it looked for: %v", err)
	}
}

func TestFakeRestartHookFailureMarksUnitFailed(t *testing.T) {
	f := NewFake("containerd.service")
	f.OnRestart = func(string) error { return errors.New("exit status 1") }
	if err := f.Restart(context.Background(), "containerd.service"); err == nil {
		t.Fatal("restart succeeded")
	}
	if s, _ := f.ActiveState(context.Background(), "containerd.service"); s != "failed" || f.RestartCount("containerd.service") != 1 {
		t.Fatalf("state %s, restarts %d", s, f.RestartCount("containerd.service"))
	}
}
