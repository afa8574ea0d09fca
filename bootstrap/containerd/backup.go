package containerd

import (
	"bytes"
	"context"
	"fmt"

	"github.com/pelletier/go-toml/v2/unstable"
)

// The backup is the main config as it was before this tool first changed it, kept
// for uninstall. It is only ever written from a pristine file (one without a runsc
// handler): a file we, or anyone, already patched is never taken as the original.
// When the node's provisioning rewrites the config (AKS does at every reimage), the
// new pristine file replaces the old backup, since that is what uninstall should
// return to.

// planBackup adds the backup to a plan that changes an existing main config.
func (c *Configurator) planBackup(p *Plan, old []byte, existed bool) error {
	if !existed || c.Containerd.BackupPath == "" {
		return nil
	}
	touchesMain := false
	for _, ch := range p.Changes {
		if ch.Path == c.mainPath() {
			touchesMain = true
		}
	}
	if !touchesMain {
		return nil
	}
	// A file this tool already patched carries its marker; a runsc table of
	// the user's own is part of the original and kept in the backup.
	if bytes.Contains(old, []byte(markerPrefix)) {
		return nil
	}
	cur, had, err := c.readNode(c.Containerd.BackupPath)
	if err != nil {
		return err
	}
	if had && bytes.Equal(cur, old) {
		return nil
	}
	p.Backup = &FileChange{Path: c.Containerd.BackupPath, Old: cur, New: old, Existed: had, Mode: 0o600, Why: "original containerd config, for uninstall"}
	return nil
}

// PlanRemove plans uninstall: the handlers leave the main config (the backup is
// restored when the file is otherwise what this tool made of it), and the options
// files and the drop-in are removed.
func (c *Configurator) PlanRemove() (Plan, error) {
	var p Plan
	cfgPath := c.mainPath()
	old, existed, err := c.readNode(cfgPath)
	if err != nil {
		return p, err
	}
	if existed {
		doc, err := parseDocument(c.Root.Path(cfgPath), old)
		if err != nil {
			return p, err
		}
		out, _, err := editHandlers(doc, Dialect{}, nil)
		if err != nil {
			return p, fmt.Errorf("%s: %w", c.Root.Path(cfgPath), err)
		}
		out = c.withoutOwnImport(out)
		out = defaultRuntimeBackToRunc(out)
		if backup, ok := c.restorableBackup(old, out); ok {
			out = backup
		}
		if !bytes.Equal(out, old) {
			c.change(&p, cfgPath, old, true, out, 0, "remove the runsc runtime handler")
			p.RestartNeeded = true
		}
	}
	if c.Containerd.DropinPath != "" {
		n := len(p.Changes)
		if err := c.removeOwned(&p, c.Containerd.DropinPath, "uninstall"); err != nil {
			return p, err
		}
		if len(p.Changes) > n {
			p.RestartNeeded = true
		}
	}
	for _, path := range []string{c.Containerd.RuntimeConfigPath, kvmOptionsPath(c.Containerd.RuntimeConfigPath)} {
		if err := c.removeOwned(&p, path, "uninstall"); err != nil {
			return p, err
		}
	}
	return p, nil
}

// restorableBackup returns the backup when the current file is exactly what this
// tool makes of it (so restoring loses nothing), or when the file without our
// handlers is byte-identical to it.
func (c *Configurator) restorableBackup(current, stripped []byte) ([]byte, bool) {
	if c.Containerd.BackupPath == "" {
		return nil, false
	}
	backup, had, err := c.readNode(c.Containerd.BackupPath)
	if err != nil || !had {
		return nil, false
	}
	if bytes.Equal(backup, stripped) {
		return backup, true
	}
	if c.Version.IsZero() {
		return nil, false
	}
	rootPath := c.Containerd.ConfigPath
	doc, err := parseDocument("backup", backup)
	if err != nil {
		return nil, false
	}
	d, err := detectDialect(doc, c.Version)
	if err != nil {
		return nil, false
	}
	var patched []byte
	if c.Containerd.Mode == "dropin" {
		root, _, err := editHandlers(doc, d, nil)
		if err != nil {
			return nil, false
		}
		rootDoc, err := parseDocument("backup", root)
		if err != nil {
			return nil, false
		}
		if patched, _, err = ensureImports(context.Background(), rootDoc, rootPath, c.Containerd.DropinPath, d.SingleQuotes); err != nil {
			return nil, false
		}
	} else if patched, _, err = editHandlers(doc, d, c.wanted()); err != nil {
		return nil, false
	}
	if bytes.Equal(patched, current) {
		return backup, true
	}
	return nil, false
}

// withoutOwnImport drops an `imports` line that only imports our drop-in (the line
// drop-in mode writes when the root had none). An import we appended to a longer
// list stays: containerd 2 skips an import whose file is missing.
func (c *Configurator) withoutOwnImport(data []byte) []byte {
	if c.Containerd.DropinPath == "" {
		return data
	}
	doc, err := parseDocument("config", data)
	if err != nil {
		return data
	}
	list, ok := doc.tree["imports"].([]any)
	if !ok || len(list) != 1 || list[0] != c.Containerd.DropinPath {
		return data
	}
	for _, s := range doc.stmts {
		if len(s.table) == 0 && len(s.path) == 1 && s.path[0] == "imports" {
			return applyEdits(data, []textEdit{{start: s.start, end: s.end}})
		}
	}
	return data
}

// defaultRuntimeBackToRunc: a config whose default_runtime_name names a handler
// that is gone is refused by containerd's CRI; with runsc removed, the default
// goes back to containerd's own, runc.
func defaultRuntimeBackToRunc(data []byte) []byte {
	doc, err := parseDocument("config", data)
	if err != nil {
		return data
	}
	var edits []textEdit
	for _, s := range doc.stmts {
		n := len(s.path)
		if s.kind != unstable.KeyValue || n < 2 || s.path[n-1] != "default_runtime_name" || s.path[n-2] != "containerd" {
			continue
		}
		v, _ := lookup(doc.tree, s.path)
		if name, _ := v.(string); name != HandlerRunsc && name != HandlerRunscKVM {
			continue
		}
		if _, still := lookup(doc.tree, append(append([]string{}, s.path[:n-1]...), "runtimes", v.(string))); still {
			continue
		}
		key := dottedKey(s.path[len(s.table):], false)
		edits = append(edits, textEdit{start: s.start, end: s.end, text: matchLineEnds(data, s.indent+key+" = \"runc\" # was "+tomlString(v.(string))+", removed by gvisor-bootstrap uninstall\n")})
	}
	if len(edits) == 0 {
		return data
	}
	return applyEdits(data, edits)
}
