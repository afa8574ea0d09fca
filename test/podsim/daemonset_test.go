package podsim

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/config"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/cri"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/proctable/proctabletest"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/reconcile"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/release/releasetest"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/render"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/test/containerdproc"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/test/faults/fakesystemd"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/test/syncbuf"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/test/testbin"
)

var bin string // gvisor-bootstrap, static, built from this tree

func TestMain(m *testing.M) {
	Child() // a re-executed container: never returns
	flag.Parse()
	if testing.Short() || os.Geteuid() != 0 {
		fmt.Println("podsim skipped: needs root and no -short (it mounts and drops capabilities for real)")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "podsim-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "gvisor-bootstrap")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "github.com/gvisor-bootstrap/gvisor-bootstrap/cmd/gvisor-bootstrap")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	rel  = "20260202.0"
	arch = "x86_64"
)

// node is a temp host with a real containerd 2 serving the CRI, systemd's D-Bus API
// (fakesystemd on a real dbus-daemon) restarting it, and a loopback release server.
type node struct {
	t    *testing.T
	host string
	cd   *containerdproc.Proc
	sd   *fakesystemd.Manager
	srv  *releasetest.Server
}

func newNode(t *testing.T) *node {
	cdBin := testbin.Require(t, "containerd-2")
	// Short: the CRI socket's path must fit in 108 bytes.
	host, err := os.MkdirTemp("/tmp", "gvbpod")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(host) })
	n := &node{t: t, host: host, srv: releasetest.NewPlainServer(t)}
	n.srv.AddBundle(rel, arch, map[string][]byte{
		"runsc":                      releasetest.Script("runsc", rel),
		"containerd-shim-runsc-v1":   releasetest.Script("containerd-shim-runsc-v1", rel),
		"gvisor-bin/checkpointgofer": releasetest.Script("checkpointgofer", rel),
	})
	sock := filepath.Join(host, "run/containerd")
	for _, d := range []string{sock, filepath.Join(host, "etc/systemd/system"), filepath.Join(host, "etc/containerd")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	n.write("/etc/containerd/config.toml", n.azureConfig())
	n.cd = containerdproc.New(t, cdBin, filepath.Join(host, "etc/containerd/config.toml"), sock)
	if err := n.cd.Start(); err != nil {
		t.Fatal(err)
	}
	n.sd = fakesystemd.Start(t, host, map[string]*fakesystemd.Unit{
		"containerd.service": {Restart: n.cd.Restart, Active: n.cd.Running, Stop: n.cd.Stop},
	})
	return n
}

// azureConfig is what AKS's provisioning writes: no runsc.
func (n *node) azureConfig() string {
	return "version = 2\n" + containerdproc.Settings(filepath.Join(n.host, "run/containerd")) + containerdproc.AKS2404Body
}

func (n *node) write(p, data string) {
	n.t.Helper()
	full := filepath.Join(n.host, p)
	tmp := full + ".agent"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		n.t.Fatal(err)
	}
	if err := os.Rename(tmp, full); err != nil {
		n.t.Fatal(err)
	}
}

// hostRun runs gvisor-bootstrap on the host itself (as the boot unit, path unit
// and kubelet gate do), against the same node.
func (n *node) hostRun(env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, append(args, "--root", n.host)...)
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

// manifests renders the DaemonSet as `gvisor-bootstrap render daemonset` does.
func manifests(t *testing.T, cfg config.Config) (corev1.ConfigMap, appsv1.DaemonSet) {
	out, err := render.DaemonSet(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	var ds appsv1.DaemonSet
	for _, doc := range bytes.Split(out, []byte("\n---\n")) {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatalf("%v\n%s", err, doc)
		}
		switch meta.Kind {
		case "ConfigMap":
			err = yaml.UnmarshalStrict(doc, &cm)
		case "DaemonSet":
			err = yaml.UnmarshalStrict(doc, &ds)
		}
		if err != nil {
			t.Fatalf("%s: %v", meta.Kind, err)
		}
	}
	if ds.Name == "" || cm.Name == "" {
		t.Fatalf("no DaemonSet or ConfigMap in:\n%s", out)
	}
	return cm, ds
}

