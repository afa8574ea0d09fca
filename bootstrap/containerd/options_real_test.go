package containerd

import (
	"os/exec"
	"sort"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/test/testbin"
)

// TestRealRunscAcceptsOptions hands every [runsc_config] entry we write to the
// real runsc as the flag the shim turns it into (--key=value): runsc refuses
// unknown flags and bad values, so this proves the options file is usable.
func TestRealRunscAcceptsOptions(t *testing.T) {
	runsc := testbin.Require(t, "runsc")
	for _, fixture := range []string{"aks-ubuntu2204.toml", "default-1.7.toml"} {
		c, cfg := newNodeConfigurator(t, fixture, "1.7.35")
		c.Runsc.Flags = map[string]string{"debug": "true", "net-raw": "true", "overlay2": "root:memory"}
		applyOK(t, c)
		data, _ := c.Root.ReadFile(cfg.Containerd.RuntimeConfigPath)
		var o struct {
			RunscConfig map[string]string `toml:"runsc_config"`
		}
		if err := toml.Unmarshal(data, &o); err != nil {
			t.Fatalf("%s: %v", fixture, err)
		}
		var args []string
		for k, v := range o.RunscConfig {
			args = append(args, "--"+k+"="+v)
		}
		sort.Strings(args)
		if out, err := exec.Command(runsc, append(args, "--version")...).CombinedOutput(); err != nil {
			t.Errorf("%s: runsc %v: %v\n%s", fixture, args, err, out)
		}
	}
	// The check can fail: runsc refuses a flag it does not know.
	if err := exec.Command(runsc, "--no-such-flag=true", "--version").Run(); err == nil {
		t.Fatal("runsc accepted an unknown flag; this test proves nothing")
	}
}
