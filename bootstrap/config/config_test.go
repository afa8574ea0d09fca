package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
)

func write(t *testing.T, body string) fsroot.Root {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, DefaultPath)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return fsroot.New(dir)
}

func TestMissingFileMeansDefaults(t *testing.T) {
	cfg, err := Load(fsroot.New(t.TempDir()), DefaultPath)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Release.Version != DefaultRelease || cfg.Containerd.Mode != "inplace" {
		t.Fatalf("not defaults: %+v", cfg)
	}
}

func TestFileOverridesDefaultsAndKeepsTheRest(t *testing.T) {
	cfg, err := Load(write(t, `
[release]
version = "20260727.0"
timeout = "30s"
[release.sha512]
runsc = "`+strings.Repeat("a", 128)+`"
[boot]
on_failure = "continue"
`), DefaultPath)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Release.Version != "20260727.0" || cfg.Release.Timeout.D() != 30*time.Second || cfg.Boot.OnFailure != "continue" {
		t.Fatalf("override lost: %+v", cfg)
	}
	if cfg.Release.BinDir != "/usr/local/bin" || cfg.Containerd.ConfigPath != "/etc/containerd/config.toml" {
		t.Fatalf("defaults lost: %+v", cfg)
	}
}

func TestUnknownKeyIsNamed(t *testing.T) {
	_, err := Load(write(t, "[release]\nversoin = \"x\"\n"), DefaultPath)
	if err == nil || !strings.Contains(err.Error(), `"release.versoin"`) || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("want error naming release.versoin at line 2, got %v", err)
	}
}

func TestInvalidTOMLHasPosition(t *testing.T) {
	_, err := Load(write(t, "[release]\nversion = \n"), DefaultPath)
	if err == nil || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), DefaultPath) {
		t.Fatalf("want file and line in error, got %v", err)
	}
}

func TestValidateRejectsBadValues(t *testing.T) {
	for body, want := range map[string]string{
		"[containerd]\nmode = \"sideways\"\n":   "containerd.mode",
		"[runsc]\nplatform = \"xen\"\n":         "runsc.platform",
		"[boot]\non_failure = \"maybe\"\n":      "boot.on_failure",
		"[release.sha512]\nrunsc = \"abc\"\n":   "release.sha512.runsc",
		"[release]\ntimeout = \"soon\"\n":       "duration",
		"[release]\narch = \"riscv64\"\n":       "release.arch",
		"[containerd]\nconfig_path = \"rel\"\n": "absolute",
	} {
		_, err := Load(write(t, body), DefaultPath)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: want error mentioning %q, got %v", body, want, err)
		}
	}
}

func TestEncodeRoundTrips(t *testing.T) {
	in := Default()
	in.Release.Version = "20260727.0"
	b, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	out := Default()
	if err := Decode(b, &out); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if out.Release.Version != "20260727.0" || out.Release.Timeout != in.Release.Timeout {
		t.Fatalf("round trip lost values:\n%s", b)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("[release]\nversion = \"1\"\n"))
	f.Add([]byte("[runsc.flags]\ndebug = \"true\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := Default()
		if err := Decode(data, &cfg); err != nil {
			return
		}
		// Whatever decoded must encode and decode to the same values.
		b, err := Encode(cfg)
		if err != nil {
			t.Fatalf("encode after decode: %v", err)
		}
		again := Default()
		if err := Decode(b, &again); err != nil {
			t.Fatalf("re-decode: %v\n%s", err, b)
		}
	})
}

func TestMapInFileReplacesDefaultMap(t *testing.T) {
	cfg, err := Load(write(t, "[cluster.node_selector]\n\"agentpool\" = \"sandbox\"\n"), DefaultPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Cluster.NodeSelector) != 1 || cfg.Cluster.NodeSelector["agentpool"] != "sandbox" {
		t.Fatalf("node_selector merged with the default: %v", cfg.Cluster.NodeSelector)
	}
	cfg, _ = Load(write(t, "[release]\nversion = \"20260727.0\"\n"), DefaultPath)
	if cfg.Cluster.NodeSelector["gvisor"] != "enabled" {
		t.Fatalf("default node_selector lost when the file does not set it: %v", cfg.Cluster.NodeSelector)
	}
}

// A duration needs a unit (TOML's `timeout = 30` is an integer: 30 ns) and a
// sane range; the error names the key and shows the fix.
func TestDurationsNeedAUnitAndASaneRange(t *testing.T) {
	for in, want := range map[string]string{
		"[release]\ntimeout = 30\n":                `release.timeout = 30: a duration needs a unit and quotes, e.g. release.timeout = "30s"`,
		"[boot]\nverify_timeout = 1.5\n":           `boot.verify_timeout = 1.5: a duration needs a unit`,
		"[release]\ntimeout = \"-5s\"\n":           `release.timeout = "-5s" is out of range: want 1s to 24h0m0s`,
		"[containerd]\nrestart_timeout = \"0s\"\n": `containerd.restart_timeout = "0s" is out of range`,
		"[release]\ntimeout = \"30ns\"\n":          `release.timeout = "30ns" is out of range`,
		"[release]\ntimeout = \"1000h\"\n":         `release.timeout = "1000h0m0s" is out of range`,
		"[release]\ntimeout = \"30\"\n":            `duration "30": want a value such as "90s" or "5m"`,
	} {
		cfg := Default()
		err := Decode([]byte(in), &cfg)
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want %q", in, err, want)
		}
	}
	cfg := Default()
	if err := Decode([]byte("[release]\ntimeout = \"30s\"\n"), &cfg); err != nil || cfg.Validate() != nil || cfg.Release.Timeout.D() != 30*time.Second {
		t.Errorf("30s: %v %v", err, cfg.Release.Timeout)
	}
}
