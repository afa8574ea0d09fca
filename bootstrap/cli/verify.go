package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/pflag"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/containerd"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/cri"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/reconcile"
)

type verifyResult struct {
	OK             bool                `json:"ok"`
	Problems       []reconcile.Problem `json:"problems"`
	RuntimeChecked bool                `json:"runtime_checked"`
	RuntimeNote    string              `json:"runtime_note,omitempty"`
	// Warnings do not fail verify: gVisor pods start, with known bugs.
	Warnings   []string `json:"warnings,omitempty"`
	Advertised string   `json:"advertised,omitempty"`
}

func init() {
	var deep bool
	var nf nodeFlags
	register(&Command{
		Name:    "verify",
		Summary: "check the node without changing anything; exit 1 listing every problem",
		Long: `verify checks the installed binaries (against the digests recorded at install; --deep
re-hashes them), containerd's config (runsc registered with the right type and options, the
options file, containerd new enough) and, when containerd answers on its CRI socket, that the
CRI lists the runsc handler as kubelet sees it. Where no containerd answers (an image folder,
containerd stopped) it says the runtime check did not run.`,
		Example: `  gvisor-bootstrap verify
  gvisor-bootstrap verify --deep --json
  gvisor-bootstrap verify --root /mnt/image --containerd-version 2.1.3`,
		Flags: func(fs *pflag.FlagSet) func(*Globals) error {
			fs.BoolVar(&deep, "deep", false, "re-hash the binaries instead of trusting their recorded fingerprint (e.g. --deep)")
			nf.register(fs)
			return func(g *Globals) error { return nf.apply(fs, g) }
		},
		Run: func(ctx context.Context, g *Globals, args []string) (int, error) {
			res := verifyNode(ctx, g, deep)
			g.Emit(res, func(w io.Writer) { printVerify(w, res) })
			if !res.OK {
				return ExitFailed, nil
			}
			return ExitOK, nil
		},
	})
}

func verifyNode(ctx context.Context, g *Globals, deep bool) verifyResult {
	log := g.logger()
	var res verifyResult
	bins := &binaries{inst: newInstaller(g, log), deep: g.Config.Boot.DeepVerify}
	res.Problems = append(res.Problems, bins.Problems(deep)...)
	var conf *containerd.Configurator
	if v, err := containerdVersion(ctx, g); err != nil {
		res.Problems = append(res.Problems, reconcile.Problem{What: err.Error(), Fix: "pass --containerd-version"})
	} else {
		conf = newConfigurator(g, v, log)
		res.Problems = append(res.Problems, conf.CheckContext(ctx)...)
		res.Warnings = append(res.Warnings, conf.Warnings()...)
	}
	st, note := runtimeStatus(ctx, g)
	if note != "" {
		res.RuntimeNote = note
	} else {
		res.RuntimeChecked = true
		if err := st.CheckServed(g.Root, expectOf(g, conf)); err != nil {
			res.Problems = append(res.Problems, reconcile.Problem{
				Path: g.Root.Path(g.Config.Containerd.Address),
				What: "the running containerd: " + err.Error(),
				Fix:  "fix the file the message names, then run `gvisor-bootstrap run` (it restarts containerd when its config registers runsc)",
			})
		}
	}
	res.OK = len(res.Problems) == 0
	if rec, err := reconcile.LoadRecord(g.Root); err == nil {
		res.Advertised = advertisedLine(rec.Report)
	}
	return res
}

// runtimeStatus asks the CRI; note says why the runtime check did not run.
func runtimeStatus(ctx context.Context, g *Globals) (cri.Status, string) {
	sock := g.Config.Containerd.Address
	if !g.Root.Exists(sock) {
		return cri.Status{}, fmt.Sprintf("runtime check did not run: no CRI socket at %s (containerd not running here)", g.Root.Path(sock))
	}
	rt, err := cri.Dial(g.Root, sock)
	if err != nil {
		return cri.Status{}, "runtime check did not run: " + err.Error()
	}
	defer rt.Close()
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	st, err := rt.Status(cctx)
	if err != nil {
		return cri.Status{}, "runtime check did not run: " + err.Error()
	}
	return st, ""
}

func printVerify(w io.Writer, res verifyResult) {
	for _, p := range res.Problems {
		fmt.Fprintf(w, "PROBLEM: %s", p.What)
		if p.Path != "" {
			fmt.Fprintf(w, " (%s)", p.Path)
		}
		if p.Fix != "" {
			fmt.Fprintf(w, "\n  fix: %s", p.Fix)
		}
		fmt.Fprintln(w)
	}
	for _, m := range res.Warnings {
		fmt.Fprintln(w, "WARNING: "+m)
	}
	if res.RuntimeNote != "" {
		fmt.Fprintln(w, "note: "+res.RuntimeNote)
	}
	if res.Advertised != "" {
		fmt.Fprintln(w, "advertised: "+res.Advertised)
	}
	if res.OK {
		fmt.Fprintln(w, "ok: the node can run gVisor pods")
	} else {
		fmt.Fprintf(w, "%d problem(s)\n", len(res.Problems))
	}
}

// expectOf is what the CRI must serve; without a configurator (containerd's
// version unknown) the handler as the tool's config describes it.
func expectOf(g *Globals, c *containerd.Configurator) cri.Expect {
	if c != nil {
		return c.Expect()
	}
	return cri.Expect{Handler: g.Config.Cluster.Handler, ConfigPath: g.Config.Containerd.RuntimeConfigPath}
}

// dialCRI is a variable so that tests can put a fake CRI behind uninstall (no
// gVisor pod can run on the test machine itself).
var dialCRI = func(g *Globals) (cri.Runtime, error) { return cri.Dial(g.Root, g.Config.Containerd.Address) }
