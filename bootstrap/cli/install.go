package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/config"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/release"
)

func init() {
	var (
		version, arch, url, binDir string
		pins                       []string
		timeout                    time.Duration
		retries                    int
		deep                       bool
		withUnits, skipBinaries    bool
	)
	register(&Command{
		Name:    "install",
		Summary: "fetch, verify and install runsc, its containerd shim and sidecars (idempotent)",
		Long: `Downloads one gVisor release (the bundle gvisor.tar.bz2, or the loose runsc and
containerd-shim-runsc-v1 files of older releases), checks every artifact against its
published .sha512 file or the digests pinned in the config (a pin wins; a published
digest that disagrees is an error), and installs it atomically: the release goes
into its own directory in the bin directory; runsc, the shim and gvisor-bin are
fixed symlinks through .gvisor-current, which one rename switches to the new
release, so they always show one whole release. Transient failures are retried with backoff; any
failure leaves the installed binaries untouched.

When the recorded installation (` + release.StatePath + `) already matches and the
files verify, nothing is fetched and nothing is written. Release "latest" is
resolved once and never re-checked: pin a dated release to upgrade.`,
		Example: `  gvisor-bootstrap install
  gvisor-bootstrap install --release 20260914.0 --arch aarch64
  gvisor-bootstrap install --release-url file:///opt/gvisor/20260914.0/x86_64 --sha512 gvisor.tar.bz2=<128 hex>
  gvisor-bootstrap install --root /mnt/image --bin-dir /usr/local/bin --dry-run --json`,
		Flags: func(fs *pflag.FlagSet) func(g *Globals) error {
			fs.StringVar(&version, "release", "", "gVisor release to install, e.g. 20260914.0 (\"latest\" only when asked explicitly; default "+config.DefaultRelease+")")
			fs.StringVar(&arch, "arch", "", "release architecture, x86_64 or aarch64 (default: this machine's), e.g. --arch aarch64")
			fs.StringVar(&url, "release-url", "", "directory URL of one release and arch, replacing the bucket layout, e.g. https://mirror.example/gvisor/20260914.0/x86_64 or file:///opt/gvisor (a file:// path is on the machine running the tool, not under --root)")
			fs.StringVar(&binDir, "bin-dir", "", "node directory receiving runsc, the shim and gvisor-bin (default /usr/local/bin), e.g. --bin-dir /opt/bin")
			fs.StringArrayVar(&pins, "sha512", nil, "pin an artifact's sha512, NAME=HEX with NAME runsc, containerd-shim-runsc-v1 or gvisor.tar.bz2; repeatable, e.g. --sha512 gvisor.tar.bz2=3f1a...")
			fs.DurationVar(&timeout, "timeout", 0, "time limit for one download attempt, e.g. --timeout 2m")
			fs.IntVar(&retries, "retries", 0, "retries of a transient failure (reset, 5xx, timeout) with exponential backoff, e.g. --retries 6")
			fs.BoolVar(&deep, "deep", false, "re-hash every installed file instead of trusting the recorded size/mtime/ctime/inode fingerprint")
			fs.BoolVar(&withUnits, "units", false, "also install this program as /usr/local/bin/gvisor-bootstrap and install and enable its systemd units and kubelet drop-in (e.g. in a Packer build: install --units)")
			fs.BoolVar(&skipBinaries, "skip-binaries", false, "with --units, install only this program and the units, not gVisor (e.g. install --units --skip-binaries)")
			return func(g *Globals) error {
				r := &g.Config.Release
				if fs.Changed("release") {
					if err := release.CheckVersion(version); err != nil {
						return usageErrorf("--release: %v", err)
					}
					r.Version = version
				}
				if fs.Changed("arch") {
					r.Arch = arch // Validate() rejects anything but x86_64 and aarch64
				}
				if fs.Changed("release-url") {
					r.URL = url
				}
				if fs.Changed("bin-dir") {
					r.BinDir = binDir
				}
				if fs.Changed("timeout") {
					if timeout <= 0 {
						return usageErrorf("--timeout %s: want a positive duration such as 2m", timeout)
					}
					r.Timeout = config.Duration(timeout)
				}
				if fs.Changed("retries") {
					r.Retries = retries
				}
				if len(pins) > 0 {
					m := map[string]string{}
					for k, v := range r.SHA512 {
						m[k] = v
					}
					for _, p := range pins {
						name, hex, ok := strings.Cut(p, "=")
						switch name {
						case release.RunscName, release.ShimName, release.BundleName:
						default:
							return usageErrorf("--sha512 %q: want NAME=HEX with NAME runsc, containerd-shim-runsc-v1 or gvisor.tar.bz2", p)
						}
						if !ok {
							return usageErrorf("--sha512 %q: want NAME=HEX", p)
						}
						m[name] = strings.ToLower(hex)
					}
					r.SHA512 = m // Validate() checks the digits
				}
				if deep {
					g.Config.Boot.DeepVerify = true
				}
				arch, err := release.Arch(*r)
				if err != nil {
					return UsageError{err}
				}
				if _, err := release.SourceDir(*r, arch); err != nil {
					return UsageError{err}
				}
				return nil
			}
		},
		Run: func(ctx context.Context, g *Globals, args []string) (int, error) {
			if len(args) > 0 {
				return ExitUsage, usageErrorf("install takes no arguments, got %q", args)
			}
			if skipBinaries && !withUnits {
				return ExitUsage, usageErrorf("--skip-binaries only makes sense with --units")
			}
			// Units first: with the kubelet gate in place, a release that fails to
			// download or verify leaves kubelet stopped (fail closed), not ungated.
			var unitChanges []string
			if withUnits {
				var err error
				if unitChanges, err = installUnits(ctx, g); err != nil {
					return ExitFailed, err
				}
			}
			var res release.Result
			if !skipBinaries {
				inst := newInstaller(g, g.logger())
				inst.Deep = g.Config.Boot.DeepVerify
				var err error
				if res, err = inst.Install(ctx, g.DryRun); err != nil {
					return ExitFailed, err
				}
			}
			g.Emit(struct {
				Command string `json:"command"`
				OK      bool   `json:"ok"`
				release.Result
				Units []string `json:"units,omitempty"`
			}{"install", true, res, unitChanges}, func(w io.Writer) {
				if !skipBinaries {
					printInstall(w, res, g.Config.Release.BinDir)
				}
				verb := "installed"
				if g.DryRun {
					verb = "would install"
				}
				for _, p := range unitChanges {
					fmt.Fprintf(w, "%s %s\n", verb, p)
				}
			})
			return ExitOK, nil
		},
	})
}

func printInstall(w io.Writer, r release.Result, binDir string) {
	switch {
	case r.DryRun && r.Changed:
		fmt.Fprintf(w, "would install gVisor release %s (%s) from %s into %s, because:\n", r.Release, r.Arch, r.Source, binDir)
		for _, why := range r.Reasons {
			fmt.Fprintf(w, "  - %s\n", why)
		}
		fmt.Fprintln(w, "would fetch, in order (a missing bundle falls back to the loose files):")
		for _, u := range r.WouldFetch {
			fmt.Fprintf(w, "  %s\n", u)
		}
	case r.Changed:
		fmt.Fprintf(w, "installed gVisor release %s (%s, %s layout) from %s into %s\n", r.Release, r.Arch, r.Layout, r.Source, r.Dir)
		for _, p := range r.Installed {
			fmt.Fprintf(w, "  %s\n", p)
		}
	default:
		fmt.Fprintf(w, "gVisor release %s (%s, %s layout) is installed in %s and verified; nothing to do\n", r.Release, r.Arch, r.Layout, r.Dir)
	}
}
