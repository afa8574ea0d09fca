package containerd

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/pelletier/go-toml/v2/unstable"
)

// statement is one top-level TOML expression with the bytes it occupies: whole
// lines, from the start of its first line to just after the newline that ends it
// (a trailing comment included).
type statement struct {
	kind unstable.Kind // Table, ArrayTable or KeyValue
	// path is the table path of a header, or the full path of a key/value (the
	// enclosing table's path plus the dotted key).
	path []string
	// table is the enclosing table's path (key/values) or the header's own path.
	table []string
	// value is the kind of a key/value's value (InlineTable, Array, String, ...).
	value      unstable.Kind
	start, end int
	// valueEnd is where a key/value's value ends. For an array value,
	// lastElemEnd is the end of its last element (-1: empty array) and
	// stringArray reports that every element is a plain string.
	valueEnd    int
	lastElemEnd int
	stringArray bool
	// indent is the whitespace before the statement on its first line.
	indent string
	// singleQuoted and doubleQuoted count a header's or key's 'literal' and
	// "basic" quoted parts.
	singleQuoted, doubleQuoted int
}

// document is a parsed config: its bytes, its statements in order, and its value
// tree (as containerd's TOML decoder sees it).
type document struct {
	data  []byte
	stmts []statement
	tree  map[string]any
	// proven are its tables that the edit's self-check found equal to those
	// of the document it was edited from.
	proven provenEqual
}

// TOMLError is invalid TOML with the position containerd's users need to fix it.
type TOMLError struct {
	Path         string
	Line, Column int
	Msg          string
}

func (e *TOMLError) Error() string {
	return fmt.Sprintf("%s: invalid TOML at line %d, column %d: %s; fix the file (nothing was changed)", e.Path, e.Line, e.Column, e.Msg)
}

// parseDocument validates data as TOML, records every statement's position and
// builds the value tree, in one pass over the parser's expressions (tomltree.go).
// name is used in errors.
func parseDocument(name string, data []byte) (*document, error) {
	return parseDocumentContext(context.Background(), name, data)
}

// parseDocumentContext is parseDocument that stops when ctx is done (SIGTERM,
// the unit's start timeout): a large file is read expression by expression.
func parseDocumentContext(ctx context.Context, name string, data []byte) (*document, error) {
	// At most one statement per line: no growing (and copying) of a large index.
	doc := &document{data: data, stmts: make([]statement, 0, bytes.Count(data, []byte("\n"))+1)}
	var p unstable.Parser
	p.Reset(data)
	tb := newTreeBuilder()
	var table []string
	for i := 0; p.NextExpression(); i++ {
		if i%1024 == 1023 && ctx.Err() != nil {
			return nil, stopped(ctx, "read "+name)
		}
		n := p.Expression()
		if n.Kind != unstable.Table && n.Kind != unstable.ArrayTable && n.Kind != unstable.KeyValue {
			continue
		}
		keys, first, single, double := keyParts(data, n.Key(), tb.intern)
		if err := tb.add(n, keys, first); err != nil {
			var te *treeError
			if errors.As(err, &te) {
				sh := p.Shape(te.where)
				return nil, &TOMLError{Path: name, Line: sh.Start.Line, Column: sh.Start.Column, Msg: te.msg}
			}
			return nil, fmt.Errorf("%s: invalid TOML: %w (nothing was changed)", name, err)
		}
		switch n.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = keys
			s := statement{kind: n.Kind, path: keys, table: keys, singleQuoted: single, doubleQuoted: double}
			s.start, s.indent = lineStart(data, first)
			s.end = lineEnd(data, first)
			doc.stmts = append(doc.stmts, s)
		case unstable.KeyValue:
			v := n.Value()
			s := statement{kind: n.Kind, table: table, value: v.Kind, singleQuoted: single, doubleQuoted: double, lastElemEnd: -1}
			s.path = append(append(make([]string, 0, len(table)+len(keys)), table...), keys...)
			off := int(n.Raw.Offset)
			s.start, s.indent = lineStart(data, off)
			s.end = lineEnd(data, int(n.Raw.Offset+n.Raw.Length))
			s.valueEnd = int(n.Raw.Offset + n.Raw.Length)
			if v.Kind == unstable.Array {
				s.stringArray = true
				for it := v.Children(); it.Next(); {
					c := it.Node()
					switch c.Kind {
					case unstable.Comment:
					case unstable.String:
						if e := int(c.Raw.Offset + c.Raw.Length); e > s.lastElemEnd {
							s.lastElemEnd = e
						}
					default:
						s.stringArray = false
					}
				}
			}
			doc.stmts = append(doc.stmts, s)
		}
	}
	if err := p.Error(); err != nil {
		var pe *unstable.ParserError
		if errors.As(err, &pe) {
			sh := p.Shape(p.Range(pe.Highlight))
			return nil, &TOMLError{Path: name, Line: sh.Start.Line, Column: sh.Start.Column, Msg: "toml: " + pe.Message}
		}
		return nil, fmt.Errorf("%s: invalid TOML: %w (nothing was changed)", name, err)
	}
	doc.tree = tb.root
	return doc, nil
}

// keyParts returns a key's decoded parts, the offset of its first part and how
// many parts are 'literal' and "basic" quoted.
func keyParts(data []byte, it unstable.Iterator, intern func([]byte) string) (parts []string, first, single, double int) {
	first = -1
	n := 0
	for c := it; c.Next(); {
		n++
	}
	parts = make([]string, 0, n)
	for it.Next() {
		k := it.Node()
		if first < 0 {
			first = int(k.Raw.Offset)
		}
		if k.Raw.Length > 0 {
			switch data[k.Raw.Offset] {
			case '\'':
				single++
			case '"':
				double++
			}
		}
		parts = append(parts, intern(k.Data))
	}
	return parts, first, single, double
}

// lineStart returns the offset of the start of the line holding off and the
// line's indentation.
func lineStart(data []byte, off int) (int, string) {
	i := bytes.LastIndexByte(data[:off], '\n') + 1
	j := i
	for j < off && (data[j] == ' ' || data[j] == '\t') {
		j++
	}
	return i, string(data[i:j])
}

// lineEnd returns the offset just after the newline ending the line holding off
// (or len(data) at end of input).
func lineEnd(data []byte, off int) int {
	if off >= len(data) {
		return len(data)
	}
	i := bytes.IndexByte(data[off:], '\n')
	if i < 0 {
		return len(data)
	}
	return off + i + 1
}

// stopped is the error of work that ctx ended (SIGTERM, the unit's start
// timeout) before it finished.
func stopped(ctx context.Context, what string) error {
	return fmt.Errorf("%s: stopped before it finished (%w); nothing was written", what, context.Cause(ctx))
}

// hasPrefix reports whether path starts with prefix.
func hasPrefix(path, prefix []string) bool {
	if len(path) < len(prefix) {
		return false
	}
	for i := range prefix {
		if path[i] != prefix[i] {
			return false
		}
	}
	return true
}

// lookup returns the value at path in a decoded tree.
func lookup(tree map[string]any, path []string) (any, bool) {
	var cur any = tree
	for _, k := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		cur, ok = m[k]
		if !ok {
			return nil, false
		}
	}
	return cur, true
}
