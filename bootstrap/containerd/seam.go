package containerd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/cri"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/reconcile"
)

// The Configurator is the reconcile's ContainerdConfig seam itself: the plan, its
// application and its undo live together here.
var _ reconcile.ContainerdConfig = (*Configurator)(nil)

// Ensure plans and (unless dryRun) applies the registration. A file rewritten by
// another agent between plan and write is planned again from its new content, a
// bounded number of times.
func (c *Configurator) Ensure(ctx context.Context, dryRun bool) (reconcile.ConfigChange, error) {
	for attempt := 1; ; attempt++ {
		ch, err := c.ensureOnce(ctx, dryRun)
		if errors.Is(err, ErrChangedSincePlan) && attempt < 3 {
			c.log().Warn("containerd's config was rewritten during the run: planning again from the new content", "error", err)
			continue
		}
		return ch, err
	}
}

func (c *Configurator) ensureOnce(ctx context.Context, dryRun bool) (reconcile.ConfigChange, error) {
	plan, err := c.PlanContext(ctx)
	if err != nil {
		return reconcile.ConfigChange{}, err
	}
	ch := reconcile.ConfigChange{RestartNeeded: plan.RestartNeeded, ConfigPath: plan.MainPath, ConfigAfter: plan.MainAfter, Fingerprint: plan.Fingerprint}
	if len(plan.Changes) == 0 {
		return ch, nil
	}
	ch.Changed, ch.Diff = true, plan.Diff()
	ch.Summary = plan.Summary()
	if dryRun {
		return ch, nil
	}
	if ctx.Err() != nil {
		// Stopped between the plan and the first write: write nothing.
		return reconcile.ConfigChange{}, stopped(ctx, "write containerd's config "+c.Root.Path(plan.MainPath))
	}
	if err := c.Apply(plan); err != nil {
		return reconcile.ConfigChange{}, err
	}
	ch.Undo = func() error { return c.Undo(plan) }
	return ch, nil
}

// Undo puts back the files an applied plan replaced and removes those it
// created. A file that no longer holds what the plan wrote (another agent
// rewrote it since) is left alone: restoring ours would throw theirs away.
func (c *Configurator) Undo(p Plan) error {
	var errs []error
	for _, ch := range p.Changes {
		cur, err := c.Root.ReadFile(ch.Path)
		switch {
		case ch.Remove:
			if err == nil {
				errs = append(errs, fmt.Errorf("%s was recreated since it was removed; not restoring it", c.Root.Path(ch.Path)))
				continue
			}
		case err != nil || !bytes.Equal(cur, ch.New):
			c.log().Warn("not restoring a file changed since this run wrote it", "path", c.Root.Path(ch.Path))
			continue
		}
		if ch.LinkTarget != "" {
			lp := c.Root.LinkPath(ch.Path)
			if err = os.Remove(lp); err == nil {
				err = os.Symlink(ch.LinkTarget, lp)
			}
		} else if ch.Existed {
			err = c.Root.WriteFile(ch.Path, ch.Old, fsroot.WriteOptions{Mode: ch.Mode})
		} else {
			err = c.Root.Remove(ch.Path)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Problems is Check in the reconcile's terms.
func (c *Configurator) Problems() []reconcile.Problem { return c.Check() }

// FileHasRunsc reports whether the config containerd loads registers the runsc
// handler.
func (c *Configurator) FileHasRunsc() bool {
	has := func(p string) bool {
		b, err := c.Root.ReadFile(p)
		if err != nil {
			return false
		}
		doc, err := c.parsed(context.Background(), p, b)
		return err == nil && docHasRunsc(doc)
	}
	ok := has(c.mainPath())
	if !ok && c.Containerd.Mode == "dropin" && c.Containerd.DropinPath != "" {
		ok = has(c.Containerd.DropinPath)
	}
	return ok
}

// Expect is the runsc handler as this tool registers it, for cri.CheckServed.
func (c *Configurator) Expect() cri.Expect {
	e := cri.Expect{
		Handler:     HandlerRunsc,
		ConfigPath:  c.Containerd.RuntimeConfigPath,
		RuntimePath: c.runtimePath(),
		DefinedBy:   c.definedBy(HandlerRunsc),
	}
	if c.BinDir != "" {
		e.Shim, e.Runsc = path.Join(c.BinDir, ShimBinary), path.Join(c.BinDir, RunscBinary)
	}
	return e
}

// Summary lists the files a plan writes and removes.
func (p Plan) Summary() string {
	s := ""
	for i, c := range p.Changes {
		if i > 0 {
			s += ", "
		}
		if c.Remove {
			s += "removed " + c.Path
		} else {
			s += "wrote " + c.Path
		}
	}
	return s
}

// Warnings are what is wrong but does not stop gVisor pods from starting (a
// containerd release with known gVisor bugs).
func (c *Configurator) Warnings() []string {
	if w := KnownBad(c.Version); w != "" {
		return []string{w}
	}
	return nil
}
