package containerd

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"reflect"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// The runsc runtime as containerd must see it.
const (
	RuntimeType    = "io.containerd.runsc.v1"
	OptionsTypeURL = "io.containerd.runsc.v1.options"
	// HandlerRunsc is the default handler; HandlerRunscKVM the optional second one.
	HandlerRunsc    = "runsc"
	HandlerRunscKVM = "runsc-kvm"
)

// managedHandlers are the runtime handler names this tool owns: their tables are
// rewritten (or removed) wholesale.
var managedHandlers = []string{HandlerRunsc, HandlerRunscKVM}

// markerPrefix starts the comment placed above each handler block we write, so a
// later edit removes the comment together with the block.
const markerPrefix = "# Managed by gvisor-bootstrap:"

// Handler is one runtime handler to register.
type Handler struct {
	Name string
	// OptionsPath is the shim options file (ConfigPath), a node path.
	OptionsPath string
	// RuntimePath is the shim's absolute path when containerd would not find it
	// on its PATH ("" otherwise).
	RuntimePath string
	// Extra are the keys of the user's own table for this handler that this
	// tool does not own (pod_annotations, other options, ...): they are kept.
	Extra map[string]any
}

// withUserKeys carries the keys of an existing handler table (in the dialect's
// family first, else any) that this tool does not own into the wanted handlers.
func withUserKeys(tree map[string]any, d Dialect, wanted []Handler) []Handler {
	out := make([]Handler, len(wanted))
	for i, h := range wanted {
		out[i] = h
		fams := append([]family{d.family}, allFamilies...)
		for _, f := range fams {
			got, ok := lookup(tree, f.Handler(h.Name))
			m, isMap := got.(map[string]any)
			if !ok || !isMap {
				continue
			}
			extra := deepCopy(m).(map[string]any)
			for _, k := range ownedKeys {
				deletePath(extra, k)
			}
			if len(extra) > 0 {
				out[i].Extra = extra
			}
			break
		}
	}
	return out
}

// want is the handler's table as containerd's decoder sees it.
func (h Handler) want() map[string]any {
	m := map[string]any{}
	if h.Extra != nil {
		m = deepCopy(h.Extra).(map[string]any)
	}
	opts, _ := m["options"].(map[string]any)
	if opts == nil {
		opts = map[string]any{}
	}
	opts["TypeUrl"], opts["ConfigPath"] = OptionsTypeURL, h.OptionsPath
	m["runtime_type"], m["options"] = RuntimeType, opts
	if h.RuntimePath != "" {
		m["runtime_path"] = h.RuntimePath
	}
	return m
}

func (h Handler) ownedOnly() map[string]any {
	m := map[string]any{
		"runtime_type": RuntimeType,
		"options": map[string]any{
			"TypeUrl":    OptionsTypeURL,
			"ConfigPath": h.OptionsPath,
		},
	}
	if h.RuntimePath != "" {
		m["runtime_path"] = h.RuntimePath
	}
	return m
}

// textEdit replaces data[start:end] with text.
type textEdit struct {
	start, end int
	text       string
}

// editHandlers returns the config with exactly the wanted handlers registered in
// dialect d and every other managed handler gone, and whether that differs from
// the input. When the file already holds exactly that, the input is returned
// unchanged (no reformatting of our own block). Every result is checked: it parses,
// holds the wanted handlers, and equals the input everywhere else.
func editHandlers(doc *document, d Dialect, wanted []Handler) ([]byte, bool, error) {
	out, changed, err := editDocument(context.Background(), doc, d, wanted)
	if err != nil {
		return nil, false, err
	}
	return out.data, changed, nil
}

// editDocument is editHandlers returning the parsed result (doc itself when
// unchanged): the self-check parsed it already, and a caller that reads the
// result again need not parse a large file twice.
func editDocument(ctx context.Context, doc *document, d Dialect, wanted []Handler) (*document, bool, error) {
	wanted = withUserKeys(doc.tree, d, wanted)
	if satisfied(doc.tree, d, wanted) {
		return doc, false, nil
	}
	if err := refuseUneditable(doc, d, wanted); err != nil {
		return nil, false, err
	}
	if !hasStatements(doc) && len(wanted) > 0 {
		// Missing, empty or only comments: start a minimal config of the dialect's
		// version, keeping any comments.
		data := append([]byte{}, doc.data...)
		if len(data) > 0 && data[len(data)-1] != '\n' {
			data = append(data, '\n')
		}
		data = append(data, fmt.Sprintf("version = %d\n", d.ConfigVersion)...)
		var err error
		if doc, err = parseDocument("new config", data); err != nil {
			return nil, false, err
		}
	}
	_, hasRuntimes := lookup(doc.tree, d.RuntimesPath())
	builtin := d.ListReplacesBuiltins && len(wanted) > 0 && !hasRuntimes
	edits := removals(doc)
	if len(wanted) > 0 {
		edits = append(edits, insertion(doc, d, wanted, builtin, edits))
	}
	out := applyEdits(doc.data, edits)
	outDoc, err := verifyEdit(ctx, doc.tree, out, d, wanted, builtin)
	if err != nil {
		return nil, false, err
	}
	return outDoc, true, nil
}