// image is the DaemonSet image's content: the static binary and CA certificates.
func image(t *testing.T) string {
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "usr/local/bin"), 0o755))
	must(t, os.MkdirAll(filepath.Join(dir, "etc/ssl/certs"), 0o755))
	b, err := os.ReadFile(bin)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "usr/local/bin/gvisor-bootstrap"), b, 0o755))
	if ca, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt"); err == nil {
		must(t, os.WriteFile(filepath.Join(dir, "etc/ssl/certs/ca-certificates.crt"), ca, 0o644))
	}
	return dir
}

type proc struct {
	cmd            *exec.Cmd
	stdout, stderr syncbuf.Buffer
	done           chan struct{}
	err            error
}

func (p *proc) String() string {
	return fmt.Sprintf("stdout:\n%s\nstderr:\n%s", p.stdout.String(), p.stderr.String())
}

// start runs a container of the pod.
func start(t *testing.T, pod *Pod, ds appsv1.DaemonSet, c corev1.Container, override []string) *proc {
	t.Helper()
	s, err := pod.Container(ds.Spec.Template.Spec, c)
	if err != nil {
		t.Fatal(err)
	}
	if override != nil {
		s.Argv = override
	}
	self, err := os.Executable()
	must(t, err)
	cmd, err := Command(self, t.TempDir(), s)
	must(t, err)
	p := &proc{cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &p.stdout, &p.stderr
	must(t, cmd.Start())
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	})
	return p
}

// wait waits for the container to exit, with a deadline, and returns its code.
func (p *proc) wait(t *testing.T, name string, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(within):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		t.Fatalf("%s did not exit within %s\n%s", name, within, p)
	}
	if p.err != nil {
		if ee, ok := p.err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		t.Fatalf("%s: %v", name, p.err)
	}
	return 0
}

