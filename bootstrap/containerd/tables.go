package containerd

import "strings"

// family is one naming of the CRI plugin's runtime tables. containerd has used
// three; which one a file must use depends on its `version`, the containerd that
// reads it, and (for version 2 on containerd 2) which tables are already there.
type family struct {
	// Name is a short label for logs and JSON ("cri.v1.runtime").
	Name string
	// Plugin is the path of the plugin table that holds the `containerd` section.
	Plugin []string
}

var (
	// familyV3 is containerd 2's runtime plugin (config version 3 and 4, and
	// version 2 files that already use it, as AKS's containerd 2 images do).
	familyV3 = family{Name: "cri.v1.runtime", Plugin: []string{"plugins", "io.containerd.cri.v1.runtime"}}
	// familyGRPC is containerd 1.x's CRI plugin in config version 2; containerd 2
	// migrates it into familyV3.
	familyGRPC = family{Name: "grpc.v1.cri", Plugin: []string{"plugins", "io.containerd.grpc.v1.cri"}}
	// familyLegacy is config version 1 (or no version): plugins are named by id.
	familyLegacy = family{Name: "cri", Plugin: []string{"plugins", "cri"}}

	allFamilies = []family{familyV3, familyGRPC, familyLegacy}
)

// Runtimes is the path of the runtimes table: <plugin>.containerd.runtimes.
func (f family) Runtimes() []string {
	return append(append([]string{}, f.Plugin...), "containerd", "runtimes")
}

// Handler is the path of one runtime handler's table.
func (f family) Handler(name string) []string { return append(f.Runtimes(), name) }

// header is the TOML table header for path, quoting parts that need it in the
// file's own quote style (single: 'literal', else "basic").
func header(path []string, single bool) string {
	return "[" + dottedKey(path, single) + "]"
}

func dottedKey(path []string, single bool) string {
	parts := make([]string, len(path))
	for i, p := range path {
		parts[i] = tomlKey(p, single)
	}
	return strings.Join(parts, ".")
}

// tomlKey writes a key part bare when TOML allows it, else quoted.
func tomlKey(k string, single bool) string {
	bare := k != ""
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			bare = false
			break
		}
	}
	if bare {
		return k
	}
	if single && !strings.ContainsAny(k, "'\n\r") {
		return "'" + k + "'"
	}
	return tomlString(k)
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range s {
		switch c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if c < 0x20 || c == 0x7f {
				b.WriteString(`\u00`)
				b.WriteByte("0123456789abcdef"[c>>4])
				b.WriteByte("0123456789abcdef"[c&0xf])
			} else {
				b.WriteRune(c)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}