// refuseUneditable rejects files where a managed handler cannot be rewritten by
// replacing whole statements: handler tables defined inside an inline table or an
// array of tables, or an ancestor of the runtimes table assigned as a value (an
// inline table cannot be extended afterwards).
func refuseUneditable(doc *document, d Dialect, wanted []Handler) error {
	// Only handler tables that exist or are to be written matter; they are few,
	// the statements many (a statement-by-family lookup was a large part of
	// planning a 5 MB config).
	var check [][]string
	for _, m := range managedPaths {
		_, present := lookup(doc.tree, m.path)
		needed := m.family.Name == d.family.Name && len(wanted) > 0
		if present || needed {
			check = append(check, m.path)
		}
	}
	for _, s := range doc.stmts {
		for _, h := range check {
			if s.kind == unstable.ArrayTable && (hasPrefix(s.path, h[:len(h)-1]) || hasPrefix(h, s.path)) {
				return fmt.Errorf("line %d: %s is an array of tables, which containerd cannot read as runtimes; fix the file by hand", lineOf(doc.data, s.start), header(s.path, false))
			}
			if s.kind == unstable.KeyValue && len(s.path) < len(h) && hasPrefix(h, s.path) {
				return fmt.Errorf("line %d: %s is written as an inline value (`%s = ...`), which cannot be extended safely; rewrite it as [table] sections and run again", lineOf(doc.data, s.start), dottedKey(s.path, false), dottedKey(s.path[len(s.table):], false))
			}
		}
	}
	return nil
}

// satisfied reports whether the tree already holds exactly the wanted handlers in
// the dialect's family and no managed handler anywhere else.
func satisfied(tree map[string]any, d Dialect, wanted []Handler) bool {
	want := map[string]Handler{}
	for _, h := range wanted {
		want[h.Name] = h
	}
	for _, f := range allFamilies {
		for _, name := range managedHandlers {
			got, present := lookup(tree, f.Handler(name))
			h, ok := want[name]
			if f.Name == d.family.Name && ok {
				if !present || !reflect.DeepEqual(got, h.want()) {
					return false
				}
			} else if present {
				return false
			}
		}
	}
	return true
}

// managedPath is one managed handler's table in one naming.
type managedPath struct {
	family family
	name   string
	path   []string
}

// managedPaths are the tables of every managed handler in every naming.
var managedPaths = func() []managedPath {
	var out []managedPath
	for _, f := range allFamilies {
		for _, name := range managedHandlers {
			out = append(out, managedPath{family: f, name: name, path: f.Handler(name)})
		}
	}
	return out
}()

// isManaged reports whether path lies under a managed handler of any family.
func isManaged(path []string) bool {
	for _, m := range managedPaths {
		if hasPrefix(path, m.path) {
			return true
		}
	}
	return false
}

// removals returns the edits deleting every statement that defines keys under a
// managed handler: whole [handler] sections (header to last key, with our marker
// comment and the blank lines before it) and dotted keys reaching into a handler
// from a parent table.
func removals(doc *document) []textEdit {
	var edits []textEdit
	stmts := doc.stmts
	for i := 0; i < len(stmts); i++ {
		s := stmts[i]
		if s.kind == unstable.KeyValue {
			if isManaged(s.path) {
				edits = append(edits, textEdit{start: s.start, end: s.end})
			}
			continue
		}
		end := sectionEnd(stmts, i)
		if isManaged(s.path) {
			edits = append(edits, textEdit{start: extendBack(doc.data, s.start), end: end})
			for i+1 < len(stmts) && stmts[i+1].kind == unstable.KeyValue {
				i++
			}
		}
	}
	return edits
}

// sectionEnd is the end of the last statement of the section that header i opens.
func sectionEnd(stmts []statement, i int) int {
	end := stmts[i].end
	for j := i + 1; j < len(stmts) && stmts[j].kind == unstable.KeyValue; j++ {
		end = stmts[j].end
	}
	return end
}

