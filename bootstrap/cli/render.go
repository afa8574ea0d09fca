package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/config"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/render"
)

// renderFlags are render's own flags; the ones that are config values are copied onto
// the config (flags override the file), the rest choose the output.
type renderFlags struct {
	baked, base64 bool
	output        string
}

var renderOpts renderFlags

func init() {
	register(&Command{
		Name:    "render",
		Summary: "print cloud-init customData, the RuntimeClass, the DaemonSet or the effective config",
		Usage:   "cloud-init|runtimeclass|daemonset|config [flags]",
		Long: `Renders, from the one config (--config plus flags), what delivers gvisor-bootstrap to
nodes and what the cluster needs:
  cloud-init    #cloud-config customData for a VMSS (downloads the binary pinned by sha256,
                installs the units, runs the first reconcile); --baked for an image that
                already has the binary; --base64 for a VMSS model's customData
  runtimeclass  the node.k8s.io/v1 RuntimeClass for the gVisor pool
  daemonset     ConfigMap + DaemonSet for pools whose images cannot be customised (AKS)
  config        the effective tool config as TOML
Output goes to stdout, or with -o to a file (written atomically, untouched when equal).`,
		Example: `  gvisor-bootstrap render cloud-init --binary-url https://example.com/gvisor-bootstrap --binary-sha256 <64 hex> --base64
  gvisor-bootstrap render cloud-init --baked -o customdata.yaml
  gvisor-bootstrap render runtimeclass --delivery daemonset | kubectl apply -f -
  gvisor-bootstrap render daemonset --image myregistry.azurecr.io/gvisor-bootstrap:v1.0.0 | kubectl apply -f -
  gvisor-bootstrap render config --config /etc/gvisor-bootstrap-cluster/config.toml -o /host/etc/gvisor-bootstrap/config.toml`,
		Flags: func(fs *pflag.FlagSet) func(g *Globals) error {
			renderOpts = renderFlags{}
			url := fs.String("binary-url", "", "URL customData downloads the gvisor-bootstrap binary from (delivery.binary_url), e.g. https://example.com/v1.0.0/gvisor-bootstrap-linux-amd64")
			sum := fs.String("binary-sha256", "", "sha256 of that binary, 64 hex digits (delivery.binary_sha256), e.g. the output of `sha256sum bin/gvisor-bootstrap`")
			image := fs.String("image", "", "DaemonSet image (delivery.image), e.g. myregistry.azurecr.io/gvisor-bootstrap:v1.0.0")
			ns := fs.String("namespace", "", "DaemonSet namespace (delivery.namespace), e.g. kube-system")
			mode := fs.String("delivery", "", "how the pool's nodes get the tool (delivery.mode): daemonset (the RuntimeClass then selects cluster.ready_label, set only on verified nodes), image or cloud-init, e.g. render runtimeclass --delivery daemonset")
			fs.BoolVar(&renderOpts.baked, "baked", false, "cloud-init: the image has the binary and units baked in; only write the config and start the unit (e.g. --baked)")
			fs.BoolVar(&renderOpts.base64, "base64", false, "cloud-init: print base64 for a VMSS model's customData (e.g. --base64)")
			fs.StringVarP(&renderOpts.output, "output", "o", "", "write to this file instead of stdout, e.g. -o manifests/runtimeclass.yaml")
			return func(g *Globals) error {
				if fs.Changed("binary-url") {
					g.Config.Delivery.BinaryURL = *url
				}
				if fs.Changed("binary-sha256") {
					g.Config.Delivery.BinarySHA256 = *sum
				}
				if fs.Changed("image") {
					g.Config.Delivery.Image = *image
				}
				if fs.Changed("namespace") {
					g.Config.Delivery.Namespace = *ns
				}
				if fs.Changed("delivery") {
					g.Config.Delivery.Mode = *mode
				}
				return nil
			}
		},
		Run: runRender,
	})
}

func runRender(ctx context.Context, g *Globals, args []string) (int, error) {
	if len(args) != 1 {
		return ExitUsage, usageErrorf("render takes one of cloud-init, runtimeclass, daemonset, config (got %q)", args)
	}
	kind := args[0]
	if (renderOpts.baked || renderOpts.base64) && kind != "cloud-init" {
		return ExitUsage, usageErrorf("--baked and --base64 only apply to `render cloud-init`")
	}
	var out []byte
	var err error
	switch kind {
	case "cloud-init":
		out, err = render.CloudInit(g.Config, render.CloudInitOptions{Baked: renderOpts.baked})
		if err == nil && renderOpts.base64 {
			out = append([]byte(base64.StdEncoding.EncodeToString(out)), '\n')
		}
	case "runtimeclass":
		out, err = render.RuntimeClass(g.Config)
	case "daemonset":
		out, err = render.DaemonSet(g.Config)
	case "config":
		out, err = config.Encode(g.Config)
	default:
		return ExitUsage, usageErrorf("render %q: want cloud-init, runtimeclass, daemonset or config", kind)
	}
	if err != nil {
		// Rendering fails only on values from the config or flags: bad input.
		return ExitUsage, UsageError{err}
	}
	if renderOpts.output == "" || renderOpts.output == "-" {
		w := g.artefact
		if w == nil {
			w = g.Stdout
		}
		_, err := w.Write(out)
		return ExitOK, err
	}
	return writeRendered(g, renderOpts.output, out)
}

// writeRendered writes out to a plain path (not under --root: it is where the user
// wants the file) atomically, and leaves an identical file untouched.
func writeRendered(g *Globals, path string, out []byte) (int, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return ExitUsage, usageErrorf("-o %s: %v", path, err)
	}
	host := fsroot.New("/")
	if old, err := host.ReadFile(abs); err == nil && bytes.Equal(old, out) {
		fmt.Fprintf(g.Stderr, "%s is up to date\n", abs)
		return ExitOK, nil
	}
	if g.DryRun {
		fmt.Fprintf(g.Stderr, "would write %s (%d bytes)\n", abs, len(out))
		return ExitOK, nil
	}
	// What render writes can carry the release URL's credentials (a SAS token):
	// a new file is root's only; an existing one keeps its mode.
	if err := host.WriteFile(abs, out, fsroot.WriteOptions{Mode: 0o600}); err != nil {
		return ExitFailed, fmt.Errorf("%w; check that the directory exists and is writable", err)
	}
	fmt.Fprintf(g.Stderr, "wrote %s (%d bytes)\n", abs, len(out))
	return ExitOK, nil
}
