package containerd

import (
	"fmt"
	"strings"
)

// containerd 1.x decodes the config's runtimes table over its defaults by
// replacing the whole table: a file that lists only runsc leaves containerd with
// runsc alone, and every pod using the default runtime fails. Tried here with
// containerd 1.7.35 (`config dump` of an empty file versus one with only runsc);
// containerd 2 merges instead. So on 1.x, when the file lists no runtimes, the
// built-in runc is written out next to runsc, with the values `containerd config
// default` of 1.7 prints for it (zero values omitted: they decode the same).

// builtinRunc17 is containerd 1.7's built-in runc runtime as its decoder sees it.
func builtinRunc17() map[string]any {
	return map[string]any{
		"runtime_type": "io.containerd.runc.v2",
		"sandbox_mode": "podsandbox",
		"options": map[string]any{
			"BinaryName": "", "CriuImagePath": "", "CriuPath": "", "CriuWorkPath": "",
			"IoGid": int64(0), "IoUid": int64(0), "NoNewKeyring": false, "NoPivotRoot": false,
			"Root": "", "ShimCgroup": "", "SystemdCgroup": false,
		},
	}
}

// builtinRuncBlock renders builtinRunc17 in the file's dialect.
func builtinRuncBlock(d Dialect, indent string) string {
	inner := indent + "  "
	optIndent := ""
	if indent != "" {
		optIndent = inner
	}
	q := func(s string) string {
		if d.SingleQuotes {
			return "'" + s + "'"
		}
		return tomlString(s)
	}
	path := d.HandlerPath("runc")
	var b strings.Builder
	fmt.Fprintf(&b, "%s# containerd 1.x's built-in runc runtime, written out by gvisor-bootstrap: a config\n", indent)
	fmt.Fprintf(&b, "%s# that lists any runtime replaces containerd 1.x's built-in list.\n", indent)
	fmt.Fprintf(&b, "%s%s\n", indent, header(path, d.SingleQuotes))
	fmt.Fprintf(&b, "%sruntime_type = %s\n", inner, q("io.containerd.runc.v2"))
	fmt.Fprintf(&b, "%ssandbox_mode = %s\n", inner, q("podsandbox"))
	fmt.Fprintf(&b, "%s%s\n", optIndent, header(append(path, "options"), d.SingleQuotes))
	for _, kv := range []string{
		"BinaryName = " + q(""), "CriuImagePath = " + q(""), "CriuPath = " + q(""), "CriuWorkPath = " + q(""),
		"IoGid = 0", "IoUid = 0", "NoNewKeyring = false", "NoPivotRoot = false",
		"Root = " + q(""), "ShimCgroup = " + q(""), "SystemdCgroup = false",
	} {
		fmt.Fprintf(&b, "%s  %s\n", optIndent, kv)
	}
	return b.String()
}
