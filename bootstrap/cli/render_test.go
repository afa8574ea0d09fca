package cli

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/config"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/render"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

const sha = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestRenderPrintsWhatRenderRenders(t *testing.T) {
	empty := t.TempDir() // no config file under this root: built-in defaults
	def := config.Default()
	rc, _ := render.RuntimeClass(def)
	ds, _ := render.DaemonSet(def)
	toml, _ := config.Encode(def)
	withURL := def
	withURL.Delivery.BinaryURL, withURL.Delivery.BinarySHA256 = "https://example.com/gvb", sha
	ci, _ := render.CloudInit(withURL, render.CloudInitOptions{})
	baked, _ := render.CloudInit(def, render.CloudInitOptions{Baked: true})
	for _, c := range []struct {
		args []string
		want []byte
	}{
		{[]string{"render", "runtimeclass"}, rc},
		{[]string{"render", "daemonset"}, ds},
		{[]string{"render", "config"}, toml},
		{[]string{"render", "cloud-init", "--binary-url", "https://example.com/gvb", "--binary-sha256", sha}, ci},
		{[]string{"render", "cloud-init", "--baked"}, baked},
		{[]string{"render", "cloud-init", "--baked", "--base64"}, []byte(base64.StdEncoding.EncodeToString(baked) + "\n")},
	} {
		code, out, errs := runCLI(t, append(c.args, "--root", empty)...)
		if code != ExitOK || out != string(c.want) {
			t.Errorf("%v: exit %d, stderr %q, output equal %v", c.args, code, errs, out == string(c.want))
		}
	}
}

func TestRenderFlagsOverrideTheConfig(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc/gvisor-bootstrap"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfgFile := "[delivery]\nimage = 'from-file.example.com/gvb:1'\nnamespace = 'from-file'\n"
	if err := os.WriteFile(filepath.Join(root, config.DefaultPath), []byte(cfgFile), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "render", "daemonset", "--root", root, "--image", "flag.example.com/gvb:2")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "image: \"flag.example.com/gvb:2\"") || !strings.Contains(out, "namespace: from-file") {
		t.Fatalf("flag did not override the file, or the file was ignored:\n%s", out)
	}
}

func TestRenderOutputFile(t *testing.T) {
	empty := t.TempDir()
	dst := filepath.Join(t.TempDir(), "runtimeclass.yaml")
	if code, _, errs := runCLI(t, "render", "runtimeclass", "--root", empty, "-o", dst); code != ExitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	want, _ := render.RuntimeClass(config.Default())
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s: %v, equal %v", dst, err, bytes.Equal(got, want))
	}
	st1, _ := os.Stat(dst)
	if st1.Mode().Perm() != 0o600 {
		t.Errorf("a new rendered file has mode %04o, want 0600 (it can carry the release URL's credentials)", st1.Mode().Perm())
	}
	code, _, errs := runCLI(t, "render", "runtimeclass", "--root", empty, "-o", dst)
	if st2, _ := os.Stat(dst); code != ExitOK || !os.SameFile(st1, st2) || !strings.Contains(errs, "up to date") {
		t.Fatalf("second render rewrote an identical file (exit %d, %s)", code, errs)
	}
}

func TestRenderBadInput(t *testing.T) {
	empty := t.TempDir()
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"render"}, "one of"},
		{[]string{"render", "helmchart"}, "want cloud-init"},
		{[]string{"render", "runtimeclass", "--baked"}, "only apply"},
		{[]string{"render", "cloud-init"}, "binary_url is empty"},
		{[]string{"render", "cloud-init", "--binary-url", "https://example.com/gvb", "--binary-sha256", "abc"}, "64 hex"},
		{[]string{"render", "daemonset", "--image", ""}, "delivery.image is empty"},
	} {
		code, out, errs := runCLI(t, append(c.args, "--root", empty)...)
		if code != ExitUsage || out != "" || !strings.Contains(errs, c.msg) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q (want %q)", c.args, code, out, errs, c.msg)
		}
	}
}
