package containerd

import (
	"os"
	"path/filepath"
	"sort"
)

// importedFiles lists the node files a root config imports (globs expanded under
// the root, relative entries taken from the root config's directory), in the
// order containerd merges them.
func (c *Configurator) importedFiles(tree map[string]any) []string {
	list, _ := tree["imports"].([]any)
	var out []string
	seen := map[string]bool{}
	for _, x := range list {
		entry, ok := x.(string)
		if !ok || entry == "" {
			continue
		}
		if !filepath.IsAbs(entry) {
			entry = filepath.Join(filepath.Dir(c.Containerd.ConfigPath), entry)
		}
		matches, err := filepath.Glob(c.Root.Path(entry))
		if err != nil {
			continue
		}
		sort.Strings(matches)
		for _, m := range matches {
			p := c.Root.NodePath(m)
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return out
}

// foreignHandlers reports imported files, other than our drop-in, that define a
// managed handler: containerd 2 merges them over the main config, so their
// version of the handler wins over ours.
func (c *Configurator) foreignHandlers(tree map[string]any) []string {
	var out []string
	for _, p := range c.importedFiles(tree) {
		if p == c.Containerd.DropinPath {
			continue
		}
		data, err := c.Root.ReadFile(p)
		if err != nil {
			continue
		}
		doc, err := parseDocument(p, data)
		if err != nil {
			continue
		}
		for _, f := range allFamilies {
			for _, h := range managedHandlers {
				if _, ok := lookup(doc.tree, f.Handler(h)); ok && !contains(out, p) {
					out = append(out, p)
				}
			}
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
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
