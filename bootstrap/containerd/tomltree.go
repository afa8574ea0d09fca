package containerd

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// The value tree is built from the same expressions the statement index is
// read from, in one pass, because toml.Unmarshal into map[string]any is
// quadratic in the number of tables: its duplicate-key tracker finds a key by
// scanning every entry seen so far (a 5 MB config of registry mirrors took
// seconds per parse, several parses per plan, on the kubelet gate's path).
// treeBuilder applies go-toml's rules (internal/tracker's SeenTracker and the
// generic decoder of decode_fused.go, v2.4) with a map per table instead, and
// decodes integers in other forms and offset date-times through go-toml itself
// (floats and local dates and times as its decoder does), so the tree is the one toml.Unmarshal returns (the tests compare the
// two on the test configs and on generated and fuzzed input).

// seenKind is how a key was defined, as go-toml's tracker records it.
type seenKind uint8

const (
	// seenValue is a scalar, array or inline table: it cannot be extended.
	seenValue seenKind = iota + 1
	// seenDotted is a table made by a dotted key: only dotted keys extend it.
	seenDotted
	// seenTable is a table made by a [header] (explicit) or on the way to one.
	seenTable
	// seenArrayTable is an array of tables made by [[header]].
	seenArrayTable
	// seenAnonymous is an element of an array (the parent of its content).
	seenAnonymous
)

func (k seenKind) String() string {
	switch k {
	case seenValue:
		return "value"
	case seenDotted:
		return "kv-table"
	case seenTable:
		return "table"
	case seenArrayTable:
		return "array-table"
	case seenAnonymous:
		return "anonymous"
	}
	return "invalid"
}

// seenKey is one key the document defined; its sub-keys (for an array of
// tables: those of its current element) are in few, or in many once there are
// more than a handful (most tables of a large config have one or two keys: a
// map each was a large part of the parse).
type seenKey struct {
	kind     seenKind
	explicit bool
	few      []namedSeen
	many     map[string]*seenKey
	// m is the key's table in the value tree (an array of tables: its last
	// element), so that a [header] is walked once, not in both trees; nil
	// under an inline table, which no header can reach.
	m map[string]any
}

type namedSeen struct {
	name string
	key  *seenKey
}

// scalarSeen stands for every key whose value cannot hold keys (all but inline
// tables): such an entry is only ever found, never changed or extended.
var scalarSeen = &seenKey{kind: seenValue}

func (s *seenKey) find(name string) *seenKey {
	if s.many != nil {
		return s.many[name]
	}
	for _, c := range s.few {
		if c.name == name {
			return c.key
		}
	}
	return nil
}

func (s *seenKey) create(name string, kind seenKind, explicit bool) *seenKey {
	n := &seenKey{kind: kind, explicit: explicit}
	s.link(name, n)
	return n
}

func (s *seenKey) link(name string, n *seenKey) {
	const fewMax = 8
	switch {
	case s.many != nil:
		s.many[name] = n
	case len(s.few) < fewMax:
		s.few = append(s.few, namedSeen{name, n})
	default:
		s.many = make(map[string]*seenKey, 2*fewMax)
		for _, c := range s.few {
			s.many[c.name] = c.key
		}
		s.many[name] = n
		s.few = nil
	}
}

// forget drops every sub-key (a new element of an array of tables).
func (s *seenKey) forget() { s.few, s.many = nil, nil }

// treeBuilder turns a document's expressions into its value tree.
type treeBuilder struct {
	root    map[string]any
	cur     map[string]any
	seen    *seenKey
	curSeen *seenKey
	// names interns key names: a large config repeats the same few.
	names map[string]string
}

func newTreeBuilder() *treeBuilder {
	root := map[string]any{}
	seen := &seenKey{kind: seenTable, m: root}
	return &treeBuilder{root: root, cur: root, seen: seen, curSeen: seen, names: map[string]string{}}
}

// intern returns name as a string, shared with every earlier equal name. The
// names that repeat come first and are few; a large config's many unique names
// (one per registry mirror) are not kept.
func (b *treeBuilder) intern(name []byte) string {
	if s, ok := b.names[string(name)]; ok {
		return s
	}
	s := string(name)
	if len(b.names) < 1<<12 {
		b.names[s] = s
	}
	return s
}

// treeError is a document that parses but that go-toml refuses: a key defined
// twice, a value that is no valid number or date, ...; at where.
type treeError struct {
	where unstable.Range
	msg   string
}

func (e *treeError) Error() string { return e.msg }

