// Package config holds gvisor-bootstrap's own configuration: built-in defaults, the
// TOML file (/etc/gvisor-bootstrap/config.toml under the root) decoded strictly, and
// validation. Command-line flags are applied on top by the CLI.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"reflect"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/nodepaths"
)

// DefaultPath is where the tool's config lives on a node.
const DefaultPath = nodepaths.ToolConfig

// DefaultReadyLabel is the Node label that says runsc is served there.
const DefaultReadyLabel = "gvisor-bootstrap.dev/runsc=ready"

// DefaultRelease is the pinned gVisor release installed when nothing else is asked.
// `latest` is only used when asked for explicitly: release/latest has lagged for weeks.
const DefaultRelease = "20260914.0"

// Config is the whole tool configuration.
type Config struct {
	Release    Release    `toml:"release"`
	Containerd Containerd `toml:"containerd"`
	Runsc      Runsc      `toml:"runsc"`
	Boot       Boot       `toml:"boot"`
	Metrics    Metrics    `toml:"metrics"`
	Cluster    Cluster    `toml:"cluster"`
	Delivery   Delivery   `toml:"delivery"`
}

// Release says which gVisor release to install and from where.
type Release struct {
	// Version is a dated release ("20260914.0") or "latest".
	Version string `toml:"version"`
	// BaseURL is the bucket's release folder; the directory for one release and arch
	// is BaseURL/<version>/<arch>.
	BaseURL string `toml:"base_url"`
	// URL replaces the whole directory URL for one release and arch (a mirror, an
	// Azure blob container, file:///path for an offline image).
	URL string `toml:"url"`
	// Arch is x86_64 or aarch64; empty means the machine's.
	Arch string `toml:"arch"`
	// BinDir receives runsc, the shim and gvisor-bin/.
	BinDir string `toml:"bin_dir"`
	// SHA512 pins artifact digests by file name (runsc, containerd-shim-runsc-v1,
	// gvisor.tar.bz2). A pinned digest wins over the published .sha512 file.
	SHA512 map[string]string `toml:"sha512"`
	// Timeout bounds one download attempt; Retries bounds transient-failure retries.
	Timeout Duration `toml:"timeout"`
	Retries int      `toml:"retries"`
}

// Containerd says where containerd's config is and how to change it.
type Containerd struct {
	ConfigPath string `toml:"config_path"`
	// Mode is "inplace" (edit the main file, every containerd >= 1.7) or "dropin"
	// (containerd >= 2.0 only).
	Mode       string `toml:"mode"`
	DropinPath string `toml:"dropin_path"`
	// Version overrides `containerd --version` (needed under a root other than /).
	Version string `toml:"version"`
	// RuntimeConfigPath is the runsc shim options file (ConfigPath in the runtime).
	RuntimeConfigPath string `toml:"runtime_config_path"`
	BackupPath        string `toml:"backup_path"`
	Unit              string `toml:"unit"`
	// Address is the CRI socket (a node path, resolved under the root).
	Address        string   `toml:"address"`
	RestartTimeout Duration `toml:"restart_timeout"`
}

// Runsc holds the shim options written to the runsc options file.
type Runsc struct {
	// Platform is systrap (default) or kvm (needs /dev/kvm).
	Platform string `toml:"platform"`
	LogPath  string `toml:"log_path"`
	LogLevel string `toml:"log_level"`
	// Flags are extra [runsc_config] entries (runsc flags); values are strings.
	Flags map[string]string `toml:"flags"`
	// KVMHandler adds a second handler "runsc-kvm" with platform kvm.
	KVMHandler bool `toml:"kvm_handler"`
}

// Boot is the policy of the boot-time reconcile.
type Boot struct {
	// OnFailure is "fail" (kubelet does not start on an unverified node) or
	// "continue" (log loudly, let kubelet start).
	OnFailure     string   `toml:"on_failure"`
	VerifyTimeout Duration `toml:"verify_timeout"`
	// DeepVerify re-hashes the binaries on every run instead of trusting the
	// recorded size/mtime/inode fingerprint.
	DeepVerify bool `toml:"deep_verify"`
}

// Metrics configures node-exporter textfile output.
type Metrics struct {
	// TextfileDir, when set, receives gvisor_bootstrap.prom after every run.
	TextfileDir string `toml:"textfile_dir"`
}

