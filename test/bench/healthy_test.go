package bench

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/test/faults/fakesystemd"
)

// BenchmarkHealthyRunProcess is `gvisor-bootstrap run` as a process on a healthy
// node: release installed, runsc registered, a real containerd 2 serving it. With
// "systemd" the node also has a service manager on D-Bus (test/faults/fakesystemd
// on a real dbus-daemon), so the run asks containerd's ActiveState over D-Bus as
// on a real node; without it (run.sh's setup) run treats the node as having no
// service manager. Each run must report healthy with 0 restarts.
func BenchmarkHealthyRunProcess(b *testing.B) {
	for _, withSystemd := range []bool{false, true} {
		name := "no-systemd"
		if withSystemd {
			name = "systemd-dbus"
		}
		b.Run(name, func(b *testing.B) {
			n := newNode(b)
			var sd *fakesystemd.Manager
			if withSystemd {
				sd = fakesystemd.Start(b, n.root.Path("/"), map[string]*fakesystemd.Unit{
					"containerd.service": {Restart: n.proc.Restart, Active: n.proc.Running},
				})
			}
			gvb := tool(b)
			cfg := "[release]\nversion = \"20260914.0\"\narch = \"x86_64\"\nurl = \"file://" + n.relDir + "\"\n"
			p := n.root.Path("/etc/gvisor-bootstrap/config.toml")
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
				b.Fatal(err)
			}
			// Register runsc and make the running containerd serve it.
			_ = exec.Command(gvb, "--root", n.root.Path("/"), "run").Run()
			if !withSystemd {
				if err := n.proc.Restart(); err != nil {
					b.Fatal(err)
				}
			}
			restartsBefore := 0
			if sd != nil {
				restartsBefore = sd.Restarts("containerd.service")
			}
			var total time.Duration
			for b.Loop() {
				t0 := time.Now()
				out, err := exec.Command(gvb, "--root", n.root.Path("/"), "run", "--json").Output()
				total += time.Since(t0)
				var rep struct {
					Outcome  string `json:"outcome"`
					Restarts int    `json:"containerd_restarts"`
					Handler  bool   `json:"handler_in_cri"`
				}
				if err != nil || json.Unmarshal(bytes.TrimSpace(out), &rep) != nil || rep.Outcome != "healthy" || rep.Restarts != 0 || !rep.Handler {
					b.Fatalf("not a healthy run: %v\n%s", err, out)
				}
			}
			if sd != nil && sd.Restarts("containerd.service") != restartsBefore {
				b.Fatal("a healthy run restarted containerd")
			}
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/run")
		})
	}
}