// add takes one top-level expression (a Table, ArrayTable or KeyValue) whose
// key's parts are parts (interned), starting at offset key.
func (b *treeBuilder) add(n *unstable.Node, parts []string, key int) error {
	where := unstable.Range{Offset: uint32(key), Length: 1}
	switch n.Kind {
	case unstable.Table:
		if err := b.checkTable(parts); err != nil {
			return &treeError{where: where, msg: "toml: " + err.Error()}
		}
		b.cur = b.curSeen.m
	case unstable.ArrayTable:
		if err := b.checkArrayTable(parts); err != nil {
			return &treeError{where: where, msg: "toml: " + err.Error()}
		}
		b.cur = b.curSeen.m
	case unstable.KeyValue:
		if err := b.checkKeyValue(b.curSeen, parts, n.Value()); err != nil {
			return &treeError{where: where, msg: "toml: " + err.Error()}
		}
		v, err := b.value(n.Value())
		if err != nil {
			return err
		}
		cur := b.cur
		for _, p := range parts[:len(parts)-1] {
			cur = childTable(cur, p)
		}
		cur[parts[len(parts)-1]] = v
	}
	return nil
}

// checkTable is SeenTracker.CheckTable.
func (b *treeBuilder) checkTable(parts []string) error {
	parent := b.seen
	for i, name := range parts {
		e := parent.find(name)
		if i == len(parts)-1 {
			if e == nil {
				b.curSeen = parent.create(name, seenTable, true)
				b.curSeen.m = childTable(parent.m, name)
				return nil
			}
			switch e.kind {
			case seenTable:
				if e.explicit {
					return fmt.Errorf("table %s already exists", name)
				}
				e.explicit = true
				b.curSeen = e
				return nil
			case seenDotted:
				return fmt.Errorf("table %s already exists as defined by a dotted key", name)
			case seenArrayTable:
				return fmt.Errorf("table %s already exists as an array of tables", name)
			default:
				return fmt.Errorf("key %s should be a table, not a %s", name, e.kind)
			}
		}
		var err error
		if parent, err = intermediate(parent, e, name); err != nil {
			return err
		}
	}
	return errors.New("table without a key")
}

// checkArrayTable is SeenTracker.CheckArrayTable; it appends the new element
// to the array (decoder.anyArrayTableParts).
func (b *treeBuilder) checkArrayTable(parts []string) error {
	parent := b.seen
	for i, name := range parts {
		e := parent.find(name)
		if i == len(parts)-1 {
			var s []any
			if e == nil {
				e = parent.create(name, seenArrayTable, true)
			} else if e.kind != seenArrayTable {
				return fmt.Errorf("key %s already exists as a %s, but should be an array table", name, e.kind)
			} else {
				// A new element: its keys may be defined again.
				e.forget()
				s, _ = parent.m[name].([]any)
			}
			e.m = map[string]any{}
			parent.m[name] = append(s, e.m)
			b.curSeen = e
			return nil
		}
		var err error
		if parent, err = intermediate(parent, e, name); err != nil {
			return err
		}
	}
	return errors.New("array table without a key")
}

// intermediate is a header's key part before the last: a table on the way.
func intermediate(parent, e *seenKey, name string) (*seenKey, error) {
	if e == nil {
		e = parent.create(name, seenTable, false)
		e.m = childTable(parent.m, name)
		return e, nil
	}
	switch e.kind {
	case seenTable, seenArrayTable, seenDotted:
		return e, nil
	}
	return nil, fmt.Errorf("key %s already exists as a value", name)
}

// checkKeyValue is SeenTracker.CheckKeyValue followed by CheckValueUnder.
func (b *treeBuilder) checkKeyValue(parent *seenKey, parts []string, v *unstable.Node) error {
	for i, name := range parts {
		e := parent.find(name)
		if i == len(parts)-1 {
			if e != nil {
				return fmt.Errorf("key %s is already defined", name)
			}
			if v.Kind != unstable.InlineTable {
				parent.link(name, scalarSeen)
				return b.checkValue(scalarSeen, v)
			}
			return b.checkValue(parent.create(name, seenValue, false), v)
		}
		if e == nil {
			e = parent.create(name, seenDotted, false)
			if parent.m != nil {
				e.m = childTable(parent.m, name)
			}
		} else if e.kind != seenDotted {
			return fmt.Errorf("key %s is already defined", name)
		}
		parent = e
	}
	return errors.New("key/value without a key")
}

