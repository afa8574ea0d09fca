package containerd

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/config"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
)

func newNodeConfigurator(t *testing.T, fixture, version string) (*Configurator, config.Config) {
	t.Helper()
	root, cfg := nodeFixture(t, fixture)
	return &Configurator{Root: root, Containerd: cfg.Containerd, Runsc: cfg.Runsc, Version: mustVersion(t, version)}, cfg
}

func applyOK(t *testing.T, c *Configurator) Plan {
	t.Helper()
	p, err := c.Plan()
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	if err := c.Apply(p); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return p
}

func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			b, _ := os.ReadFile(p)
			out[p] = info.ModTime().String() + "\x00" + string(b)
		}
		return nil
	})
	return out
}

func TestPlanWritesNothing(t *testing.T) {
	c, _ := newNodeConfigurator(t, "aks-ubuntu2404.toml", "2.3.7")
	before := snapshot(t, c.Root.Dir())
	p, err := c.Plan()
	if err != nil || !p.Changed() {
		t.Fatalf("Plan: %v changed=%v", err, p.Changed())
	}
	if diff := p.Diff(); !containsAll(diff, "+++ /etc/containerd/config.toml", "+  [plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runsc]", "--- /dev/null") {
		t.Errorf("diff:\n%s", diff)
	}
	if after := snapshot(t, c.Root.Dir()); len(after) != len(before) {
		t.Errorf("Plan wrote files: %v", after)
	}
	_ = c.Check()
	if after := snapshot(t, c.Root.Dir()); len(after) != len(before) {
		t.Errorf("Check wrote files: %v", after)
	}
}

// TestBackupKeptOnceNeverPatched: the first change keeps the pristine original; a
// later change of an already-patched file leaves that backup alone; a pristine file
// written by the node's provisioning (AKS rewrites the config at every reimage)
// becomes the new backup.
func TestBackupKeptOnceNeverPatched(t *testing.T) {
	c, cfg := newNodeConfigurator(t, "aks-ubuntu2204.toml", "1.7.35")
	orig, _ := c.Root.ReadFile(cfg.Containerd.ConfigPath)
	p := applyOK(t, c)
	if p.Backup == nil {
		t.Fatal("no backup planned for the first change")
	}
	backup, err := c.Root.ReadFile(cfg.Containerd.BackupPath)
	if err != nil || !bytes.Equal(backup, orig) {
		t.Fatalf("backup = %q, %v; want the original", backup, err)
	}
	if st, _ := os.Stat(c.Root.Path(cfg.Containerd.BackupPath)); st.Mode().Perm() != 0o600 {
		t.Errorf("backup mode %v", st.Mode())
	}

	// A change to the already-patched file (new options path) must not replace it.
	c.Containerd.RuntimeConfigPath = "/etc/containerd/runsc-new.toml"
	if p := applyOK(t, c); !p.Changed() || p.Backup != nil {
		t.Fatalf("second change: changed=%v backup=%v", p.Changed(), p.Backup)
	}
	if b, _ := c.Root.ReadFile(cfg.Containerd.BackupPath); !bytes.Equal(b, orig) {
		t.Fatal("backup overwritten by an already-patched file")
	}

	// Provisioning writes a new pristine file: it becomes the backup.
	fresh, _ := os.ReadFile("testdata/default-1.7.toml")
	if err := c.Root.WriteFile(cfg.Containerd.ConfigPath, fresh, fsroot.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	applyOK(t, c)
	if b, _ := c.Root.ReadFile(cfg.Containerd.BackupPath); !bytes.Equal(b, fresh) {
		t.Fatal("backup not refreshed from the new pristine config")
	}
	if has, _ := HasRunsc(fresh); has {
		t.Fatal("fixture has runsc")
	}
}

func TestModeAndOwnerPreservedAndAtomic(t *testing.T) {
	c, cfg := newNodeConfigurator(t, "aks-ubuntu2204.toml", "1.7.35")
	p := c.Root.Path(cfg.Containerd.ConfigPath)
	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	uid, gid := os.Getuid(), os.Getgid()
	if os.Geteuid() == 0 {
		uid, gid = 1234, 5678
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := os.Stat(p)
	plan := applyOK(t, c)
	after, _ := os.Stat(p)
	if after.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", after.Mode().Perm())
	}
	st := after.Sys().(*syscall.Stat_t)
	if int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("owner %d:%d, want %d:%d", st.Uid, st.Gid, uid, gid)
	}
	if os.SameFile(before, after) {
		t.Error("config rewritten in place; want an atomic rename")
	}
	for _, ch := range plan.Changes {
		if ch.Path == cfg.Containerd.ConfigPath && ch.Mode != 0o640 {
			t.Errorf("FileChange.Mode = %v, want the file's 0640", ch.Mode)
		}
	}
}

