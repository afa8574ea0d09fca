package containerd

import (
	"os"
	"strings"
	"testing"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/config"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
)

func writeNode(t *testing.T, root fsroot.Root, p, body string) {
	t.Helper()
	if err := root.WriteFile(p, []byte(body), fsroot.WriteOptions{Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
}

func TestLoadedConfigFromTheUnit(t *testing.T) {
	cases := map[string]struct {
		files map[string]string
		want  string
	}{
		"azure container linux": {map[string]string{
			"/usr/lib/systemd/system/containerd.service":             "[Service]\nExecStart=/usr/bin/containerd --config $CONTAINERD_CONFIG\n",
			"/etc/systemd/system/containerd.service.d/10-acl.conf":   "[Service]\nEnvironment=\"CONTAINERD_CONFIG=/run/containerd/acl-config.toml\" OTHER=1\n",
			"/usr/lib/systemd/system/containerd.service.d/05-x.conf": "[Service]\nEnvironment=CONTAINERD_CONFIG=/wrong.toml\n",
		}, "/run/containerd/acl-config.toml"},
		"flatcar drop-in": {map[string]string{
			"/lib/systemd/system/containerd.service":                  "[Service]\nExecStart=/usr/bin/containerd\n",
			"/etc/systemd/system/containerd.service.d/10-config.conf": "[Service]\nExecStart=\nExecStart=/usr/bin/containerd --config=/usr/share/containerd/config.toml\n",
		}, "/usr/share/containerd/config.toml"},
		"-c and braces": {map[string]string{
			"/etc/systemd/system/containerd.service": "[Service]\nEnvironment=D=/opt/ctr\nExecStart=/usr/local/bin/containerd -c ${D}/config.toml --log-level info\n",
		}, "/opt/ctr/config.toml"},
		"upstream unit": {map[string]string{
			"/lib/systemd/system/containerd.service": "[Service]\nExecStartPre=-/sbin/modprobe overlay\nExecStart=/usr/bin/containerd\n",
		}, ""},
		"no unit": {nil, ""},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			root := fsroot.New(t.TempDir())
			for p, b := range c.files {
				writeNode(t, root, p, b)
			}
			got, from := LoadedConfig(root, "containerd.service")
			if got != c.want {
				t.Fatalf("LoadedConfig = %q (from %s), want %q", got, from, c.want)
			}
		})
	}
}

// Azure Container Linux: containerd runs on a composition root that imports
// /etc/containerd/config.toml, which starts as a symlink into read-only /usr.
// The plan edits the imported file, replaces the link by a real file (never
// writing into /usr), and undo puts the link back.
func TestCompositionRootAndLinkIntoUsr(t *testing.T) {
	root := fsroot.New(t.TempDir())
	writeNode(t, root, "/run/containerd/acl-config.toml", "version = 2\nimports = [\"/etc/containerd/config.toml\"]\n")
	shipped := "version = 2\n" + strings.TrimPrefix(aksBody, "\n")
	writeNode(t, root, "/usr/share/containerd/config.toml", shipped)
	if err := os.MkdirAll(root.Path("/etc/containerd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/usr/share/containerd/config.toml", root.LinkPath("/etc/containerd/config.toml")); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	c := &Configurator{Root: root, Containerd: cfg.Containerd, Runsc: cfg.Runsc, Version: mustVersion(t, "2.3.7")}
	c.Loaded = "/run/containerd/acl-config.toml"
	p, err := c.Plan()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(p); err != nil {
		t.Fatal(err)
	}
	if b, _ := root.ReadFile("/usr/share/containerd/config.toml"); string(b) != shipped {
		t.Fatal("the write went through the link into /usr")
	}
	st, err := os.Lstat(root.LinkPath("/etc/containerd/config.toml"))
	if err != nil || st.Mode()&os.ModeSymlink != 0 {
		t.Fatalf("the link was not replaced by a real file: %v %v", st.Mode(), err)
	}
	if b, _ := root.ReadFile("/etc/containerd/config.toml"); !strings.Contains(string(b), "runtimes.runsc]") {
		t.Fatalf("runsc not registered:\n%s", b)
	}
	if b, _ := root.ReadFile("/run/containerd/acl-config.toml"); strings.Contains(string(b), "runsc") {
		t.Fatal("the composition root was edited")
	}
	if again, err := c.Plan(); err != nil || again.Changed() {
		t.Fatalf("second plan: %v %s", err, again.Diff())
	}
	if err := c.Undo(p); err != nil {
		t.Fatal(err)
	}
	if tgt, err := os.Readlink(root.LinkPath("/etc/containerd/config.toml")); err != nil || tgt != "/usr/share/containerd/config.toml" {
		t.Fatalf("undo did not put the link back: %q %v", tgt, err)
	}

	// A root that does not load the file is refused, naming both.
	writeNode(t, root, "/run/containerd/acl-config.toml", "version = 2\n")
	if _, err := c.Plan(); err == nil || !strings.Contains(err.Error(), "does not load") {
		t.Fatalf("Plan with a root that does not load the file: %v", err)
	}
}

const aksBody = `
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
  SystemdCgroup = true
`
