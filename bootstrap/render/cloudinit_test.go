package render

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"sigs.k8s.io/yaml"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/config"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/test/testbin"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/units"
)

const testSHA = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func withBinary(url, sum string) config.Config {
	cfg := config.Default()
	cfg.Delivery.BinaryURL, cfg.Delivery.BinarySHA256 = url, sum
	return cfg
}

// cloudConfig is the part of a #cloud-config these tests look at.
type cloudConfig struct {
	WriteFiles []struct {
		Path, Owner, Permissions, Content string
	} `json:"write_files"`
	Runcmd  [][]string `json:"runcmd"`
	Bootcmd [][]string `json:"bootcmd"`
}

func parseCloudConfig(t *testing.T, data []byte) cloudConfig {
	t.Helper()
	if !bytes.HasPrefix(data, []byte("#cloud-config\n")) {
		t.Fatalf("does not start with #cloud-config:\n%s", data)
	}
	var cc cloudConfig
	if err := yaml.UnmarshalStrict(data, &cc); err != nil {
		t.Fatalf("customData is not the YAML we meant: %v\n%s", err, data)
	}
	return cc
}

func schemaCheck(t *testing.T, data []byte) (string, error) {
	t.Helper()
	bin := testbin.Require(t, "cloud-init")
	f := filepath.Join(t.TempDir(), "user-data")
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "schema", "--config-file", f).CombinedOutput()
	return string(out), err
}

func TestCloudInitSchema(t *testing.T) {
	for _, baked := range []bool{false, true} {
		out, err := CloudInit(withBinary("https://example.com/gvisor-bootstrap", testSHA), CloudInitOptions{Baked: baked})
		if err != nil {
			t.Fatal(err)
		}
		if msg, err := schemaCheck(t, out); err != nil {
			t.Errorf("baked=%v: cloud-init schema: %v\n%s\n%s", baked, err, msg, out)
		}
	}
}

