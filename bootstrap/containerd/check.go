package containerd

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/reconcile"
)

// Problem is one thing wrong with the node's containerd configuration (the one
// Problem type of the reconcile).
type Problem = reconcile.Problem

const fixConfigure = "run `gvisor-bootstrap configure` (or `gvisor-bootstrap run`), then restart containerd"

// Check reports what keeps containerd from running sandboxes with runsc as
// configured. It writes nothing.
func (c *Configurator) Check() []Problem { return c.CheckContext(context.Background()) }

// CheckContext is Check that stops when ctx is done (SIGTERM): a stopped check
// is a problem, never a pass.
func (c *Configurator) CheckContext(ctx context.Context) []Problem {
	cfgPath := c.Containerd.ConfigPath
	if err := CheckSupported(c.Version); err != nil {
		return []Problem{{Path: "containerd", What: err.Error(), Fix: "upgrade containerd to 1.7 or later"}}
	}
	plan, err := c.PlanContext(ctx)
	if err != nil && ctx.Err() != nil {
		return []Problem{{Path: c.Root.Path(cfgPath), What: err.Error(), Fix: "run the check again"}}
	}
	var fe *ForeignHandlerError
	if errors.As(err, &fe) {
		return []Problem{{Path: fe.Path, What: fmt.Sprintf("%s %s, so containerd would not serve %q as gVisor", fe.Path, fe.What, fe.Handler), Fix: fe.Fix}}
	}
	if err != nil {
		return []Problem{{Path: c.Root.Path(cfgPath), What: err.Error(), Fix: "fix the file or the tool's config as the message says, then " + fixConfigure}}
	}
	var probs []Problem
	for _, ch := range plan.Changes {
		switch {
		case ch.Path == c.mainPath() && c.Containerd.Mode != "dropin":
			probs = append(probs, c.describeHandlers(ch.Old, plan.Dialect)...)
		case ch.Path == c.mainPath():
			probs = append(probs, Problem{Path: c.Root.Path(cfgPath), What: fmt.Sprintf("does not import the runsc drop-in %s (or still holds runsc tables of its own)", c.Containerd.DropinPath), Fix: fixConfigure})
		case ch.Remove:
			probs = append(probs, Problem{Path: c.Root.Path(ch.Path), What: "left over: " + ch.Why, Fix: fixConfigure})
		case !ch.Existed:
			probs = append(probs, Problem{Path: c.Root.Path(ch.Path), What: "missing (" + ch.Why + ")", Fix: fixConfigure})
		default:
			probs = append(probs, Problem{Path: c.Root.Path(ch.Path), What: "out of date (" + ch.Why + ")", Fix: fixConfigure})
		}
	}
	return probs
}

// describeHandlers says precisely what is wrong with the handler tables of an
// in-place config.
func (c *Configurator) describeHandlers(data []byte, d Dialect) []Problem {
	path := c.Root.Path(c.Containerd.ConfigPath)
	doc, err := c.parsed(context.Background(), c.mainPath(), data)
	if err != nil {
		return []Problem{{Path: path, What: err.Error(), Fix: "fix the file"}}
	}
	var probs []Problem
	add := func(format string, a ...any) {
		probs = append(probs, Problem{Path: path, What: fmt.Sprintf(format, a...), Fix: fixConfigure})
	}
	for _, h := range withUserKeys(doc.tree, d, c.wanted()) {
		got, ok := lookup(doc.tree, d.HandlerPath(h.Name))
		if !ok {
			add("runtime handler %q is not registered in [%s.%s]", h.Name, d.RuntimeTable, h.Name)
			for _, f := range allFamilies {
				if _, stale := lookup(doc.tree, f.Handler(h.Name)); stale && f.Name != d.Plugin {
					add("runtime handler %q is defined under %s tables, which containerd %s does not read for this file (%s)", h.Name, f.Name, c.Version, d.Reason)
				}
			}
			continue
		}
		m, _ := got.(map[string]any)
		if v, _ := lookup(m, []string{"runtime_type"}); v != RuntimeType {
			add("runtime handler %q has runtime_type %v, want %q", h.Name, v, RuntimeType)
		}
		if v, _ := lookup(m, []string{"options", "TypeUrl"}); v != OptionsTypeURL {
			add("runtime handler %q has options.TypeUrl %v, want %q (a string)", h.Name, v, OptionsTypeURL)
		}
		if v, _ := lookup(m, []string{"runtime_path"}); h.RuntimePath != "" && v != h.RuntimePath {
			add("runtime handler %q has runtime_path %v, want %q (release.bin_dir is not on containerd's PATH)", h.Name, v, h.RuntimePath)
		}
		if v, _ := lookup(m, []string{"options", "ConfigPath"}); v != h.OptionsPath {
			add("runtime handler %q has options.ConfigPath %v, want %q", h.Name, v, h.OptionsPath)
		}
		if len(probs) == 0 && !reflect.DeepEqual(got, h.want()) {
			add("runtime handler %q has settings this tool does not manage; they are replaced on the next run", h.Name)
		}
	}
	if len(probs) == 0 {
		add("holds a runsc handler this tool no longer wants (or one under the wrong tables)")
	}
	return probs
}