// Cluster describes the Kubernetes side: RuntimeClass and the gVisor pool.
type Cluster struct {
	RuntimeClassName string            `toml:"runtime_class_name"`
	Handler          string            `toml:"handler"`
	NodeSelector     map[string]string `toml:"node_selector"`
	Tolerations      []Toleration      `toml:"tolerations"`
	OverheadCPU      string            `toml:"overhead_cpu"`
	OverheadMemory   string            `toml:"overhead_memory"`
	// ReadyLabel (key=value) is set on the Node by the DaemonSet once runsc is
	// verified through the CRI, and removed when it is not; for DaemonSet delivery
	// the RuntimeClass selects it.
	ReadyLabel string `toml:"ready_label"`
	// StartupTaint (key[=value]:Effect), when set, is the taint the pool's nodes
	// register with (AKS --node-taints, Karpenter startupTaints); the DaemonSet
	// tolerates it and removes it once the node is verified.
	StartupTaint string `toml:"startup_taint"`
}

// Toleration mirrors a Kubernetes toleration.
type Toleration struct {
	Key      string `toml:"key"`
	Operator string `toml:"operator"`
	Value    string `toml:"value"`
	Effect   string `toml:"effect"`
}

// Delivery configures what `render` produces for cloud-init and the DaemonSet.
type Delivery struct {
	// BinaryURL and BinarySHA256 let customData fetch the gvisor-bootstrap binary.
	BinaryURL    string `toml:"binary_url"`
	BinarySHA256 string `toml:"binary_sha256"`
	// Image is the DaemonSet's container image.
	Image     string `toml:"image"`
	Namespace string `toml:"namespace"`
	// Mode is how the tool reaches the pool's nodes: "daemonset" (managed pools:
	// the RuntimeClass selects ReadyLabel, which the DaemonSet sets only on a
	// verified node), "image" or "cloud-init" (the kubelet gate keeps kubelet from
	// registering an unverified node, so the pool label is enough). `render
	// runtimeclass` follows it (or --delivery); `render daemonset` always writes
	// "daemonset" into the config it ships.
	Mode string `toml:"mode"`
	// OnDelete is what deleting the DaemonSet does to its nodes: "uninstall" (the
	// host uninstalls gVisor, as `gvisor-bootstrap uninstall` would) or "keep"
	// (gVisor stays installed and repaired by the host's units, e.g. while moving
	// the pool to a baked image).
	OnDelete string `toml:"on_delete"`
}

// What deleting the DaemonSet does (Delivery.OnDelete).
const (
	OnDeleteUninstall = "uninstall"
	OnDeleteKeep      = "keep"
)

// Delivery modes.
const (
	DeliveryDaemonSet = "daemonset"
	DeliveryImage     = "image"
	DeliveryCloudInit = "cloud-init"
)

// Default returns the built-in configuration.
func Default() Config {
	return Config{
		Release: Release{
			Version: DefaultRelease,
			BaseURL: "https://storage.googleapis.com/gvisor/releases/release",
			BinDir:  nodepaths.DefaultBinDir,
			SHA512:  map[string]string{},
			Timeout: Duration(5 * time.Minute),
			Retries: 4,
		},
		Containerd: Containerd{
			ConfigPath:        nodepaths.DefaultContainerdConfig,
			Mode:              "inplace",
			DropinPath:        nodepaths.DefaultDropin,
			RuntimeConfigPath: nodepaths.DefaultRuntimeConfig,
			BackupPath:        nodepaths.DefaultBackup,
			Unit:              "containerd.service",
			Address:           nodepaths.DefaultCRISocket,
			RestartTimeout:    Duration(2 * time.Minute),
		},
		Runsc: Runsc{
			Platform: "systrap",
			Flags:    map[string]string{},
		},
		Boot: Boot{
			OnFailure:     "fail",
			VerifyTimeout: Duration(60 * time.Second),
		},
		Cluster: Cluster{
			RuntimeClassName: "gvisor",
			Handler:          "runsc",
			NodeSelector:     map[string]string{"gvisor": "enabled"},
			Tolerations:      []Toleration{{Key: "gvisor", Operator: "Equal", Value: "enabled", Effect: "NoSchedule"}},
			OverheadCPU:      "100m",
			OverheadMemory:   "64Mi",
			ReadyLabel:       DefaultReadyLabel,
		},
		Delivery: Delivery{
			Namespace: "kube-system",
			Mode:      DeliveryCloudInit,
			Image:     DefaultImage(),
			OnDelete:  OnDeleteUninstall,
		},
	}
}

