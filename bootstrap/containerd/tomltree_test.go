package containerd

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// treeCases are inputs on the edges of go-toml's rules: every kind of value,
// dotted keys, arrays of tables, and the redefinitions it refuses.
var treeCases = []string{
	"",
	"a = 1\nb = -2\nc = +3\nd = 1_000\ne = 0x_dead\nf = 0xDEADbeef\ng = 0o755\nh = 0b1101\ni = 9223372036854775807\nj = 0\n",
	"a = 9223372036854775808\n",
	"a = -9223372036854775808\n",
	"a = 012\n",
	"a = 1.5\nb = -0.0\nc = 1e10\nd = 6.626e-34\ne = inf\nf = -inf\ng = nan\nh = +nan\ni = 1_000.000_1\n",
	"a = 1979-05-27T07:32:00Z\nb = 1979-05-27T00:32:00.999999-07:00\nc = 1979-05-27 07:32:00\nd = 1979-05-27\ne = 07:32:00\nf = 00:32:00.999999\n",
	"a = 1979-02-30\n",
	"a = 1979-05-27T25:00:00\n",
	"a = true\nb = false\n",
	"s = \"tab\\there \\u00e9 \\U0001F600\"\nl = 'C:\\path'\nm = \"\"\"\nline\\\n  joined\"\"\"\nn = '''\nraw\n'''\n",
	"a = []\nb = [1, [2, [3, \"x\"]], {c = 1}]\nc = [ # comment\n  1,\n  2, # more\n]\n",
	"t = {}\nu = {a.b = 1, a.c = {d = [1]}}\n",
	"u = {a = 1, a = 2}\n",
	"u = {a.b = 1, a = 2}\n",
	"u = [{a = 1, a = 2}]\n",
	"u = [[{a = 1}, {a = 1}]]\n",
	"a.b.c = 1\na.b.d = 2\n[x]\ny.z = 1\n",
	"a.b = 1\n[a]\n",
	"a.b = 1\n[a.b]\n",
	"a.b = 1\n[a.c]\n",
	"[a]\nb.c = 1\n[a.b.d]\n",
	"[a.b]\n[a]\nb.c = 1\n",
	"[a.b]\nx = 1\n[a]\ny = 2\n",
	"[a]\n[a]\n",
	"[a]\nb = 1\n[a.b]\n",
	"a = {b = 1}\n[a.c]\n",
	"a = 1\na = 2\n",
	"[[a]]\nx = 1\n[[a]]\nx = 2\n[a.b]\ny = 1\n[[a]]\n[a.b]\ny = 2\n",
	"[[a.b]]\nx = 1\n[a]\ny = 2\n[[a.b]]\n",
	"[[a]]\n[a]\n",
	"[a]\n[[a]]\n",
	"a = []\n[[a]]\n",
	"[[a]]\n[[a.b]]\n[[a.b]]\n[[a]]\n[[a.b]]\nz = 1\n",
	"[[a]]\nb = [1]\n[a.b]\n",
	"[[a]]\nb.c = 1\n[a.b.d]\ne = 1\n[[a]]\n[a.b.d]\n[[a.b.f]]\n",
	"[a]\nb.c.d = 1\n[a.b.c.e]\n[a.b]\n",
	"[a]\nb.c.d = 1\n[a.b.c]\n",
	"x = {a = {b = 1}}\n[x.a]\n",
	"[[a]]\n[[a]]\nb = 1\n[[a.c]]\n[a]\n",
	"[\"quoted key\".'lit'.bare]\n\"\" = 1\n",
	"a = \"\"\"x\"\"\"\n",
	"[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n  SystemdCgroup = true\n",
	"version = 2\r\n[a]\r\nb = 1\r\n",
	"a = 1 # x\nb = [\n]\n",
	"x = " + strings.Repeat("[", 500) + strings.Repeat("]", 500) + "\n",
}

// treeInputs are the configs and edge cases the tree is compared on.
func treeInputs(t testing.TB) [][]byte {
	var out [][]byte
	for _, glob := range []string{"testdata/*.toml", "testdata/golden/*"} {
		files, _ := filepath.Glob(glob)
		for _, p := range files {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, data)
		}
	}
	for _, s := range treeCases {
		out = append(out, []byte(s))
	}
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 60; i++ {
		out = append(out, []byte(randomConfig(r, 1+i%2)))
	}
	out = append(out, randomScalars(r, 2000)...)
	return out
}

// unstableAccepts reports whether go-toml's position parser reads data (the
// editor refuses what it cannot locate statements in, whatever the decoder says).
func unstableAccepts(data []byte) bool {
	var p unstable.Parser
	p.Reset(data)
	for p.NextExpression() {
	}
	return p.Error() == nil
}

// checkTreeMatchesUnmarshal: parseDocument accepts exactly what toml.Unmarshal
// (and the position parser) accepts, and its tree is Unmarshal's, types included.
func checkTreeMatchesUnmarshal(t *testing.T, data []byte) {
	t.Helper()
	var want map[string]any
	werr := toml.Unmarshal(data, &want)
	doc, err := parseDocument("input", data)
	if !unstableAccepts(data) {
		if err == nil {
			t.Fatalf("accepted what the position parser refuses:\n%s", data)
		}
		return
	}
	if (werr == nil) != (err == nil) {
		t.Fatalf("toml.Unmarshal: %v; parseDocument: %v\ninput:\n%s", werr, err, data)
	}
	if err != nil {
		return
	}
	if want == nil {
		want = map[string]any{}
	}
	// treesEqual, not go-cmp: go-cmp takes minutes on deeply nested arrays.
	if !treesEqual(want, doc.tree) {
		diff := "(too deep to diff)"
		if len(data) < 4<<10 && !strings.Contains(string(data), "[[[[[") {
			diff = cmp.Diff(want, doc.tree, cmpopts.EquateNaNs())
		}
		t.Fatalf("tree differs from toml.Unmarshal's (-want +got):\n%s\ninput:\n%s", diff, data)
	}
}

