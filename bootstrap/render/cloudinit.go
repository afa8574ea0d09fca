package render

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/config"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/units"
)

// CustomDataLimit is Azure's limit on customData (after base64 decoding).
const CustomDataLimit = 64 << 10

// CloudInitOptions choose the customData variant.
type CloudInitOptions struct {
	// Baked: the image already has the binary and the enabled units (a Packer image).
	// The customData then only writes the config and starts the unit; nothing is
	// downloaded.
	Baked bool
}

// InstallScriptPath is where the customData leaves its install script on the node, so
// an operator can read and re-run exactly what ran.
const InstallScriptPath = "/var/lib/gvisor-bootstrap/cloud-init-install.sh"

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

type cloudInitData struct {
	Config       string
	Baked        bool
	BinaryURL    string
	BinarySHA256 string
	BinaryPath   string
	ConfigPath   string
	ScriptPath   string
	BootUnit     string
	PathUnit     string
	// FirstBootGate is the bootcmd that writes FirstBootDropIn as kubelet's gate
	// while the binary is absent (see firstBootGate).
	FirstBootGate   string
	FirstBootDropIn string
}

// firstBootData fills the first-boot drop-in template.
type firstBootData struct {
	BinaryPath, BootUnit, DropIn, OnFailure string
}

// firstBootGate is a bootcmd (cloud-init's first module, before write_files and
// long before runcmd downloads anything): while the binary is absent and no gate
// is installed, it writes kubelet's drop-in ($0, the rendered file) and reloads
// systemd, which has already loaded kubelet.service. So if the binary's download
// fails, kubelet still does not start (boot.on_failure = "fail"), or starts
// saying so loudly ("continue"). It never replaces an installed gate.
func firstBootGate() string {
	f := units.KubeletDropIn
	return `if [ -x ` + units.BinaryPath + ` ] || [ -e ` + f + ` ]; then exit 0; fi; ` +
		`mkdir -p ` + path.Dir(f) + ` && printf '%s' "$0" > ` + f + `.tmp && mv -f ` + f + `.tmp ` + f + ` && systemctl daemon-reload`
}

// CloudInit renders a #cloud-config for a VMSS node. Without opts.Baked it writes the
// tool's config, downloads the binary from cfg.Delivery.BinaryURL, checks it against
// cfg.Delivery.BinarySHA256 (and refuses to run it otherwise), installs it with its
// units and runs the first reconcile; later boots are left to the units. With
// opts.Baked it writes the config and starts the unit.
func CloudInit(cfg config.Config, opts CloudInitOptions) ([]byte, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	toml, err := config.Encode(cfg)
	if err != nil {
		return nil, fmt.Errorf("render cloud-init: encode the tool's config: %w", err)
	}
	d := cloudInitData{
		Config:     string(toml),
		Baked:      opts.Baked,
		BinaryPath: units.BinaryPath,
		ConfigPath: config.DefaultPath,
		ScriptPath: InstallScriptPath,
		BootUnit:   units.BootUnit,
		PathUnit:   units.PathUnit,
	}
	if !opts.Baked {
		gate, err := execute("kubelet-first-boot.conf.tmpl", firstBootData{
			BinaryPath: units.BinaryPath, BootUnit: units.BootUnit, DropIn: units.KubeletDropIn, OnFailure: cfg.Boot.OnFailure,
		})
		if err != nil {
			return nil, err
		}
		d.FirstBootGate, d.FirstBootDropIn = firstBootGate(), string(gate)
		d.BinaryURL = cfg.Delivery.BinaryURL
		d.BinarySHA256 = strings.ToLower(cfg.Delivery.BinarySHA256)
		if err := checkBinarySource(d.BinaryURL, d.BinarySHA256); err != nil {
			return nil, err
		}
	}
	out, err := execute("cloud-init.yaml.tmpl", d)
	if err != nil {
		return nil, err
	}
	if len(out) > CustomDataLimit {
		return nil, fmt.Errorf("render cloud-init: %d bytes exceeds Azure's customData limit of %d bytes; shorten the config", len(out), CustomDataLimit)
	}
	return out, nil
}

func checkBinarySource(rawURL, sum string) error {
	if rawURL == "" {
		return fmt.Errorf("render cloud-init: delivery.binary_url is empty: give the URL of the gvisor-bootstrap binary (--binary-url https://...), or use --baked for an image that has it")
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http" && u.Scheme != "file") || strings.ContainsAny(rawURL, "\n\r") {
		return fmt.Errorf("render cloud-init: delivery.binary_url %q: want an https:// (or http://, file://) URL", rawURL)
	}
	if !sha256Hex.MatchString(sum) {
		return fmt.Errorf("render cloud-init: delivery.binary_sha256 %q: want the 64 hex digits of `sha256sum gvisor-bootstrap` (--binary-sha256)", sum)
	}
	return nil
}
