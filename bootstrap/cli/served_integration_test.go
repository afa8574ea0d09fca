package cli

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/config"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/containerd"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/cri"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/reconcile"
)

// A conf.d file (imported, as containerd 2.2+'s default config does) binds the
// name "runsc" to runc. Real containerd 2.3 serves "runsc" then, so a check of
// the name alone passes while pods asking for gVisor get no sandbox. Every
// command must say so, naming the file; none may call the node healthy.
const runcAsRunsc = `version = 2
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runsc]
  runtime_type = "io.containerd.runc.v2"
`

const otherFile = "/etc/containerd/conf.d/50-other.toml"

func TestConfDFileServingRuncAsRunscIsRefusedEverywhere(t *testing.T) {
	n := newRealNodeWith(t, "imports = [\"conf.d/*.toml\"]\n", map[string]string{"50-other.toml": runcAsRunsc})
	st := n.criStatus(t)
	if got := st.ConfigRuntimes["runsc"]; got != "io.containerd.runc.v2" {
		t.Fatalf("setup: containerd serves runsc as %q, want runc.v2 (the imported file is not loaded?)\n%s", got, n.proc.Log())
	}
	root := n.root.Dir()
	named := n.root.Path(otherFile)
	args := func(cmd ...string) []string {
		return append(cmd, "--root", root, "--containerd-version", "2.3.7", "--release-url", n.cfg.Release.URL)
	}

	// configure refuses up front: exit 1, the file named, nothing written.
	code, out, errs := runMain(t, "configure", "--root", root, "--containerd-version", "2.3.7")
	if code != ExitFailed || !strings.Contains(errs, named) {
		t.Fatalf("configure: exit %d, want %d naming %s\n%s\n%s", code, ExitFailed, named, out, errs)
	}
	if cur, _ := n.root.ReadFile("/etc/containerd/config.toml"); string(cur) != n.config {
		t.Fatal("configure refused but changed containerd's config")
	}
	if n.root.Exists(n.cfg.Containerd.RuntimeConfigPath) {
		t.Fatal("configure refused but wrote the runsc options file")
	}

	// The kubelet gate refuses, naming the file, without restarting containerd.
	starts := n.proc.Starts
	code, _, errs = runMain(t, args("run", "--gate")...)
	if code != ExitFailed || !strings.Contains(errs, named) {
		t.Fatalf("run --gate: exit %d, want %d naming %s\n%s", code, ExitFailed, named, errs)
	}
	if n.proc.Starts != starts {
		t.Fatalf("run --gate restarted containerd (%d -> %d starts)", starts, n.proc.Starts)
	}

	// verify lists it, and the CRI's runsc as not gVisor, naming the file.
	code, out, _ = runMain(t, args("verify")...)
	if code != ExitFailed || !strings.Contains(out, named) || !strings.Contains(out, "io.containerd.runc.v2") {
		t.Fatalf("verify: exit %d\n%s", code, out)
	}

	// status does not call runsc served.
	code, out, _ = runMain(t, args("status")...)
	if code != ExitOK || !strings.Contains(out, "NOT served as gVisor") || !strings.Contains(out, named) {
		t.Fatalf("status: exit %d\n%s", code, out)
	}
}