// NodePaths are the node paths this config moves, for nodepaths.Table.
func (c Config) NodePaths() nodepaths.Settings {
	return nodepaths.Settings{
		BinDir:           c.Release.BinDir,
		ContainerdConfig: c.Containerd.ConfigPath,
		Dropin:           c.Containerd.DropinPath,
		RuntimeConfig:    c.Containerd.RuntimeConfigPath,
		Backup:           c.Containerd.BackupPath,
		CRISocket:        c.Containerd.Address,
		TextfileDir:      c.Metrics.TextfileDir,
		KVM:              c.Runsc.Platform == "kvm" || c.Runsc.KVMHandler,
	}
}

// ImageRepository is the DaemonSet image's repository; ImageTag is this build's
// version (set by the Makefile's ldflags, as `make image` tags the image it builds).
const ImageRepository = "ghcr.io/gvisor-bootstrap/gvisor-bootstrap"

var ImageTag = "dev"

// DefaultImage is the image `make image` builds for this version: never :latest.
func DefaultImage() string { return ImageRepository + ":" + ImageTag }

// Load reads the config file at nodePath under root. A missing file yields the
// defaults; unknown keys and invalid TOML are errors naming the key or the position.
func Load(root fsroot.Root, nodePath string) (Config, error) {
	cfg := Default()
	data, err := root.ReadFile(nodePath)
	if errors.Is(err, fs.ErrNotExist) {
		return cfg, nil
	}
	if err != nil {
		return cfg, fmt.Errorf("read config %s: %w", root.Path(nodePath), err)
	}
	if err := Decode(data, &cfg); err != nil {
		return cfg, fmt.Errorf("config %s: %w", root.Path(nodePath), err)
	}
	return cfg, cfg.Validate()
}

// OnFailureDespite reads only boot.on_failure from a config file that Load
// refused (keys a newer release added, read by an older binary during a
// DaemonSet upgrade; a value out of range elsewhere): the kubelet gate honours the
// operator's choice even then. Anything unreadable is "fail".
func OnFailureDespite(root fsroot.Root, nodePath string) string {
	data, err := root.ReadFile(nodePath)
	if err != nil {
		return "fail"
	}
	var v struct {
		Boot struct {
			OnFailure string `toml:"on_failure"`
		} `toml:"boot"`
	}
	if toml.Unmarshal(data, &v) != nil || v.Boot.OnFailure != "continue" {
		return "fail"
	}
	return "continue"
}

// Decode decodes TOML onto cfg (which holds defaults), strictly.
func Decode(data []byte, cfg *Config) error {
	// go-toml merges a table into a non-empty map; a map the file sets must replace
	// the default instead (a node_selector without the default gvisor=enabled key).
	var raw map[string]any
	if err := toml.Unmarshal(data, &raw); err == nil {
		for _, m := range []struct {
			section, key string
			clear        func()
		}{
			{"release", "sha512", func() { cfg.Release.SHA512 = nil }},
			{"runsc", "flags", func() { cfg.Runsc.Flags = nil }},
			{"cluster", "node_selector", func() { cfg.Cluster.NodeSelector = nil }},
		} {
			if sec, ok := raw[m.section].(map[string]any); ok {
				if _, set := sec[m.key]; set {
					m.clear()
				}
			}
		}
	}
	if err := durationsHaveUnits(raw); err != nil {
		return err
	}
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(cfg)
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		var keys []string
		for _, e := range strict.Errors {
			row, _ := e.Position()
			keys = append(keys, fmt.Sprintf("%q (line %d)", strings.Join(e.Key(), "."), row))
		}
		return fmt.Errorf("unknown key %s; see `gvisor-bootstrap --help` for the keys it knows", strings.Join(keys, ", "))
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, col := de.Position()
		return fmt.Errorf("invalid TOML at line %d, column %d: %s", row, col, de.Error())
	}
	return err
}