// extendBack moves a removal's start back over our marker comment and the blank
// lines before the removed header, so that removing a block leaves no gap.
func extendBack(data []byte, start int) int {
	for start > 0 {
		prev, _ := lineStart(data, start-1)
		line := strings.TrimSpace(string(data[prev:start]))
		if line != "" && !strings.HasPrefix(line, markerPrefix) {
			break
		}
		start = prev
	}
	return start
}

// insertion places the wanted handlers after the last section under the
// runtimes table (the usual home of runc), or at the end of the file.
func insertion(doc *document, d Dialect, wanted []Handler, builtinRunc bool, removed []textEdit) textEdit {
	runtimes := d.RuntimesPath()
	at, indent, found := len(doc.data), "", false
	for i, s := range doc.stmts {
		if s.kind == unstable.KeyValue || !hasPrefix(s.path, runtimes) || isManaged(s.path) {
			continue
		}
		at, found = sectionEnd(doc.stmts, i), true
		if len(s.path) == len(runtimes)+1 || indent == "" {
			indent = s.indent
		}
	}
	if !found {
		indent = ""
	}
	// An insertion point inside a removed span moves to that span's start.
	for _, r := range removed {
		if at > r.start && at < r.end {
			at = r.start
		}
	}
	var b strings.Builder
	if at > 0 && doc.data[at-1] != '\n' {
		b.WriteString("\n")
	}
	if at > 0 {
		b.WriteString("\n")
	}
	if builtinRunc {
		b.WriteString(builtinRuncBlock(d, indent))
		b.WriteString("\n")
	}
	b.WriteString(handlerBlock(d, wanted, indent))
	// Separate the block from what follows it once the removals are done.
	next := at
	for moved := true; moved; {
		moved = false
		for _, r := range removed {
			if r.start == next && r.end > next {
				next, moved = r.end, true
			}
		}
	}
	if next < len(doc.data) && doc.data[next] != '\n' && doc.data[next] != '\r' {
		b.WriteString("\n")
	}
	return textEdit{start: at, end: at, text: matchLineEnds(doc.data, b.String())}
}

// matchLineEnds writes inserted text with the file's own line ends (CRLF files
// stay CRLF).
func matchLineEnds(data []byte, text string) string {
	if bytes.Contains(data, []byte("\r\n")) {
		return strings.ReplaceAll(text, "\n", "\r\n")
	}
	return text
}

// handlerBlock renders the wanted handlers in dialect d, indented like the
// file's other runtimes.
func handlerBlock(d Dialect, wanted []Handler, indent string) string {
	inner := indent + "  "
	optIndent := ""
	if indent != "" {
		optIndent = inner
	}
	str := func(s string) string {
		if d.SingleQuotes && !strings.ContainsAny(s, "'\n\r") {
			return "'" + s + "'"
		}
		return tomlString(s)
	}
	var b strings.Builder
	for i, h := range wanted {
		if i > 0 {
			b.WriteString("\n")
		}
		path := d.HandlerPath(h.Name)
		fmt.Fprintf(&b, "%s%s gVisor runtime handler %q; it owns runtime_type, runtime_path and options.TypeUrl/ConfigPath, other keys are kept.\n", indent, markerPrefix, h.Name)
		fmt.Fprintf(&b, "%s%s\n", indent, header(path, d.SingleQuotes))
		fmt.Fprintf(&b, "%sruntime_type = %s\n", inner, str(RuntimeType))
		if h.RuntimePath != "" {
			fmt.Fprintf(&b, "%sruntime_path = %s\n", inner, str(h.RuntimePath))
		}
		extraOpts, _ := h.Extra["options"].(map[string]any)
		writeKeys(&b, inner, h.Extra, "options")
		fmt.Fprintf(&b, "%s%s\n", optIndent, header(append(path, "options"), d.SingleQuotes))
		fmt.Fprintf(&b, "%s  TypeUrl = %s\n", optIndent, str(OptionsTypeURL))
		fmt.Fprintf(&b, "%s  ConfigPath = %s\n", optIndent, str(h.OptionsPath))
		writeKeys(&b, optIndent+"  ", extraOpts, "")
	}
	return b.String()
}