// checkValue is SeenTracker's checkValue: no key twice in an inline table,
// however deep in arrays and inline tables.
func (b *treeBuilder) checkValue(e *seenKey, v *unstable.Node) error {
	switch v.Kind {
	case unstable.InlineTable:
		var parts []string
		for it := v.Children(); it.Next(); {
			kv := it.Node()
			parts = parts[:0]
			for k := kv.Key(); k.Next(); {
				parts = append(parts, b.intern(k.Node().Data))
			}
			if err := b.checkKeyValue(e, parts, kv.Value()); err != nil {
				return err
			}
		}
	case unstable.Array:
		for it := v.Children(); it.Next(); {
			c := it.Node()
			if c.Kind == unstable.InlineTable || c.Kind == unstable.Array {
				// Not reachable by name: never linked into e.
				if err := b.checkValue(&seenKey{kind: seenAnonymous}, c); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// childTable is decoder.anyChildTable: the table at name, created when absent;
// in an array of tables, its last element.
func childTable(cur map[string]any, name string) map[string]any {
	switch v := cur[name].(type) {
	case map[string]any:
		return v
	case []any:
		if len(v) > 0 {
			if last, ok := v[len(v)-1].(map[string]any); ok {
				return last
			}
		}
	}
	nm := map[string]any{}
	cur[name] = nm
	return nm
}

// value decodes a value node (decoder.decodeAny).
func (b *treeBuilder) value(n *unstable.Node) (any, error) {
	switch n.Kind {
	case unstable.String:
		return string(n.Data), nil
	case unstable.Bool:
		return n.Data[0] == 't', nil
	case unstable.Integer:
		if i, ok := plainInteger(n.Data); ok {
			return i, nil
		}
		return b.scalar(n)
	case unstable.Float:
		if f, ok := tomlFloat(n.Data); ok {
			return f, nil
		}
		return b.scalar(n)
	// The local date and time types decode themselves exactly as go-toml's
	// decoder does; an error is reported through it (b.scalar).
	case unstable.LocalDate:
		var d toml.LocalDate
		if d.UnmarshalText(n.Data) == nil {
			return d, nil
		}
		return b.scalar(n)
	case unstable.LocalTime:
		var d toml.LocalTime
		if d.UnmarshalText(n.Data) == nil {
			return d, nil
		}
		return b.scalar(n)
	case unstable.LocalDateTime:
		var d toml.LocalDateTime
		if d.UnmarshalText(n.Data) == nil {
			return d, nil
		}
		return b.scalar(n)
	case unstable.Array:
		count := 0
		for it := n.Children(); it.Next(); {
			if it.Node().Kind != unstable.Comment {
				count++
			}
		}
		s := make([]any, 0, count)
		for it := n.Children(); it.Next(); {
			c := it.Node()
			if c.Kind == unstable.Comment {
				continue
			}
			v, err := b.value(c)
			if err != nil {
				return nil, err
			}
			s = append(s, v)
		}
		return s, nil
	case unstable.InlineTable:
		count := 0
		for it := n.Children(); it.Next(); {
			count++
		}
		m := make(map[string]any, count)
		for it := n.Children(); it.Next(); {
			kv := it.Node()
			cur := m
			key := kv.Key()
			for key.Next() {
				name := b.intern(key.Node().Data)
				if key.IsLast() {
					v, err := b.value(kv.Value())
					if err != nil {
						return nil, err
					}
					cur[name] = v
					break
				}
				cur = childTable(cur, name)
			}
		}
		return m, nil
	default:
		return b.scalar(n)
	}
}

// plainInteger decodes a decimal integer written without sign, underscores or
// leading zeros, exactly as go-toml does; ok is false for any other form.
func plainInteger(raw []byte) (int64, bool) {
	if len(raw) == 0 || len(raw) > 18 || (raw[0] == '0' && len(raw) > 1) {
		return 0, false
	}
	for _, c := range raw {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	i, err := strconv.ParseInt(string(raw), 10, 64)
	return i, err == nil
}

// tomlFloat is go-toml's parseFloat (inf and nan by name, underscores dropped,
// strconv for the rest); ok is false where it would fail.
func tomlFloat(raw []byte) (float64, bool) {
	i := 0
	if len(raw) > 0 && (raw[0] == '+' || raw[0] == '-') {
		i = 1
	}
	if len(raw) == i+3 {
		switch raw[i] {
		case 'i':
			if raw[0] == '-' {
				return math.Inf(-1), true
			}
			return math.Inf(1), true
		case 'n':
			return math.NaN(), true
		}
	}
	s := string(raw)
	if strings.IndexByte(s, '_') >= 0 {
		s = strings.ReplaceAll(s, "_", "")
	}
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil
}

// scalar decodes a number or date through go-toml itself (their rules —
// underscores, bases, range, calendar — are go-toml's, and such values are
// few in a containerd config).
func (b *treeBuilder) scalar(n *unstable.Node) (any, error) {
	doc := append([]byte("v="), n.Data...)
	var m map[string]any
	if err := toml.Unmarshal(doc, &m); err != nil {
		msg := err.Error()
		var de *toml.DecodeError
		if errors.As(err, &de) {
			msg = de.Error()
		}
		return nil, &treeError{where: n.Raw, msg: msg}
	}
	v, ok := m["v"]
	if !ok {
		return nil, &treeError{where: n.Raw, msg: fmt.Sprintf("toml: cannot decode the %s value %q", n.Kind, n.Data)}
	}
	return v, nil
}