// Validate checks values that the TOML types cannot.
func (c Config) Validate() error {
	var errs []string
	switch c.Containerd.Mode {
	case "inplace", "dropin":
	default:
		errs = append(errs, fmt.Sprintf("containerd.mode %q: want \"inplace\" or \"dropin\"", c.Containerd.Mode))
	}
	switch c.Runsc.Platform {
	case "systrap", "kvm", "ptrace":
	default:
		errs = append(errs, fmt.Sprintf("runsc.platform %q: want \"systrap\" or \"kvm\"", c.Runsc.Platform))
	}
	switch c.Boot.OnFailure {
	case "fail", "continue":
	default:
		errs = append(errs, fmt.Sprintf("boot.on_failure %q: want \"fail\" or \"continue\"", c.Boot.OnFailure))
	}
	switch c.Release.Arch {
	case "", "x86_64", "aarch64":
	default:
		errs = append(errs, fmt.Sprintf("release.arch %q: want \"x86_64\" or \"aarch64\"", c.Release.Arch))
	}
	if c.Release.Version == "" {
		errs = append(errs, "release.version is empty: pin a dated release such as "+DefaultRelease)
	}
	if c.Release.Retries < 0 {
		errs = append(errs, "release.retries must be >= 0")
	}
	switch c.Delivery.Mode {
	case DeliveryDaemonSet, DeliveryImage, DeliveryCloudInit:
	default:
		errs = append(errs, fmt.Sprintf("delivery.mode %q: want \"daemonset\", \"image\" or \"cloud-init\"", c.Delivery.Mode))
	}
	switch c.Delivery.OnDelete {
	case OnDeleteUninstall, OnDeleteKeep:
	default:
		errs = append(errs, fmt.Sprintf("delivery.on_delete %q: want \"uninstall\" or \"keep\"", c.Delivery.OnDelete))
	}
	if k, v, ok := strings.Cut(c.Cluster.ReadyLabel, "="); !ok || k == "" || v == "" || strings.ContainsAny(v, "=:, ") {
		errs = append(errs, fmt.Sprintf("cluster.ready_label %q: want key=value, e.g. %s", c.Cluster.ReadyLabel, DefaultReadyLabel))
	}
	if t := c.Cluster.StartupTaint; t != "" && !strings.Contains(t, ":") {
		errs = append(errs, fmt.Sprintf("cluster.startup_taint %q: want key[=value]:Effect, e.g. gvisor-bootstrap.dev/runsc=not-ready:NoSchedule", t))
	}
	for name, d := range c.Release.SHA512 {
		if len(d) != 128 || strings.Trim(strings.ToLower(d), "0123456789abcdef") != "" {
			errs = append(errs, fmt.Sprintf("release.sha512.%s: want 128 hex digits", name))
		}
	}
	for _, p := range []struct{ k, v string }{
		{"containerd.config_path", c.Containerd.ConfigPath},
		{"containerd.runtime_config_path", c.Containerd.RuntimeConfigPath},
		{"release.bin_dir", c.Release.BinDir},
	} {
		if !strings.HasPrefix(p.v, "/") {
			errs = append(errs, fmt.Sprintf("%s %q must be an absolute path", p.k, p.v))
		}
	}
	for _, d := range []struct {
		k string
		v Duration
	}{
		{"release.timeout", c.Release.Timeout},
		{"containerd.restart_timeout", c.Containerd.RestartTimeout},
		{"boot.verify_timeout", c.Boot.VerifyTimeout},
	} {
		if d.v.D() < minDuration || d.v.D() > maxDuration {
			errs = append(errs, fmt.Sprintf("%s = %q is out of range: want %s to %s, e.g. \"90s\" or \"5m\"", d.k, d.v.D().String(), minDuration, maxDuration))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid configuration: %s", strings.Join(errs, "; "))
	}
	return nil
}

// durationsHaveUnits refuses a duration written as a bare number: TOML's
// `timeout = 30` would decode as 30 ns. Every Duration field of every section is
// checked, by its toml key.
func durationsHaveUnits(raw map[string]any) error {
	durType := reflect.TypeOf(Duration(0))
	ct := reflect.TypeOf(Config{})
	for i := 0; i < ct.NumField(); i++ {
		sec := ct.Field(i)
		if sec.Type.Kind() != reflect.Struct {
			continue
		}
		secName := strings.Split(sec.Tag.Get("toml"), ",")[0]
		values, _ := raw[secName].(map[string]any)
		for j := 0; j < sec.Type.NumField(); j++ {
			f := sec.Type.Field(j)
			if f.Type != durType {
				continue
			}
			key := strings.Split(f.Tag.Get("toml"), ",")[0]
			if v, ok := values[key]; ok {
				if _, isString := v.(string); !isString {
					return fmt.Errorf("%s.%s = %v: a duration needs a unit and quotes, e.g. %s.%s = \"%vs\" (seconds) or \"5m\"", secName, key, v, secName, key, v)
				}
			}
		}
	}
	return nil
}

// durationBounds is the sane range of every configured duration.
const (
	minDuration = time.Second
	maxDuration = 24 * time.Hour
)

// Duration is a time.Duration written as a string ("90s", "5m") in TOML.
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: want a value such as \"90s\" or \"5m\"", b)
	}
	*d = Duration(v)
	return nil
}

// Encode renders the config as TOML (used by `render` to write a node's config).
func Encode(c Config) ([]byte, error) {
	var buf bytes.Buffer
	enc := toml.NewEncoder(&buf)
	enc.SetIndentTables(false)
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