func TestOptionsFile(t *testing.T) {
	c, cfg := newNodeConfigurator(t, "default-1.7.toml", "1.7.35")
	c.Runsc.LogPath = "/var/log/runsc/%ID%/shim.log"
	c.Runsc.LogLevel = "debug"
	c.Runsc.Flags = map[string]string{"debug": "true", "net-raw": "true", "overlay2": "root:self"}
	applyOK(t, c)
	data, _ := c.Root.ReadFile(cfg.Containerd.RuntimeConfigPath)
	var o map[string]any
	if err := toml.Unmarshal(data, &o); err != nil {
		t.Fatal(err)
	}
	if o["log_path"] != c.Runsc.LogPath || o["log_level"] != "debug" {
		t.Errorf("shim logging: %v", o)
	}
	rc := o["runsc_config"].(map[string]any)
	want := map[string]any{"debug": "true", "net-raw": "true", "overlay2": "root:self", "platform": "systrap"}
	if len(rc) != len(want) {
		t.Errorf("runsc_config = %v, want %v", rc, want)
	}
	for k, v := range want {
		if rc[k] != v {
			t.Errorf("runsc_config.%s = %#v, want %#v", k, rc[k], v)
		}
	}

	// Reserved flags are refused.
	c.Runsc.Flags = map[string]string{"systemd-cgroup": "true"}
	if _, err := c.Plan(); err == nil || !strings.Contains(err.Error(), "SystemdCgroup") {
		t.Errorf("systemd-cgroup in flags: %v", err)
	}
	c.Runsc.Flags = map[string]string{"platform": "ptrace"}
	if _, err := c.Plan(); err == nil || !strings.Contains(err.Error(), "runsc.platform") {
		t.Errorf("platform in flags: %v", err)
	}

	// A change of the options file alone needs no containerd restart.
	c.Runsc.Flags = map[string]string{"debug": "false"}
	p := applyOK(t, c)
	if len(p.Changes) != 1 || p.Changes[0].Path != cfg.Containerd.RuntimeConfigPath || p.RestartNeeded {
		t.Errorf("options-only change: %+v restart=%v", p.Changes, p.RestartNeeded)
	}
}

