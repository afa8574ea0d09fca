package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func configureCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(append([]string{"configure"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func configureNode(t *testing.T, fixture string) (string, string) {
	t.Helper()
	root := t.TempDir()
	p := filepath.Join(root, "etc/containerd/config.toml")
	data, err := os.ReadFile(filepath.Join("..", "containerd", "testdata", fixture))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return root, p
}

func TestConfigureDryRunJSONAndIdempotence(t *testing.T) {
	root, p := configureNode(t, "aks-ubuntu2404.toml")
	orig, _ := os.ReadFile(p)

	code, out, errs := configureCLI(t, "--root", root, "--containerd-version", "2.3.7", "--dry-run")
	if code != ExitOK || !strings.Contains(out, "+++ /etc/containerd/config.toml") || !strings.Contains(out, "io.containerd.cri.v1.runtime\".containerd.runtimes.runsc]") {
		t.Fatalf("dry run: exit %d\n%s\n%s", code, out, errs)
	}
	if now, _ := os.ReadFile(p); !bytes.Equal(now, orig) {
		t.Fatal("--dry-run changed the config")
	}
	if _, err := os.Stat(filepath.Join(root, "etc/containerd/runsc.toml")); !os.IsNotExist(err) {
		t.Fatal("--dry-run wrote the options file")
	}

	code, out, errs = configureCLI(t, "--root", root, "--containerd-version", "2.3.7", "--json")
	var res configureResult
	if code != ExitOK || json.Unmarshal([]byte(out), &res) != nil {
		t.Fatalf("json: exit %d\n%s\n%s", code, out, errs)
	}
	if res.ConfigVersion != 2 || res.Tables != "cri.v1.runtime" || !res.RestartNeeded || len(res.Changed) != 2 || !res.SystemdCgroup {
		t.Errorf("summary %+v", res)
	}

	code, out, _ = configureCLI(t, "--root", root, "--containerd-version", "2.3.7", "--json")
	res = configureResult{}
	if code != ExitOK || json.Unmarshal([]byte(out), &res) != nil || len(res.Changed) != 0 || res.RestartNeeded {
		t.Errorf("second run: exit %d %+v", code, res)
	}
}

func TestConfigureRefusals(t *testing.T) {
	root, _ := configureNode(t, "invalid.toml")
	code, _, errs := configureCLI(t, "--root", root, "--containerd-version", "1.7.35")
	if code != ExitUsage || !strings.Contains(errs, "line 3, column 45") {
		t.Errorf("invalid TOML: exit %d, %s", code, errs)
	}
	root, _ = configureNode(t, "aks-ubuntu2204.toml")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--containerd-version", "1.6.20"}, "too old"},
		{[]string{}, "--containerd-version"},
		{[]string{"--containerd-version", "1.7.35", "--mode", "dropin"}, "containerd >= 2.0"},
		{[]string{"--containerd-version", "seven"}, "--containerd-version"},
		{[]string{"--containerd-version", "1.7.35", "--platform", "kvm"}, "/dev/kvm"},
	} {
		code, _, errs := configureCLI(t, append([]string{"--root", root}, c.args...)...)
		if code != ExitUsage || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 saying %q", c.args, code, errs, c.want)
		}
	}
}

func TestConfigureFlags(t *testing.T) {
	root, _ := configureNode(t, "eks-al2023.toml")
	if err := os.MkdirAll(filepath.Join(root, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "dev/kvm"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(root, "etc/containerd/config.toml"), filepath.Join(root, "etc/containerd/main.toml")); err != nil {
		t.Fatal(err)
	}
	code, _, errs := configureCLI(t, "--root", root, "--containerd-version", "2.1.4", "--containerd-config", "/etc/containerd/main.toml",
		"--runtime-config", "/etc/gvisor/runsc.toml", "--kvm-handler", "--mode", "dropin")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	main, _ := os.ReadFile(filepath.Join(root, "etc/containerd/main.toml"))
	dropin, _ := os.ReadFile(filepath.Join(root, "etc/containerd/conf.d/90-gvisor-runsc.toml"))
	kvm, _ := os.ReadFile(filepath.Join(root, "etc/gvisor/runsc-kvm.toml"))
	if !strings.Contains(string(main), "imports = [") || !strings.Contains(string(dropin), "/etc/gvisor/runsc.toml") ||
		!strings.Contains(string(dropin), "runsc-kvm") || !strings.Contains(string(kvm), `platform = "kvm"`) {
		t.Errorf("main:\n%s\ndrop-in:\n%s\nkvm options:\n%s", main, dropin, kvm)
	}
}