// TestCloudInitSchemaRejectsBroken proves the schema check can fail.
func TestCloudInitSchemaRejectsBroken(t *testing.T) {
	out, err := CloudInit(withBinary("https://example.com/gvisor-bootstrap", testSHA), CloudInitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	broken := bytes.Replace(out, []byte(`permissions: "0600"`), []byte(`permissions: [0600]`), 1)
	if msg, err := schemaCheck(t, broken); err == nil {
		t.Fatalf("cloud-init schema accepted a broken write_files entry:\n%s", msg)
	}
}

func TestCloudInitContent(t *testing.T) {
	cfg := withBinary("https://example.com/it's/gvisor-bootstrap", strings.ToUpper(testSHA))
	cfg.Boot.OnFailure = "continue"
	out, err := CloudInit(cfg, CloudInitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cc := parseCloudConfig(t, out)
	if len(cc.WriteFiles) != 2 || cc.WriteFiles[0].Path != config.DefaultPath || cc.WriteFiles[1].Path != InstallScriptPath {
		t.Fatalf("write_files = %+v", cc.WriteFiles)
	}
	// The config can hold credentials (a SAS URL): root only.
	if p := cc.WriteFiles[0].Permissions; p != "0600" {
		t.Errorf("the tool's config is written with permissions %s, want 0600", p)
	}
	// The config on the node decodes strictly to exactly the config rendered from.
	// Decoded into a zero Config: decoding onto Default() merges maps (config.Load would keep a default node_selector key).
	var got config.Config
	if err := config.Decode([]byte(cc.WriteFiles[0].Content), &got); err != nil {
		t.Fatalf("node config does not decode: %v\n%s", err, cc.WriteFiles[0].Content)
	}
	if d := cmp.Diff(cfg, got, cmpopts.EquateEmpty()); d != "" {
		t.Errorf("node config differs (-want +got):\n%s", d)
	}
	if diff := cmp.Diff([][]string{{"bash", InstallScriptPath}}, cc.Runcmd); diff != "" {
		t.Errorf("runcmd: %s", diff)
	}

	baked, err := CloudInit(config.Default(), CloudInitOptions{Baked: true})
	if err != nil {
		t.Fatalf("baked needs no binary URL: %v", err)
	}
	bc := parseCloudConfig(t, baked)
	if len(bc.WriteFiles) != 1 || bytes.Contains(baked, []byte("curl")) {
		t.Fatalf("baked customData downloads or writes more than the config:\n%s", baked)
	}
	if diff := cmp.Diff([][]string{{"systemctl", "start", "gvisor-bootstrap.path", "gvisor-bootstrap.service"}}, bc.Runcmd); diff != "" {
		t.Errorf("baked runcmd: %s", diff)
	}
}

func TestCloudInitSize(t *testing.T) {
	for _, baked := range []bool{false, true} {
		out, err := CloudInit(withBinary("https://example.com/gvisor-bootstrap", testSHA), CloudInitOptions{Baked: baked})
		if err != nil {
			t.Fatal(err)
		}
		// Far below Azure's 64 KiB, even base64-encoded.
		if n := len(base64.StdEncoding.EncodeToString(out)); n > 8<<10 {
			t.Errorf("baked=%v: customData is %d bytes base64, want < 8 KiB", baked, n)
		}
	}
}

func TestCloudInitBadInput(t *testing.T) {
	for name, cfg := range map[string]config.Config{
		"no url":    withBinary("", testSHA),
		"ftp url":   withBinary("ftp://example.com/x", testSHA),
		"newline":   withBinary("https://example.com/x\nrm -rf /", testSHA),
		"short sha": withBinary("https://example.com/x", "abc"),
		"no sha":    withBinary("https://example.com/x", ""),
		"invalid conf": func() config.Config {
			c := withBinary("https://example.com/x", testSHA)
			c.Boot.OnFailure = "maybe"
			return c
		}(),
	} {
		if _, err := CloudInit(cfg, CloudInitOptions{}); err == nil {
			t.Errorf("%s: rendered without error", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// TestCloudInitScriptRuns runs the install script from the customData with real bash,
// curl and sha256sum against a real HTTP server on loopback; only the binary's path and
// systemctl are redirected into a temp directory. A binary whose digest does not match
// is never installed or run.
func TestCloudInitScriptRuns(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "sha256sum"} {
		testbin.Require(t, tool)
	}
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	fake := []byte("#!/bin/sh\necho \"gvisor-bootstrap $*\" >> " + calls + "\n")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(fake) }))
	defer srv.Close()
	stubs := filepath.Join(dir, "stubs")
	if err := os.MkdirAll(stubs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stubs, "systemctl"), []byte("#!/bin/sh\necho \"systemctl $*\" >> "+calls+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(sum string) (string, error) {
		out, err := CloudInit(withBinary(srv.URL+"/gvisor-bootstrap", sum), CloudInitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		script := parseCloudConfig(t, out).WriteFiles[1].Content
		bin := filepath.Join(dir, "usr/local/bin/gvisor-bootstrap")
		script = strings.Replace(script, "bin='/usr/local/bin/gvisor-bootstrap'", "bin='"+bin+"'", 1)
		cmd := exec.Command("bash", "-c", script)
		cmd.Env = append(os.Environ(), "PATH="+stubs+":"+os.Getenv("PATH"))
		o, err := cmd.CombinedOutput()
		return string(o), err
	}

	good := sha256.Sum256(fake)
	if out, err := run(hex.EncodeToString(good[:])); err != nil {
		t.Fatalf("install script failed: %v\n%s", err, out)
	}
	got, _ := os.ReadFile(calls)
	want := "gvisor-bootstrap install --units --skip-binaries\nsystemctl daemon-reload\nsystemctl start gvisor-bootstrap.path\nsystemctl start gvisor-bootstrap.service\n"
	if string(got) != want {
		t.Fatalf("script ran:\n%s\nwant:\n%s", got, want)
	}

	os.Remove(calls)
	os.Remove(filepath.Join(dir, "usr/local/bin/gvisor-bootstrap"))
	out, err := run(testSHA)
	if err == nil || !strings.Contains(out, "refusing to run it") {
		t.Fatalf("script accepted a binary with the wrong digest: %v\n%s", err, out)
	}
	if _, err := os.Stat(calls); err == nil {
		t.Fatal("a binary with the wrong digest was run")
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "usr/local/bin")); len(entries) != 0 {
		t.Fatalf("left files behind after a bad digest: %v", entries)
	}
}

// TestFirstBootFailsClosed is the customData's first boot with the binary's
// download failing (HTTP 404 from a loopback server): bootcmd has already
// installed kubelet's gate, which refuses while the binary is absent
// (boot.on_failure = "fail") or lets kubelet start saying so ("continue"). The
// drop-in is checked by systemd-analyze, its ExecStartPre run by the real sh.
func TestFirstBootFailsClosed(t *testing.T) {
	for _, tool := range []string{"bash", "sh", "curl", "sha256sum"} {
		testbin.Require(t, tool)
	}
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	for _, onFailure := range []string{"fail", "continue"} {
		t.Run(onFailure, func(t *testing.T) {
			dir := t.TempDir()
			bin := filepath.Join(dir, "usr/local/bin/gvisor-bootstrap")
			unitDir := filepath.Join(dir, "etc/systemd/system")
			dropIn := filepath.Join(unitDir, "kubelet.service.d/10-gvisor-bootstrap.conf")
			calls := filepath.Join(dir, "calls")
			stubs := filepath.Join(dir, "stubs")
			os.MkdirAll(stubs, 0o755)
			os.WriteFile(filepath.Join(stubs, "systemctl"), []byte("#!/bin/sh\necho \"systemctl $*\" >> "+calls+"\n"), 0o755)
			env := append(os.Environ(), "PATH="+stubs+":"+os.Getenv("PATH"))
			// The node's paths, moved into dir.
			relocate := func(s string) string {
				s = strings.ReplaceAll(s, units.BinaryPath, bin)
				return strings.ReplaceAll(s, units.Dir, unitDir)
			}

			cfg := withBinary(srv.URL+"/gvisor-bootstrap", testSHA)
			cfg.Boot.OnFailure = onFailure
			out, err := CloudInit(cfg, CloudInitOptions{})
			if err != nil {
				t.Fatal(err)
			}
			cc := parseCloudConfig(t, out)
			if len(cc.Bootcmd) != 1 || len(cc.Bootcmd[0]) != 4 || cc.Bootcmd[0][0] != "sh" {
				t.Fatalf("bootcmd = %q", cc.Bootcmd)
			}
			nodeDropIn := cc.Bootcmd[0][3]
			bootcmd := func() {
				t.Helper()
				c := cc.Bootcmd[0]
				cmd := exec.Command(c[0], c[1], relocate(c[2]), c[3])
				cmd.Env = env
				if o, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("bootcmd: %v\n%s", err, o)
				}
			}

			// 1. cloud-init's first module: the gate goes in, systemd is reloaded.
			bootcmd()
			got, err := os.ReadFile(dropIn)
			if err != nil || string(got) != nodeDropIn {
				t.Fatalf("bootcmd did not install the first-boot gate: %v\n%s", err, got)
			}
			if c, _ := os.ReadFile(calls); string(c) != "systemctl daemon-reload\n" {
				t.Fatalf("systemctl calls %q, want one daemon-reload", c)
			}
			// 2. runcmd: the binary's download fails.
			script := strings.Replace(cc.WriteFiles[1].Content, "bin='"+units.BinaryPath+"'", "bin='"+bin+"'", 1)
			cmd := exec.Command("bash", "-c", script)
			cmd.Env = env
			o, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(o), "download of "+srv.URL+"/gvisor-bootstrap failed") {
				t.Fatalf("install script with a 404: %v\n%s", err, o)
			}
			if got, _ := os.ReadFile(dropIn); string(got) != nodeDropIn {
				t.Fatal("the gate is gone after the failed download")
			}
			// 3. kubelet starts: its ExecStartPre, as systemd runs it.
			pre := execStartPre(t, nodeDropIn)
			run := func() (string, int) {
				cmd := exec.Command("/bin/sh", "-c", relocate(pre))
				o, err := cmd.CombinedOutput()
				code := 0
				if ee, ok := err.(*exec.ExitError); ok {
					code = ee.ExitCode()
				} else if err != nil {
					t.Fatal(err)
				}
				return string(o), code
			}
			msg, code := run()
			if onFailure == "fail" && (code == 0 || !strings.Contains(msg, "kubelet does not start on a node without gVisor (boot.on_failure = fail)")) {
				t.Fatalf("gate without the binary: exit %d %q; want a refusal", code, msg)
			}
			if onFailure == "continue" && (code != 0 || !strings.Contains(msg, "boot.on_failure = continue: kubelet starts WITHOUT gVisor")) {
				t.Fatalf("gate without the binary: exit %d %q; want a loud pass", code, msg)
			}
			if !strings.Contains(msg, "is not installed") {
				t.Errorf("the message does not say what is missing: %q", msg)
			}
			// 4. Once the binary is there, the gate is the tool's own `run --gate`.
			os.MkdirAll(filepath.Dir(bin), 0o755)
			os.WriteFile(bin, []byte("#!/bin/sh\necho \"tool $*\"\nexit 3\n"), 0o755)
			if msg, code := run(); code != 3 || strings.TrimSpace(msg) != "tool run --gate" {
				t.Fatalf("gate with the binary: exit %d %q; want the tool's run --gate and its exit code", code, msg)
			}
			// 5. A later boot never replaces the installed gate.
			os.Remove(bin)
			os.WriteFile(dropIn, []byte("# the units' gate\n"), 0o644)
			bootcmd()
			if got, _ := os.ReadFile(dropIn); string(got) != "# the units' gate\n" {
				t.Fatalf("bootcmd replaced an installed gate:\n%s", got)
			}
			analyzeFirstBootDropIn(t, nodeDropIn)
		})
	}
}

// execStartPre is the shell command of the drop-in's ExecStartPre=/bin/sh -c '...'.
func execStartPre(t *testing.T, dropIn string) string {
	t.Helper()
	for _, l := range strings.Split(dropIn, "\n") {
		if c, ok := strings.CutPrefix(l, "ExecStartPre=/bin/sh -c '"); ok && strings.HasSuffix(c, "'") && !strings.Contains(c[:len(c)-1], "'") {
			return c[:len(c)-1]
		}
	}
	t.Fatalf("no ExecStartPre=/bin/sh -c '...' in:\n%s", dropIn)
	return ""
}

// analyzeFirstBootDropIn has systemd-analyze verify kubelet.service with the
// first-boot drop-in applied, in a root holding the host's units and a stub
// kubelet.service.
func analyzeFirstBootDropIn(t *testing.T, dropIn string) {
	t.Helper()
	analyze := testbin.Require(t, "systemd-analyze")
	hostUnits, err := filepath.EvalSymlinks("/lib/systemd/system")
	if err != nil {
		t.Skipf("no host unit directory: %v", err)
	}
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "usr/lib/systemd"), 0o755)
	if o, err := exec.Command("cp", "-a", hostUnits, filepath.Join(root, "usr/lib/systemd/system")).CombinedOutput(); err != nil {
		t.Fatalf("copy host units: %v\n%s", err, o)
	}
	files := map[string]string{
		"usr/lib/systemd/system/kubelet.service":                        "[Unit]\nDescription=stub kubelet\nAfter=network-online.target\n[Service]\nExecStart=/usr/bin/kubelet\nRestart=always\n[Install]\nWantedBy=multi-user.target\n",
		"etc/systemd/system/" + units.BootUnit:                          "[Unit]\nDescription=stub boot unit\n[Service]\nType=oneshot\nExecStart=/usr/bin/kubelet\n",
		"etc/systemd/system/kubelet.service.d/10-gvisor-bootstrap.conf": dropIn,
		"usr/bin/kubelet": "#!/bin/sh\n",
		"bin/sh":          "#!/bin/sh\n",
	}
	for p, data := range files {
		full := filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		mode := os.FileMode(0o644)
		if strings.Contains(p, "bin/") {
			mode = 0o755
		}
		if err := os.WriteFile(full, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
	}
	o, err := exec.Command(analyze, "verify", "--man=no", "--generators=no", "--root="+root, "kubelet.service").CombinedOutput()
	if err != nil || strings.TrimSpace(string(o)) != "" {
		t.Fatalf("systemd-analyze verify kubelet.service with the first-boot drop-in: %v\n%s", err, o)
	}
}