// Once runsc is registered and served, another agent drops a file binding the
// name to runc and restarts containerd: the one served-check reports it with the
// defining file, and the reconcile (with a service manager) refuses without a
// restart loop.
func TestServedCheckNamesTheFileAfterAnotherAgentsChange(t *testing.T) {
	n := newRealNodeWith(t, "imports = [\"conf.d/*.toml\"]\n", nil)
	rep := n.reconciler(t, nil).Run(context.Background(), reconcile.Options{})
	if rep.Outcome != reconcile.Repaired || !rep.Served || rep.Restarts != 1 {
		t.Fatalf("first run: %+v\n%s", rep, n.proc.Log())
	}
	if err := n.root.WriteFile(otherFile, []byte(runcAsRunsc), fsroot.WriteOptions{Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	if err := n.proc.Restart(); err != nil {
		t.Fatal(err)
	}
	conf := newConfigurator(&Globals{Root: n.root, Config: n.cfg}, mustParse(t, "2.3.7"), nil)
	err := n.criStatus(t).CheckServed(n.root, conf.Expect())
	var ns *cri.NotServed
	if !errors.As(err, &ns) || ns.DefinedBy != n.root.Path(otherFile) || !strings.Contains(err.Error(), "io.containerd.runc.v2") {
		t.Fatalf("CheckServed = %v, want NotServed defined by %s as runc.v2", err, n.root.Path(otherFile))
	}

	starts := n.proc.Starts
	rep = n.reconciler(t, nil).Run(context.Background(), reconcile.Options{Gate: true})
	if rep.Outcome != reconcile.Failed || rep.Served || !strings.Contains(rep.Error, n.root.Path(otherFile)) {
		t.Fatalf("gate after the change: %+v", rep)
	}
	if n.proc.Starts != starts {
		t.Fatalf("the gate restarted containerd although no restart can fix it (%d -> %d)", starts, n.proc.Starts)
	}
	if _, err := os.Stat(n.root.Path(otherFile)); err != nil {
		t.Fatalf("the other agent's file was touched: %v", err)
	}
}

func mustParse(t *testing.T, s string) containerd.Version {
	t.Helper()
	v, err := containerd.ParseVersion(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// bin_dir outside containerd's PATH: the handler names the shim (runtime_path)
// and the options file names runsc (binary_name), both through the stable links,
// and the real CRI serves exactly that.
func TestBinDirOutsidePathIsNamedAbsolutely(t *testing.T) {
	n := newRealNode(t)
	n.cfg.Release.BinDir = "/opt/gvisor/bin"
	rep := n.reconciler(t, nil).Run(context.Background(), reconcile.Options{})
	if rep.Outcome != reconcile.Repaired || !rep.Served {
		t.Fatalf("%+v\n%s", rep, n.proc.Log())
	}
	st := n.criStatus(t)
	if got := st.Runtimes["runsc"].Path; got != "/opt/gvisor/bin/containerd-shim-runsc-v1" {
		t.Fatalf("CRI serves runtime_path %q", got)
	}
	opts, _ := n.root.ReadFile(n.cfg.Containerd.RuntimeConfigPath)
	if !strings.Contains(string(opts), `binary_name = "/opt/gvisor/bin/runsc"`) {
		t.Fatalf("options file does not name runsc:\n%s", opts)
	}
	// The default bin_dir needs neither.
	m := newRealNode(t)
	if rep := m.reconciler(t, nil).Run(context.Background(), reconcile.Options{}); !rep.Served {
		t.Fatalf("%+v", rep)
	}
	if got := m.criStatus(t).Runtimes["runsc"].Path; got != "" {
		t.Fatalf("runtime_path %q written for a bin_dir on PATH", got)
	}
	if opts, _ := m.root.ReadFile(m.cfg.Containerd.RuntimeConfigPath); strings.Contains(string(opts), "binary_name") {
		t.Fatalf("binary_name written for a bin_dir on PATH:\n%s", opts)
	}
}

// Never a loop: after a run that restarted the real containerd and failed (it
// rejects the new config; rolled back), an identical run neither writes nor
// restarts, and says why; kubelet restarting the gate every few seconds must not
// restart containerd every few seconds.
func TestFailedAttemptIsNotRepeated(t *testing.T) {
	n := newRealNode(t)
	v := mustParse(t, "2.3.7")
	n.cfg.Boot.VerifyTimeout = config.Duration(3 * time.Second)
	conf := breakingConfig{&containerd.Configurator{Root: n.root, Containerd: n.cfg.Containerd, Runsc: n.cfg.Runsc, BinDir: n.cfg.Release.BinDir, Version: v}}
	rep := n.reconciler(t, conf).Run(context.Background(), reconcile.Options{})
	if rep.Outcome != reconcile.Failed || rep.Restarts != 2 || !rep.RolledBack {
		t.Fatalf("first run: %+v", rep)
	}
	starts := n.proc.Starts
	for i := 0; i < 3; i++ {
		rep = n.reconciler(t, conf).Run(context.Background(), reconcile.Options{Gate: true})
		if rep.Outcome != reconcile.Failed || rep.Restarts != 0 || !strings.Contains(rep.Error, "already failed") {
			t.Fatalf("repeat %d: %+v", i, rep)
		}
	}
	if n.proc.Starts != starts {
		t.Fatalf("containerd restarted again for an identical input (%d -> %d starts)", starts, n.proc.Starts)
	}
	if cur, _ := n.root.ReadFile("/etc/containerd/config.toml"); string(cur) != n.config {
		t.Fatal("a refused repeat wrote containerd's config")
	}
	// A changed input (another agent rewrote the config) may try again once the
	// back-off has run out; here it has not.
	if err := n.root.WriteFile("/etc/containerd/config.toml", []byte(n.config+"\n# edited\n"), fsroot.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	rep = n.reconciler(t, conf).Run(context.Background(), reconcile.Options{})
	if rep.Outcome != reconcile.Failed || rep.Restarts != 0 || !strings.Contains(rep.Error, "backing off") {
		t.Fatalf("changed input within the back-off: %+v", rep)
	}
}

// containerd releases that hang deleting gVisor pods are named by run (journal
// and metrics), verify and status; they do not fail the node.
func TestKnownBadContainerdIsWarnedAbout(t *testing.T) {
	root, rel := t.TempDir(), serveRelease(t)
	dir := t.TempDir()
	if err := fsroot.New(root).WriteFile("/etc/gvisor-bootstrap/config.toml", []byte("[metrics]\ntextfile_dir = \""+dir+"\"\n"), fsroot.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	args := func(cmd string, v string) []string {
		return []string{cmd, "--root", root, "--release-url", "file://" + rel, "--containerd-version", v}
	}
	code, _, errs := runMain(t, args("run", "2.0.5")...)
	if code != ExitRepaired || !strings.Contains(errs, "#11708") {
		t.Fatalf("run on 2.0.5: exit %d\n%s", code, errs)
	}
	prom, _ := fsroot.New(root).ReadFile(dir + "/gvisor_bootstrap.prom")
	if !strings.Contains(string(prom), "gvisor_bootstrap_warnings 1") {
		t.Fatalf("metrics do not count the warning:\n%s", prom)
	}
	if _, out, _ := runMain(t, args("verify", "2.1.1")...); !strings.Contains(out, "WARNING: containerd 2.1.1 hangs deleting gVisor pods") {
		t.Fatalf("verify on 2.1.1:\n%s", out)
	}
	if _, out, _ := runMain(t, args("status", "2.1.1")...); !strings.Contains(out, "WARNING: containerd 2.1.1") {
		t.Fatalf("status on 2.1.1:\n%s", out)
	}
	if _, out, _ := runMain(t, args("status", "2.1.2")...); strings.Contains(out, "WARNING: containerd") {
		t.Fatalf("status warns about 2.1.2, which is fixed:\n%s", out)
	}
}
