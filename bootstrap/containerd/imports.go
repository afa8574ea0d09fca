package containerd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// loadedFile is one file of the config containerd loads, in its load order.
type loadedFile struct {
	Path string // node path
	Doc  *document
}

// loadOrder lists the files containerd loads for the main config at mainPath, in
// the order it merges them (containerd 1.7 and 2.x alike): the main file, then a
// breadth-first walk of `imports` — relative entries taken from the importing
// file's directory, globs expanded in lexical order — each file once. override,
// when set, replaces one file's content (a planned write), or removes the file
// when its document is nil. A file that cannot be read or parsed is an error
// naming it: containerd would refuse to start with it.
func (c *Configurator) loadOrder(ctx context.Context, mainPath string, override map[string]*document) ([]loadedFile, error) {
	var out []loadedFile
	seen := map[string]bool{}
	type pend struct {
		path string
		glob bool
	}
	pending := []pend{{path: mainPath}}
	for len(pending) > 0 {
		p := pending[0]
		pending = pending[1:]
		if seen[p.path] {
			continue
		}
		seen[p.path] = true
		var doc *document
		if d, ok := override[p.path]; ok {
			if d == nil {
				continue
			}
			doc = d
		} else {
			data, err := c.Root.ReadFile(p.path)
			if err != nil {
				if os.IsNotExist(err) && (p.glob || c.Version.Major >= 2) {
					// Gone since the glob; or an import containerd 2 skips when
					// missing (1.7 refuses to start: tried with both).
					continue
				}
				return nil, fmt.Errorf("containerd's config imports %s, which cannot be read (containerd would fail to start): %w", c.Root.Path(p.path), err)
			}
			if doc, err = c.parsed(ctx, p.path, data); err != nil {
				return nil, err
			}
		}
		out = append(out, loadedFile{Path: p.path, Doc: doc})
		list, _ := doc.tree["imports"].([]any)
		for _, x := range list {
			entry, ok := x.(string)
			if !ok || entry == "" {
				continue
			}
			entry = filepath.Clean(entry)
			if !filepath.IsAbs(entry) {
				entry = filepath.Join(filepath.Dir(p.path), entry)
			}
			if !strings.Contains(entry, "*") {
				pending = append(pending, pend{path: entry})
				continue
			}
			matches, err := filepath.Glob(c.Root.Path(entry))
			if err != nil {
				continue
			}
			var nodes []string
			for _, m := range matches {
				nodes = append(nodes, c.Root.NodePath(m))
			}
			// Planned new files that the glob covers are loaded too.
			for op, d := range override {
				if d != nil && !seen[op] && !containsStr(nodes, op) {
					if ok, _ := filepath.Match(entry, op); ok {
						nodes = append(nodes, op)
					}
				}
			}
			sort.Strings(nodes)
			for _, n := range nodes {
				pending = append(pending, pend{path: n, glob: true})
			}
		}
	}
	return out, nil
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// ownedKeys are the keys of a managed handler this tool owns; everything else in
// the handler's table belongs to the user.
var ownedKeys = [][]string{{"runtime_type"}, {"runtime_path"}, {"options", "TypeUrl"}, {"options", "ConfigPath"}}

// ForeignHandlerError: a file containerd loads after the one this tool writes
// would replace the tool's gVisor handler (or containerd 1.x would drop it).
// Nothing is written: the operator must fix that file.
type ForeignHandlerError struct {
	Path    string // the file, as a path under the root
	Handler string
	What    string
	Fix     string
}

func (e *ForeignHandlerError) Error() string {
	return fmt.Sprintf("%s %s, so containerd would not serve %q as gVisor; %s (nothing was written)", e.Path, e.What, e.Handler, e.Fix)
}

// foreignOverride finds the first file loaded after ours that would override
// the managed handlers this tool writes into ours. On containerd 2 imported
// plugin tables are deep-merged: a later file setting an owned key (in any
// naming: containerd migrates old names) wins over ours. On containerd 1.x an
// imported file's plugin section replaces the earlier one whole.
func (c *Configurator) foreignOverride(files []loadedFile, ours string) error {
	after := false
	for _, f := range files {
		if f.Path == ours {
			after = true
			continue
		}
		if !after {
			continue
		}
		if c.Version.Major < 2 {
			for _, fam := range allFamilies {
				if _, ok := lookup(f.Doc.tree, fam.Plugin); ok {
					return &ForeignHandlerError{Path: c.Root.Path(f.Path), Handler: HandlerRunsc,
						What: fmt.Sprintf("is imported by containerd's config and has its own [%s] section, which containerd %s lets replace the whole section of the file gvisor-bootstrap writes (%s)", dottedKey(fam.Plugin, false), c.Version, c.Root.Path(ours)),
						Fix:  fmt.Sprintf("move that file's CRI settings into %s and remove them from %s, or stop importing it", c.Root.Path(ours), c.Root.Path(f.Path))}
				}
			}
			continue
		}
		for _, fam := range allFamilies {
			for _, h := range c.managedWanted() {
				tbl, ok := lookup(f.Doc.tree, fam.Handler(h))
				if !ok {
					continue
				}
				m, _ := tbl.(map[string]any)
				for _, k := range ownedKeys {
					if v, set := lookup(m, k); set {
						return &ForeignHandlerError{Path: c.Root.Path(f.Path), Handler: h,
							What: fmt.Sprintf("is loaded after %s and defines %s (%s = %v), which containerd merges over gvisor-bootstrap's", c.Root.Path(ours), dottedKey(fam.Handler(h), false), strings.Join(k, "."), v),
							Fix:  fmt.Sprintf("remove the %q runtime from %s (other keys of it, such as pod_annotations, can go into %s's %q table: gvisor-bootstrap keeps them), then run again", h, c.Root.Path(f.Path), c.Root.Path(ours), h)}
					}
				}
			}
		}
	}
	return nil
}

// managedWanted are the handler names this run registers.
func (c *Configurator) managedWanted() []string {
	var out []string
	for _, h := range c.wanted() {
		out = append(out, h.Name)
	}
	return out
}

// definedBy names the file that defines handler's runtime type in the config
// containerd loads: the last one in the load order that sets it.
func (c *Configurator) definedBy(handler string) string {
	mainPath := c.rootPath()
	files, err := c.loadOrder(context.Background(), mainPath, nil)
	if err != nil {
		return c.Root.Path(mainPath)
	}
	by := ""
	for _, f := range files {
		for _, fam := range allFamilies {
			if _, ok := lookup(f.Doc.tree, append(fam.Handler(handler), "runtime_type")); ok {
				by = f.Path
			}
		}
	}
	if by == "" {
		return ""
	}
	return c.Root.Path(by)
}

// resolveLink follows a node path that is a symlink (some images link
// /etc/containerd/config.toml to a file elsewhere), so that the write replaces the
// target's content instead of turning the link into a regular file. Absolute link
// targets are node paths, resolved under the root.
func (c *Configurator) resolveLink(p string) string {
	for i := 0; i < 8; i++ {
		target, err := os.Readlink(c.Root.LinkPath(p))
		if err != nil {
			return p
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(p), target)
		}
		p = filepath.Clean(target)
	}
	return p
}
