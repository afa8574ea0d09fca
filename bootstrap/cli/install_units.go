package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"slices"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/systemd"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/units"
)

// installUnits puts this binary at units.BinaryPath under the root (the units run
// it from there), installs and enables the systemd units, and reloads systemd when
// one answers for the root and anything changed. In an image folder or a chroot no
// systemd answers: the units are picked up at the image's first boot.
func installUnits(ctx context.Context, g *Globals) ([]string, error) {
	var changed []string
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find this program to install it at %s: %w", units.BinaryPath, err)
	}
	body, err := os.ReadFile(self)
	if err != nil {
		return nil, fmt.Errorf("read this program (%s) to install it at %s: %w", self, units.BinaryPath, err)
	}
	current, _ := g.Root.ReadFile(units.BinaryPath)
	if !bytes.Equal(current, body) {
		changed = append(changed, units.BinaryPath)
		if !g.DryRun {
			if err := g.Root.WriteFile(units.BinaryPath, body, fsroot.WriteOptions{Mode: 0o755, ForceMode: true}); err != nil {
				return nil, err
			}
		}
	}
	files, err := units.Install(g.Root, g.DryRun)
	changed = append(changed, files...)
	if err != nil || g.DryRun {
		return changed, err
	}
	masked := units.Masked(g.Root)
	for _, p := range masked {
		g.logger().Warn("unit masked by the administrator: left masked, not installed", "path", g.Root.Path(p))
	}
	mgr, err := systemd.Connect(ctx, g.Root)
	if errors.Is(err, systemd.ErrUnavailable) {
		g.logger().Info("no systemd answers for this root: units take effect at its next boot", "root", g.Root.Dir())
		return changed, nil
	}
	if err != nil {
		return changed, err
	}
	defer mgr.Close()
	if len(files) > 0 {
		if err := mgr.Reload(ctx); err != nil {
			return changed, err
		}
	}
	// The path unit repairs the node after a rewrite of containerd's config from
	// now on, not only from the next boot (the DaemonSet's pod may be gone by then).
	if slices.Contains(masked, path.Join(units.Dir, units.PathUnit)) {
		return changed, nil
	}
	return changed, mgr.Start(ctx, units.PathUnit)
}