// writeKeys writes the user's keys of a handler table (sorted, tables inline),
// skipping one key.
func writeKeys(b *strings.Builder, indent string, m map[string]any, skip string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		if k != skip {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		var buf bytes.Buffer
		enc := toml.NewEncoder(&buf)
		enc.SetTablesInline(true)
		if err := enc.Encode(map[string]any{k: m[k]}); err != nil {
			continue // verifyEdit then refuses the edit: the key would be lost
		}
		for _, line := range strings.Split(strings.TrimRight(buf.String(), "\n"), "\n") {
			b.WriteString(indent + line + "\n")
		}
	}
}

// applyEdits applies non-overlapping edits (insertions before deletions at the
// same offset).
func applyEdits(data []byte, edits []textEdit) []byte {
	sort.SliceStable(edits, func(i, j int) bool {
		if edits[i].start != edits[j].start {
			return edits[i].start < edits[j].start
		}
		return edits[i].end-edits[i].start < edits[j].end-edits[j].start
	})
	var out []byte
	pos := 0
	for _, e := range edits {
		if e.start < pos {
			e.start = pos
		}
		if e.end < e.start {
			e.end = e.start
		}
		out = append(out, data[pos:e.start]...)
		out = append(out, e.text...)
		pos = e.end
	}
	return append(out, data[pos:]...)
}

// verifyEdit proves an edit did what it must and nothing else: the result parses,
// holds the wanted handlers in the dialect's family, and apart from managed
// handlers equals the input key for key, value for value. It returns the parsed
// result.
func verifyEdit(ctx context.Context, before map[string]any, out []byte, d Dialect, wanted []Handler, builtinRunc bool) (*document, error) {
	doc, err := parseDocumentContext(ctx, "edited config", out)
	if err != nil {
		return nil, fmt.Errorf("refusing the edit, its result does not parse (please report this file): %w", err)
	}
	if !satisfied(doc.tree, d, wanted) {
		return nil, fmt.Errorf("refusing the edit: the result does not register the runtimes as wanted (please report this file)")
	}
	a, b := withoutManaged(before), withoutManaged(doc.tree)
	if builtinRunc {
		// containerd 1.x's built-in runc, written out so that it survives.
		runc := d.HandlerPath("runc")
		if got, _ := lookup(b, runc); !reflect.DeepEqual(got, builtinRunc17()) {
			return nil, fmt.Errorf("refusing the edit: the built-in runc runtime was not written as wanted (please report this file)")
		}
		b, _ = withoutPath(b, runc)
	}
	doc.proven = provenEqual{}
	if !treesEqualMemo(a, b, doc.proven) {
		return nil, fmt.Errorf("refusing the edit: it would change settings outside the runsc tables (please report this file): %s", treeDifference(a, b))
	}
	return doc, nil
}

// withoutManaged returns tree without managed handlers; tables left empty on the
// way to them are dropped too. tree is not changed: the result shares every
// subtree off those paths with it (a deep copy of a 5 MB config per check was a
// large part of planning on the kubelet gate's path), so neither may be changed
// afterwards.
func withoutManaged(tree map[string]any) map[string]any {
	for _, m := range managedPaths {
		tree, _ = withoutPath(tree, m.path)
	}
	return tree
}

// withoutPath is deletePath on a copy: m itself when nothing is removed, else a
// copy of the tables on the path (and of nothing else).
func withoutPath(m map[string]any, path []string) (map[string]any, bool) {
	if len(path) == 0 {
		return m, false
	}
	x, ok := m[path[0]]
	if !ok {
		return m, false
	}
	if len(path) == 1 {
		c := maps.Clone(m)
		delete(c, path[0])
		return c, true
	}
	child, ok := x.(map[string]any)
	if !ok {
		return m, false
	}
	nc, changed := withoutPath(child, path[1:])
	if len(nc) == 0 {
		c := maps.Clone(m)
		delete(c, path[0])
		return c, true
	}
	if !changed {
		return m, false
	}
	c := maps.Clone(m)
	c[path[0]] = nc
	return c, true
}

func deletePath(m map[string]any, path []string) {
	if len(path) == 0 {
		return
	}
	if len(path) == 1 {
		delete(m, path[0])
		return
	}
	child, ok := m[path[0]].(map[string]any)
	if !ok {
		return
	}
	deletePath(child, path[1:])
	if len(child) == 0 {
		delete(m, path[0])
	}
}

func deepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		c := make(map[string]any, len(t))
		for k, x := range t {
			c[k] = deepCopy(x)
		}
		return c
	case []any:
		c := make([]any, len(t))
		for i, x := range t {
			c[i] = deepCopy(x)
		}
		return c
	default:
		return v
	}
}

func lineOf(data []byte, off int) int { return strings.Count(string(data[:off]), "\n") + 1 }
