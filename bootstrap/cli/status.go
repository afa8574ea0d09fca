package cli

import (
	"context"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/spf13/pflag"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/containerd"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/reconcile"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/release"
)

type statusView struct {
	Release           string            `json:"release,omitempty"`
	Arch              string            `json:"arch,omitempty"`
	InstalledAt       *time.Time        `json:"installed_at,omitempty"`
	Digests           map[string]string `json:"sha512,omitempty"`
	ContainerdVersion string            `json:"containerd_version,omitempty"`
	ConfigPath        string            `json:"containerd_config"`
	Dialect           string            `json:"dialect,omitempty"`
	HandlerInFile     bool              `json:"handler_in_file"`
	HandlerInCRI      *bool             `json:"handler_in_cri"`
	// Served: the CRI serves the handler as the gVisor runtime registered
	// (cri.Status.CheckServed); NotServed says what it serves instead.
	Served      *bool             `json:"handler_served"`
	NotServed   string            `json:"not_served,omitempty"`
	RuntimeNote string            `json:"runtime_note,omitempty"`
	LastRun     *reconcile.Record `json:"last_run,omitempty"`
	Errors      []string          `json:"errors,omitempty"`
	Warnings    []string          `json:"warnings,omitempty"`
}

func init() {
	var nf nodeFlags
	register(&Command{
		Name:    "status",
		Summary: "show at a glance: release and digests, containerd and dialect, handler, last run",
		Example: "  gvisor-bootstrap status\n  gvisor-bootstrap status --json\n  gvisor-bootstrap status --root /host",
		Flags: func(fs *pflag.FlagSet) func(*Globals) error {
			nf.register(fs)
			return func(g *Globals) error { return nf.apply(fs, g) }
		},
		Run: func(ctx context.Context, g *Globals, args []string) (int, error) {
			v := collectStatus(ctx, g)
			g.Emit(v, func(w io.Writer) { printStatus(w, v) })
			return ExitOK, nil
		},
	})
}

func collectStatus(ctx context.Context, g *Globals) statusView {
	v := statusView{ConfigPath: g.Root.Path(g.Config.Containerd.ConfigPath)}
	if st, err := release.LoadState(g.Root); err != nil {
		v.Errors = append(v.Errors, err.Error())
	} else if st.Release != "" {
		v.Release, v.Arch = st.Release, st.Arch
		t := st.InstalledAt
		v.InstalledAt = &t
		v.Digests = map[string]string{}
		for p, f := range st.Files {
			v.Digests[p] = f.SHA512
		}
	}
	ver, verr := containerdVersion(ctx, g)
	if verr != nil {
		v.Errors = append(v.Errors, verr.Error())
	} else {
		v.ContainerdVersion = ver.String()
		if w := containerd.KnownBad(ver); w != "" {
			v.Warnings = append(v.Warnings, w)
		}
	}
	if data, err := g.Root.ReadFile(g.Config.Containerd.ConfigPath); err != nil {
		v.Errors = append(v.Errors, err.Error())
	} else {
		v.HandlerInFile, _ = containerd.HasRunsc(data)
		if verr == nil {
			if d, err := containerd.DetectDialect(data, ver); err != nil {
				v.Errors = append(v.Errors, err.Error())
			} else {
				v.Dialect = d.String()
			}
		}
	}
	if st, note := runtimeStatus(ctx, g); note != "" {
		v.RuntimeNote = note
	} else {
		has := st.HasHandler(g.Config.Cluster.Handler)
		v.HandlerInCRI = &has
		var conf *containerd.Configurator
		if verr == nil {
			conf = newConfigurator(g, ver, g.logger())
		}
		served := true
		if err := st.CheckServed(g.Root, expectOf(g, conf)); err != nil {
			served, v.NotServed = false, err.Error()
		}
		v.Served = &served
	}
	if rec, err := reconcile.LoadRecord(g.Root); err != nil {
		v.Errors = append(v.Errors, err.Error())
	} else if !rec.Start.IsZero() {
		v.LastRun = &rec
	}
	return v
}

func printStatus(w io.Writer, v statusView) {
	rel := "not installed"
	if v.Release != "" {
		rel = fmt.Sprintf("%s (%s), installed %s", v.Release, v.Arch, v.InstalledAt.Format(time.RFC3339))
	}
	fmt.Fprintf(w, "gVisor release:     %s\n", rel)
	paths := make([]string, 0, len(v.Digests))
	for p := range v.Digests {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		fmt.Fprintf(w, "  %-40s sha512:%.16s…\n", p, v.Digests[p])
	}
	fmt.Fprintf(w, "containerd:         %s, dialect %s\n", orDash(v.ContainerdVersion), orDash(v.Dialect))
	fmt.Fprintf(w, "config:             %s\n", v.ConfigPath)
	fmt.Fprintf(w, "runsc in config:    %s\n", yesNo(v.HandlerInFile))
	cri := "not checked: " + v.RuntimeNote
	switch {
	case v.Served != nil && *v.Served:
		cri = "yes, served as gVisor"
	case v.Served != nil:
		cri = "NOT served as gVisor: " + v.NotServed
	}
	fmt.Fprintf(w, "runsc in CRI:       %s\n", cri)
	if v.LastRun != nil {
		fmt.Fprintf(w, "last run:           %s at %s (%.0f ms, %d containerd restarts, %d repairs since boot)\n",
			v.LastRun.Outcome, v.LastRun.Start.Format(time.RFC3339), v.LastRun.DurationMS, v.LastRun.Restarts, v.LastRun.RepairsTotal)
		if v.LastRun.Error != "" {
			fmt.Fprintf(w, "  error: %s\n", v.LastRun.Error)
		}
		if line := advertisedLine(v.LastRun.Report); line != "" {
			fmt.Fprintf(w, "advertised:         %s\n", line)
		}
	} else {
		fmt.Fprintln(w, "last run:           none since boot")
	}
	for _, m := range v.Warnings {
		fmt.Fprintf(w, "WARNING: %s\n", m)
	}
	for _, e := range v.Errors {
		fmt.Fprintf(w, "warning: %s\n", e)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// advertisedLine says in one line whether the last run left the Node advertised
// for gVisor and why not ("" when that run does not advertise: a host run).
func advertisedLine(rep reconcile.Report) string {
	switch {
	case rep.Advertised == nil:
		return ""
	case *rep.Advertised:
		return "yes (the DaemonSet labelled the Node after verifying runsc through the CRI)"
	case rep.NotAdvertised != "":
		return "no: " + rep.NotAdvertised
	}
	return "no"
}