func TestKVMPlatformNeedsDevKVM(t *testing.T) {
	c, cfg := newNodeConfigurator(t, "aks-ubuntu2404.toml", "2.3.7")
	c.Runsc.KVMHandler = true
	_, err := c.Plan()
	if err == nil || !containsAll(err.Error(), "/dev/kvm", "systrap") {
		t.Fatalf("kvm handler without /dev/kvm: %v", err)
	}
	c.Runsc.KVMHandler = false
	c.Runsc.Platform = "kvm"
	if _, err := c.Plan(); err == nil || !strings.Contains(err.Error(), "/dev/kvm") {
		t.Fatalf("platform kvm without /dev/kvm: %v", err)
	}
	if err := c.Root.WriteFile("/dev/kvm", nil, fsroot.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	c.Runsc.Platform = "systrap"
	c.Runsc.KVMHandler = true
	applyOK(t, c)
	data, _ := c.Root.ReadFile(cfg.Containerd.ConfigPath)
	doc, err := parseDocument("x", data)
	if err != nil {
		t.Fatal(err)
	}
	kvm, ok := lookup(doc.tree, familyV3.Handler("runsc-kvm"))
	if !ok {
		t.Fatalf("no runsc-kvm handler:\n%s", data)
	}
	if got, _ := lookup(kvm.(map[string]any), []string{"options", "ConfigPath"}); got != "/etc/containerd/runsc-kvm.toml" {
		t.Errorf("runsc-kvm ConfigPath = %v", got)
	}
	kopts, _ := c.Root.ReadFile("/etc/containerd/runsc-kvm.toml")
	if !strings.Contains(string(kopts), `platform = "kvm"`) || !strings.Contains(string(kopts), `systemd-cgroup = "true"`) {
		t.Errorf("runsc-kvm options:\n%s", kopts)
	}
	// Turning the handler off removes it and its options file.
	c.Runsc.KVMHandler = false
	applyOK(t, c)
	data, _ = c.Root.ReadFile(cfg.Containerd.ConfigPath)
	if strings.Contains(string(data), "runsc-kvm") || c.Root.Exists("/etc/containerd/runsc-kvm.toml") {
		t.Errorf("runsc-kvm left behind:\n%s", data)
	}
}

func TestInlineRuntimesRefused(t *testing.T) {
	c, cfg := newNodeConfigurator(t, "inline-runtimes.toml", "1.7.35")
	_, err := c.Plan()
	if err == nil || !containsAll(err.Error(), "inline", "line 3", c.Root.Path(cfg.Containerd.ConfigPath)) {
		t.Fatalf("err = %v", err)
	}
}

func TestCheckReportsWhatIsWrong(t *testing.T) {
	c, cfg := newNodeConfigurator(t, "aks-ubuntu2404-dead-runsc.toml", "2.3.7")
	probs := c.Check()
	joined := ""
	for _, p := range probs {
		joined += p.What + "\n"
		if p.Fix == "" {
			t.Errorf("problem without a fix: %+v", p)
		}
	}
	if !containsAll(joined, "not registered", "grpc.v1.cri tables", "missing") {
		t.Errorf("problems:\n%s", joined)
	}
	applyOK(t, c)
	if probs := c.Check(); len(probs) != 0 {
		t.Fatalf("problems after configure: %+v", probs)
	}
	// A stale ConfigPath and a tampered options file are reported.
	c.Containerd.RuntimeConfigPath = "/etc/containerd/elsewhere.toml"
	if err := c.Root.WriteFile("/etc/containerd/elsewhere.toml", []byte("[runsc_config]\n  debug = true\n"), fsroot.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	joined = ""
	for _, p := range c.Check() {
		joined += p.What + "\n"
	}
	if !containsAll(joined, "ConfigPath", "/etc/containerd/elsewhere.toml", "out of date") {
		t.Errorf("problems:\n%s", joined)
	}
	_ = cfg
}

func TestPlanRemoveRestoresBackup(t *testing.T) {
	c, cfg := newNodeConfigurator(t, "hand-kept.toml", "1.7.35")
	orig, _ := c.Root.ReadFile(cfg.Containerd.ConfigPath)
	applyOK(t, c)
	p, err := c.PlanRemove()
	if err != nil {
		t.Fatal(err)
	}
	if !p.RestartNeeded {
		t.Error("removing runsc from the config needs a restart")
	}
	if err := c.Apply(p); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Root.ReadFile(cfg.Containerd.ConfigPath); !bytes.Equal(got, orig) {
		t.Errorf("after uninstall:\n%s\nwant the original:\n%s", got, orig)
	}
	if c.Root.Exists(cfg.Containerd.RuntimeConfigPath) {
		t.Error("options file left behind")
	}
}

func TestPlanRemoveKeepsLaterEdits(t *testing.T) {
	c, cfg := newNodeConfigurator(t, "aks-ubuntu2204.toml", "1.7.35")
	applyOK(t, c)
	patched, _ := c.Root.ReadFile(cfg.Containerd.ConfigPath)
	edited := append(append([]byte{}, patched...), "\n[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]\n  endpoint = [\"https://mirror.example\"]\n"...)
	if err := c.Root.WriteFile(cfg.Containerd.ConfigPath, edited, fsroot.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	p, err := c.PlanRemove()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(p); err != nil {
		t.Fatal(err)
	}
	got, _ := c.Root.ReadFile(cfg.Containerd.ConfigPath)
	if has, _ := HasRunsc(got); has || !strings.Contains(string(got), "mirror.example") || strings.Contains(string(got), markerPrefix) {
		t.Errorf("after uninstall:\n%s", got)
	}
}

func TestMissingConfigGetsMinimalFile(t *testing.T) {
	for _, v := range []string{"1.7.35", "2.1.4", "2.3.7"} {
		c, cfg := newNodeConfigurator(t, "", v)
		p := applyOK(t, c)
		if p.Backup != nil {
			t.Errorf("%s: backup of a missing file", v)
		}
		data, _ := c.Root.ReadFile(cfg.Containerd.ConfigPath)
		d, err := DetectDialect(data, c.Version)
		if err != nil || d.ConfigVersion != newFileVersion(c.Version) {
			t.Errorf("%s: new file dialect %+v %v:\n%s", v, d, err, data)
		}
		if has, _ := HasRunsc(data); !has {
			t.Errorf("%s: no runsc in\n%s", v, data)
		}
	}
}

func TestSymlinkedConfigStaysALink(t *testing.T) {
	c, cfg := newNodeConfigurator(t, "", "1.7.35")
	data, _ := os.ReadFile("testdata/aks-ubuntu2204.toml")
	if err := c.Root.WriteFile("/opt/node-config/containerd.toml", data, fsroot.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(c.Root.Path(cfg.Containerd.ConfigPath)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../opt/node-config/containerd.toml", c.Root.LinkPath(cfg.Containerd.ConfigPath)); err != nil {
		t.Fatal(err)
	}
	applyOK(t, c)
	st, err := os.Lstat(c.Root.LinkPath(cfg.Containerd.ConfigPath))
	if err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("config is no longer a symlink: %v %v", st.Mode(), err)
	}
	got, _ := c.Root.ReadFile("/opt/node-config/containerd.toml")
	if has, _ := HasRunsc(got); !has {
		t.Errorf("link target not updated:\n%s", got)
	}
	if p := applyOK(t, c); p.Changed() {
		t.Errorf("second run changes: %+v", p.Changes)
	}
}