func TestTreeMatchesUnmarshal(t *testing.T) {
	inputs := append(treeInputs(t), bigConfig(64<<10, 30))
	refused := 0
	for _, data := range inputs {
		if err := toml.Unmarshal(data, new(map[string]any)); err != nil {
			refused++
		}
		t.Run("", func(t *testing.T) { checkTreeMatchesUnmarshal(t, data) })
	}
	// The comparison covers both sides of the rules.
	if refused < 10 || refused > len(inputs)-50 {
		t.Errorf("%d of %d inputs refused by toml.Unmarshal: the cases no longer cover both sides", refused, len(inputs))
	}
}

func TestTreeErrorHasPosition(t *testing.T) {
	_, err := parseDocument("f.toml", []byte("[a]\nb = 1\n\n  b = 2\n"))
	te, ok := err.(*TOMLError)
	if !ok || te.Line != 4 || te.Column != 3 || !strings.Contains(te.Msg, "key b is already defined") {
		t.Fatalf("err = %#v, want a TOMLError at line 4 column 3", err)
	}
	_, err = parseDocument("f.toml", []byte("a = 1\nb = 1979-02-30\n"))
	te, ok = err.(*TOMLError)
	if !ok || te.Line != 2 || te.Column != 5 {
		t.Fatalf("err = %#v, want a TOMLError at line 2 column 5", err)
	}
}

// FuzzTreeMatchesUnmarshal compares the tree with toml.Unmarshal's on
// arbitrary input (go test -fuzz FuzzTreeMatchesUnmarshal).
func FuzzTreeMatchesUnmarshal(f *testing.F) {
	for _, data := range treeInputs(f) {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkTreeMatchesUnmarshal(t, data)
	})
}

// treeDifference names the place two trees differ, also in a deeply nested
// array (where go-cmp's diff does not end).
func TestTreeDifference(t *testing.T) {
	parse := func(s string) map[string]any {
		doc, err := parseDocument("t", []byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return doc.tree
	}
	deep := func(leaf string) string {
		return "[a.b]\nx = " + strings.Repeat("[", 5000) + leaf + strings.Repeat("]", 5000) + "\n"
	}
	for _, c := range []struct{ a, b, want string }{
		{"[a]\nx = 1\ny = 2\n", "[a]\nx = 1\ny = 3\n", "a.y was 2 (int64), would be 3 (int64)"},
		{"[a]\nx = 1\n", "[a]\nx = 1\n[b]\n", "b was absent, would be a table of 0 keys"},
		{"x = [1, 2]\n", "x = [1, '2']\n", "x.[1] was 2 (int64), would be 2 (string)"},
		{deep("1"), deep("2"), "a.b.x.[0].[0].(4993 more).[0].[0].[0].[0].[0] was 1 (int64), would be 2 (int64)"},
	} {
		a, b := parse(c.a), parse(c.b)
		if treesEqual(a, b) {
			t.Fatalf("equal: %q %q", c.a, c.b)
		}
		got := treeDifference(a, b)
		if got != c.want {
			t.Errorf("treeDifference = %q, want %q", got, c.want)
		}
	}
}

// randomScalars are documents of one number, date or time each, in many forms
// (some out of range or invalid: refused by both).
func randomScalars(r *rand.Rand, n int) [][]byte {
	digits := func(k int) string {
		var b strings.Builder
		for i := 0; i < k; i++ {
			b.WriteByte(byte('0' + r.IntN(10)))
		}
		return b.String()
	}
	var out [][]byte
	for i := 0; i < n; i++ {
		var s string
		switch r.IntN(9) {
		case 0:
			s = fmt.Sprintf("%d%s.%s", 1+r.IntN(9), digits(r.IntN(20)), digits(1+r.IntN(20)))
		case 1:
			s = fmt.Sprintf("%d.%se%+d", 1+r.IntN(9), digits(1+r.IntN(17)), r.IntN(700)-350)
		case 2:
			s = fmt.Sprintf("-%d_%s.%s_%s", 1+r.IntN(9), digits(3), digits(2), digits(1+r.IntN(3)))
		case 3:
			s = []string{"inf", "+inf", "-inf", "nan", "+nan", "-nan", "0.0", "-0.0", "1e0", "5e-324", "1.7976931348623157e308"}[r.IntN(11)]
		case 4:
			s = fmt.Sprintf("%d", r.Int64()-r.Int64())
		case 5:
			s = fmt.Sprintf("%04d-%02d-%02d", r.IntN(10000), 1+r.IntN(12), 1+r.IntN(28))
		case 6:
			s = fmt.Sprintf("%02d:%02d:%02d.%s", r.IntN(24), r.IntN(60), r.IntN(60), digits(1+r.IntN(12)))
		case 7:
			s = fmt.Sprintf("%04d-%02d-%02dT%02d:%02d:%02d", 1+r.IntN(9999), 1+r.IntN(12), 1+r.IntN(28), r.IntN(24), r.IntN(60), r.IntN(60))
		default:
			s = fmt.Sprintf("%04d-%02d-%02d %02d:%02d:%02d%+03d:%02d", 1+r.IntN(9999), 1+r.IntN(12), 1+r.IntN(28), r.IntN(24), r.IntN(60), r.IntN(60), r.IntN(24)-12, r.IntN(60))
		}
		out = append(out, []byte(fmt.Sprintf("v = [%s]\nw = %s\n", s, s)))
	}
	return out
}