// until polls cond (which looks at the real thing: a file the process wrote, a
// line it printed) until it holds or the deadline passes.
func until(t *testing.T, what string, within time.Duration, p *proc, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		select {
		case <-p.done:
			if !cond() {
				t.Fatalf("%s: the container exited first (%v)\n%s", what, p.err, p)
			}
			return
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s\n%s", what, within, p)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func lastRun(host string) reconcile.Record {
	var rec reconcile.Record
	b, err := os.ReadFile(filepath.Join(host, reconcile.LastRunPath))
	if err == nil {
		_ = json.Unmarshal(b, &rec)
	}
	return rec
}

// TestRestrictedDaemonSetPod runs every container of the rendered DaemonSet as a
// runtime would on a node that has nothing of the product: the init containers
// copy the config and install the tool, the release and the units; the main
// container reconciles through the host's systemd (D-Bus) and verifies through the
// host's CRI, and its readiness probe passes. Then the host's own runs and the
// pod's take the same lock.
func TestRestrictedDaemonSetPod(t *testing.T) {
	n := newNode(t)
	cfg := config.Default()
	cfg.Release.Version, cfg.Release.BaseURL, cfg.Release.Arch = rel, n.srv.BaseURL(), arch
	cfg.Release.Retries, cfg.Release.Timeout = 1, config.Duration(20*time.Second)
	// A plain-HTTP mirror with the bundle pinned: the pod's container sees only its
	// own mounts, not the test CA of an HTTPS mirror (a real image ships CA certs).
	cfg.Release.SHA512 = n.srv.Pins(rel, arch)
	cfg.Boot.VerifyTimeout = config.Duration(60 * time.Second)
	cfg.Delivery.Image = "podsim.invalid/gvisor-bootstrap:test"
	cm, ds := manifests(t, cfg)

	api := newAPIServer(t, "podsim-node", map[string]string{"gvisor": "enabled"})
	api.served = n.servedHandlers
	api.withDaemonSet(cfg.Delivery.Namespace, ds.Name)
	pod := &Pod{Host: n.host, Rootfs: image(t), ConfigMaps: map[string]map[string]string{cm.Name: cm.Data}, NodeName: "podsim-node",
		Env: api.env(), Token: api.token, CACert: api.caPEM(), Namespace: cfg.Delivery.Namespace}
	t.Cleanup(pod.Close)
	spec := ds.Spec.Template.Spec
	for _, c := range spec.InitContainers {
		p := start(t, pod, ds, c, nil)
		if code := p.wait(t, c.Name, 3*time.Minute); code != 0 {
			t.Fatalf("init container %s exited %d\n%s", c.Name, code, p)
		}
		t.Logf("init container %s: ok", c.Name)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers", len(spec.Containers))
	}
	main := spec.Containers[0]
	p := start(t, pod, ds, main, nil)
	until(t, "the pod's first run verified through the CRI", 3*time.Minute, p, func() bool {
		r := lastRun(n.host)
		return r.Outcome == reconcile.Repaired && r.HandlerSeen
	})
	// Advertised only now, after the CRI verified runsc.
	until(t, "the pod labels its Node ready", time.Minute, p, func() bool { return api.labels()["gvisor-bootstrap.dev/runsc"] == "ready" })
	if r := lastRun(n.host); r.Advertised == nil || !*r.Advertised {
		t.Errorf("last-run record does not say advertised: %+v", r.Advertised)
	}
	if got := n.sd.Restarts("containerd.service"); got != 1 {
		t.Errorf("containerd restarted %d times through D-Bus, want 1", got)
	}
	// The readiness probe runs in the same container (its mounts, its privileges).
	probe := start(t, pod, ds, main, main.ReadinessProbe.Exec.Command)
	if code := probe.wait(t, "readiness probe", time.Minute); code != 0 {
		t.Fatalf("readiness probe exited %d\n%s", code, probe)
	}

	// The node ends right, as the host sees it.
	v := n.hostRun(nil, "verify")
	if out, err := v.CombinedOutput(); err != nil {
		t.Fatalf("host verify: %v\n%s", err, out)
	}
	for _, f := range []string{"/usr/local/bin/gvisor-bootstrap", "/etc/systemd/system/gvisor-bootstrap.service",
		"/etc/systemd/system/kubelet.service.d/10-gvisor-bootstrap.conf", "/etc/gvisor-bootstrap/config.toml"} {
		if _, err := os.Stat(filepath.Join(n.host, f)); err != nil {
			t.Errorf("the pod did not leave %s on the host: %v", f, err)
		}
	}
	if st, err := os.Stat(filepath.Join(n.host, "run/gvisor-bootstrap")); err != nil || st.Mode().Perm()&0o022 != 0 {
		t.Errorf("lock directory: %v %v", st.Mode(), err)
	}

	// Same lock: a host run stops while it holds the run lock (as if it were slow);
	// the config is rewritten without runsc (Azure's provisioning); the pod's
	// watch sees it and must wait for the host's run, which then repairs; the pod's
	// run after it finds the node healthy.
	host := n.hostRun([]string{"GVB_FAULTPOINT=reconcile-config-done", "GVB_FAULTPOINT_ACTION=stop"}, "run")
	var hostOut syncbuf.Buffer
	host.Stdout, host.Stderr = &hostOut, &hostOut
	must(t, host.Start())
	hostDone := make(chan error, 1)
	go func() { hostDone <- host.Wait() }()
	deadline := time.Now().Add(time.Minute)
	for !proctabletest.Stopped(host.Process.Pid) {
		if time.Now().After(deadline) {
			_ = host.Process.Kill()
			t.Fatalf("host run did not reach its fault point\n%s", hostOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	before := strings.Count(p.stdout.String(), "healthy in")
	n.write("/etc/containerd/config.toml", n.azureConfig())
	until(t, "the pod's run waits for the host's lock", 2*time.Minute, p, func() bool {
		return strings.Contains(p.stderr.String(), "waiting for the run lock")
	})
	if strings.Count(p.stdout.String(), "healthy in") != before {
		t.Fatalf("the pod's run finished while the host's run held the lock\n%s", p)
	}
	// Resumed, it finds the rewrite and reconciles again, passing the point again.
	deadline = time.Now().Add(2 * time.Minute)
	for done := false; !done; {
		_ = syscall.Kill(host.Process.Pid, syscall.SIGCONT)
		select {
		case err := <-hostDone:
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 10 {
				t.Fatalf("host run after the rewrite: %v (want exit 10)\n%s", err, hostOut.String())
			}
			done = true
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = host.Process.Kill()
			t.Fatalf("host run did not finish\n%s", hostOut.String())
		}
	}
	until(t, "the pod's run after the host's finds the node healthy", 2*time.Minute, p, func() bool {
		return strings.Count(p.stdout.String(), "healthy in") > before
	})

	// The pool label goes (the node leaves the pool), then SIGTERM: the pod leaves
	// for good and takes the ready label with it.
	api.setLabel("gvisor", "disabled")
	must(t, syscall.Kill(p.cmd.Process.Pid, syscall.SIGTERM))
	if code := p.wait(t, "reconcile after SIGTERM", time.Minute); code != 0 && code != 10 {
		t.Fatalf("reconcile exited %d after SIGTERM\n%s", code, p)
	}
	if l := api.labels(); l["gvisor-bootstrap.dev/runsc"] != "" || l["gvisor"] != "disabled" {
		t.Fatalf("after SIGTERM on an unselected node the labels are %v\n%s", l, p)
	}
	const handoff = "StartTransientUnit gvisor-bootstrap-uninstall.service Type=exec /usr/local/bin/gvisor-bootstrap uninstall"
	if slices.Contains(n.sd.Calls(), handoff) {
		t.Fatalf("a node that left the pool, its DaemonSet still there, was handed to uninstall: %q", n.sd.Calls())
	}

	// Back in the pool, then `kubectl delete -f` of the rendered file: the
	// ServiceAccount goes first (the token is refused from then on), then the
	// DaemonSet, whose deletion only the pod's open watch still sees; then SIGTERM.
	// The pod hands the node's uninstall to the host's systemd.
	api.setLabel("gvisor", "enabled")
	p = start(t, pod, ds, main, nil)
	until(t, "the pod labels its Node again", 3*time.Minute, p, func() bool {
		return api.labels()["gvisor-bootstrap.dev/runsc"] == "ready" && api.watchingDaemonSet()
	})
	api.revokeToken()
	api.deleteDaemonSet()
	// The pod read the event when it lists again after it (and is refused).
	until(t, "the pod's watch saw the deletion", time.Minute, p, api.refusedDaemonSetReads)
	must(t, syscall.Kill(p.cmd.Process.Pid, syscall.SIGTERM))
	if code := p.wait(t, "reconcile after its DaemonSet's deletion", time.Minute); code != 0 && code != 10 {
		t.Fatalf("reconcile exited %d after SIGTERM\n%s", code, p)
	}
	if !slices.Contains(n.sd.Calls(), handoff) {
		t.Fatalf("after its DaemonSet was deleted the pod did not hand the uninstall to the host: systemd calls %q\n%s", n.sd.Calls(), p)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// servedHandlers is what a kubelet would report in Node.status.runtimeHandlers:
// the handlers the node's real containerd serves through the CRI right now.
func (n *node) servedHandlers() []string {
	rt, err := cri.Dial(fsroot.New(n.host), "/run/containerd/containerd.sock")
	if err != nil {
		return nil
	}
	defer rt.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := rt.Status(ctx)
	if err != nil {
		return nil
	}
	var out []string
	for _, h := range []string{"runc", "runsc"} {
		if st.HasHandler(h) {
			out = append(out, h)
		}
	}
	return out
}
