package containerd

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// Drop-in mode (containerd >= 2.0): the handlers live in their own file, which the
// root config imports. containerd 2 deep-merges an imported file's plugin tables
// into the root's; containerd 1.x instead lets a drop-in's plugin section replace
// the root's whole section (losing sandbox_image, SystemdCgroup, registry
// settings), so drop-ins are refused there.

// checkDropinAllowed refuses drop-in mode where it would break the node.
func checkDropinAllowed(v Version, rootVersion int) error {
	if v.Major < 2 {
		return fmt.Errorf("--mode dropin needs containerd >= 2.0, but the node runs containerd %s: containerd 1.x lets a drop-in's CRI section replace the main file's whole CRI section (sandbox image, SystemdCgroup and registry settings would be lost); use --mode inplace", v)
	}
	if rootVersion < 2 {
		return fmt.Errorf("--mode dropin needs a root config with `version = 2` or higher (the drop-in's version must not exceed it), and this one has no version (read as 1); use --mode inplace or add a version to the root config")
	}
	return nil
}

// renderDropin is the drop-in: the root's version (containerd 2.3 refuses a
// drop-in whose version is higher than the root's) and the handlers under the
// naming the plan chose: containerd 2's own names where containerd migrates each
// file on its own (2.3+) or the root uses them; the root's old names where
// containerd 2.0 to 2.2 merge first and migrate once (new names in the drop-in
// would hide the root's runtimes).
func renderDropin(root Dialect, wanted []Handler) []byte {
	d := root
	d.SingleQuotes = false // the drop-in's own style, whatever the root's
	if d.family.Name == "" || d.family.Name == familyLegacy.Name {
		d = d.withFamily(familyV3, "")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s gVisor runtime handlers, imported by containerd's main config.\n", markerPrefix)
	b.WriteString("# Its version must not be higher than the main config's.\n")
	fmt.Fprintf(&b, "version = %d\n\n", d.ConfigVersion)
	b.WriteString(handlerBlock(d, wanted, ""))
	return []byte(b.String())
}

// importCovers reports whether an `imports` entry of the root config at rootPath
// loads the node file p. Relative entries are relative to the root config's
// directory; entries may be globs, as containerd expands them.
func importCovers(entry, rootPath, p string) bool {
	if !filepath.IsAbs(entry) {
		entry = filepath.Join(filepath.Dir(rootPath), entry)
	}
	if entry == p {
		return true
	}
	ok, err := filepath.Match(entry, p)
	return err == nil && ok
}

// ensureImports makes the root config import p: an existing top-level `imports`
// array is extended in place, else `imports = [p]` is written as a top-level key
// before the first table (appended after a table it would be that table's key,
// and containerd would ignore it with only a warning).
func ensureImports(ctx context.Context, doc *document, rootPath, p string, single bool) ([]byte, bool, error) {
	var imp *statement
	for i := range doc.stmts {
		s := &doc.stmts[i]
		if s.kind == unstable.KeyValue && len(s.table) == 0 && len(s.path) == 1 && s.path[0] == "imports" {
			imp = s
		}
	}
	lit := tomlString(p)
	if single && !strings.ContainsAny(p, "'\n\r") {
		lit = "'" + p + "'"
	}
	var e textEdit
	if imp != nil {
		list, ok := doc.tree["imports"].([]any)
		if !ok || !imp.stringArray {
			return nil, false, fmt.Errorf("line %d: `imports` must be an array of paths (strings); fix it so the drop-in can be added", lineOf(doc.data, imp.start))
		}
		for _, x := range list {
			if s, ok := x.(string); ok && importCovers(s, rootPath, p) {
				return doc.data, false, nil
			}
		}
		if imp.lastElemEnd < 0 {
			e = textEdit{start: imp.valueEnd - 1, end: imp.valueEnd - 1, text: lit}
		} else {
			e = textEdit{start: imp.lastElemEnd, end: imp.lastElemEnd, text: ", " + lit}
		}
	} else {
		// After the last top-level key (they all precede the first table), else
		// before the first table, else at the end.
		at := -1
		for _, s := range doc.stmts {
			if s.kind != unstable.KeyValue {
				if at < 0 {
					at = s.start
				}
				break
			}
			at = s.end
		}
		if at < 0 {
			at = len(doc.data)
		}
		text := "imports = [" + lit + "]\n"
		if at > 0 && doc.data[at-1] != '\n' {
			text = "\n" + text
		}
		e = textEdit{start: at, end: at, text: matchLineEnds(doc.data, text)}
	}
	out := applyEdits(doc.data, []textEdit{e})
	after, err := parseDocumentContext(ctx, "edited config", out)
	if err != nil {
		return nil, false, fmt.Errorf("refusing the imports edit, its result does not parse (please report this file): %w", err)
	}
	// Copies of the top-level tables only: nothing below them is changed.
	a, b := maps.Clone(doc.tree), maps.Clone(after.tree)
	got, _ := b["imports"].([]any)
	if len(got) == 0 || got[len(got)-1] != p {
		return nil, false, fmt.Errorf("refusing the imports edit: %s did not end up in `imports` (please report this file)", p)
	}
	delete(a, "imports")
	delete(b, "imports")
	if !treesEqual(a, b) {
		return nil, false, fmt.Errorf("refusing the imports edit: it would change other settings (please report this file): %s", treeDifference(a, b))
	}
	return out, true, nil
}
