package containerd

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/config"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/nodepaths"
)

// shimOptions is the content of one runsc shim options file (gVisor
// pkg/shim/v1/runsc/options.go): shim logging at the top, runsc flags under
// [runsc_config].
type shimOptions struct {
	Handler  string
	LogPath  string
	LogLevel string
	// BinaryName is runsc's absolute path when the shim would not find it on
	// its PATH ("" otherwise).
	BinaryName string
	// RunscConfig are runsc flags. The shim fails every container when one is not
	// a string, so they are held as strings.
	RunscConfig map[string]string
}

// reservedFlags are set from the tool's own settings, never from runsc.flags:
// platform from runsc.platform, systemd-cgroup from runc's SystemdCgroup.
var reservedFlags = map[string]string{
	"platform":       "set runsc.platform (--platform) instead",
	"systemd-cgroup": "it is derived from runc's SystemdCgroup in containerd's config (kubelet's cgroup driver)",
}

// optionsFor builds a handler's shim options. systemdCgroup comes from runc's
// options in the same config: runsc must use the cgroup driver kubelet uses, or pod
// limits are not enforced (systemd) or sandboxes fail to start (cgroupfs).
func optionsFor(root fsroot.Root, r config.Runsc, handler, platform string, systemdCgroup bool) (shimOptions, error) {
	o := shimOptions{Handler: handler, LogPath: r.LogPath, LogLevel: r.LogLevel, RunscConfig: map[string]string{}}
	for k, v := range r.Flags {
		if why, ok := reservedFlags[k]; ok {
			return o, fmt.Errorf("runsc.flags.%s is not allowed: %s", k, why)
		}
		if strings.TrimSpace(k) == "" {
			return o, fmt.Errorf("runsc.flags has an empty flag name")
		}
		o.RunscConfig[k] = v
	}
	if platform == "" {
		platform = "systrap"
	}
	if platform == "kvm" && !root.Exists(nodepaths.KVM) {
		return o, fmt.Errorf("runsc platform kvm (handler %q) needs %s, and %s does not exist: this machine offers no (nested) virtualisation; use platform systrap or turn off runsc.kvm_handler", handler, nodepaths.KVM, root.Path(nodepaths.KVM))
	}
	o.RunscConfig["platform"] = platform
	if systemdCgroup {
		o.RunscConfig["systemd-cgroup"] = "true"
	}
	return o, nil
}

// render writes the options file. Every [runsc_config] value is a TOML string.
func (o shimOptions) render() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "%s options of the gVisor shim (containerd-shim-runsc-v1) for the %q runtime\n", markerPrefix, o.Handler)
	b.WriteString("# handler; containerd passes this file as the runtime's ConfigPath. Changes here are\n")
	b.WriteString("# replaced on the next run: set them in gvisor-bootstrap's config ([runsc]).\n")
	b.WriteString("# [runsc_config] holds runsc flags; every value must be a string.\n")
	if o.BinaryName != "" {
		fmt.Fprintf(&b, "binary_name = %s\n", tomlString(o.BinaryName))
	}
	if o.LogLevel != "" {
		fmt.Fprintf(&b, "log_level = %s\n", tomlString(o.LogLevel))
	}
	if o.LogPath != "" {
		fmt.Fprintf(&b, "log_path = %s\n", tomlString(o.LogPath))
	}
	b.WriteString("\n[runsc_config]\n")
	keys := make([]string, 0, len(o.RunscConfig))
	for k := range o.RunscConfig {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "  %s = %s\n", tomlKey(k, false), tomlString(o.RunscConfig[k]))
	}
	return []byte(b.String())
}

// kvmOptionsPath is the second handler's options file, next to the first:
// /etc/containerd/runsc.toml -> /etc/containerd/runsc-kvm.toml.
func kvmOptionsPath(p string) string {
	ext := filepath.Ext(p)
	return strings.TrimSuffix(p, ext) + "-kvm" + ext
}

// runcSystemdCgroup reports whether runc (or, without runc, the default runtime)
// uses the systemd cgroup driver in the family containerd reads.
func runcSystemdCgroup(tree map[string]any, d Dialect) bool {
	name := "runc"
	if _, ok := lookup(tree, d.HandlerPath(name)); !ok {
		if n, ok := lookup(tree, append(d.family.Plugin, "containerd", "default_runtime_name")); ok {
			if s, ok := n.(string); ok {
				name = s
			}
		}
	}
	v, ok := lookup(tree, append(d.HandlerPath(name), "options", "SystemdCgroup"))
	b, isBool := v.(bool)
	return ok && isBool && b
}

// effectiveSystemdCgroup reports whether runc (or, without runc, the default
// runtime) uses the systemd cgroup driver in the config containerd loads.
func effectiveSystemdCgroup(tree map[string]any, v Version) bool {
	rp := effectiveRuntimesPath(tree, v)
	name := "runc"
	if _, ok := lookup(tree, append(append([]string{}, rp...), name)); !ok {
		if n, ok := lookup(tree, append(append([]string{}, rp[:len(rp)-1]...), "default_runtime_name")); ok {
			if s, ok := n.(string); ok {
				name = s
			}
		}
	}
	b, _ := lookup(tree, append(append([]string{}, rp...), name, "options", "SystemdCgroup"))
	on, _ := b.(bool)
	return on
}
