package containerd

import (
	"fmt"
)

// Dialect is how one config file must spell the runsc runtime for the containerd
// that reads it.
type Dialect struct {
	// ConfigVersion is the file's `version` (0 when absent, which containerd reads
	// as version 1).
	ConfigVersion int
	// RuntimeTable is the runtimes table in TOML, e.g.
	// plugins."io.containerd.cri.v1.runtime".containerd.runtimes
	RuntimeTable string
	// Plugin names the CRI plugin table family: "cri.v1.runtime", "grpc.v1.cri"
	// or "cri" (version 1).
	Plugin string
	// Reason says why this family was chosen (for logs and --json).
	Reason string
	// SingleQuotes is set when the file writes quoted keys 'literal' (containerd
	// 2's `config default` style); inserted headers follow it.
	SingleQuotes bool
	// ListReplacesBuiltins is set for containerd 1.x: a config that lists any
	// runtime replaces the built-in list, so a file without runtimes of its own
	// loses the built-in runc when runsc is added.
	ListReplacesBuiltins bool

	family family
}

// RuntimesPath is the runtimes table as key parts.
func (d Dialect) RuntimesPath() []string { return d.family.Runtimes() }

// HandlerPath is one handler's table as key parts.
func (d Dialect) HandlerPath(handler string) []string { return d.family.Handler(handler) }

// DetectDialect reads the dialect from the file's own `version` and the CRI tables
// present, for containerd release v. Empty data is a missing file: the dialect is
// the one a new minimal config for v uses.
func DetectDialect(data []byte, v Version) (Dialect, error) {
	doc, err := parseDocument("containerd config", data)
	if err != nil {
		return Dialect{}, err
	}
	return detectDialect(doc, v)
}

func detectDialect(doc *document, v Version) (Dialect, error) {
	if err := CheckSupported(v); err != nil {
		return Dialect{}, err
	}
	ver := 0
	if raw, ok := doc.tree["version"]; ok {
		n, ok := raw.(int64)
		if !ok {
			return Dialect{}, fmt.Errorf("`version = %v` is not an integer: containerd would refuse this file; fix it", raw)
		}
		ver = int(n)
	}
	d := Dialect{ConfigVersion: ver, ListReplacesBuiltins: v.Major < 2}
	single, double := 0, 0
	for _, s := range doc.stmts {
		single += s.singleQuoted
		double += s.doubleQuoted
	}
	d.SingleQuotes = single > double
	if !hasStatements(doc) {
		// A missing, empty or comment-only file: containerd reads it as version 1,
		// and we write a minimal config with the release's own version.
		d.ConfigVersion = newFileVersion(v)
		ver = d.ConfigVersion
	}
	switch {
	case ver < 0 || ver > 4:
		return Dialect{}, fmt.Errorf("config `version = %d` is not one containerd knows (1 to 4)", ver)
	case v.Major < 2 && ver >= 3:
		return Dialect{}, fmt.Errorf("config `version = %d` needs containerd 2, but the node runs containerd %s: containerd 1.x refuses to start with it; write the file as `version = 2` (containerd 1.7's `containerd config default`) or upgrade containerd", ver, v)
	case ver == 4 && v.Less(2, 3):
		return Dialect{}, fmt.Errorf("config `version = 4` needs containerd >= 2.3, but the node runs containerd %s; use `version = 3` or upgrade containerd", v)
	}

	if v.Major >= 2 && ver <= 1 {
		// containerd 2 migrates version 1 by renaming plugins.cri to
		// plugins."io.containerd.grpc.v1.cri", replacing whatever the file has
		// under the long name: which settings win is not visible in the file.
		_, short := lookup(doc.tree, familyLegacy.Plugin)
		_, long := lookup(doc.tree, familyGRPC.Plugin)
		if short && long {
			return Dialect{}, fmt.Errorf("this config has no version (or version 1) and sets both plugins.cri and plugins.\"io.containerd.grpc.v1.cri\": containerd 2 replaces the second with the first, so part of the file is silently ignored; migrate it with `containerd config migrate` (or give it `version = 2` and one set of tables) and run again")
		}
	}
	var candidates []family
	var dflt family
	switch {
	case v.Major < 2 && ver == 2:
		candidates, dflt = []family{familyGRPC}, familyGRPC
	case v.Major < 2:
		candidates, dflt = []family{familyLegacy}, familyLegacy
	case ver >= 3:
		candidates, dflt = []family{familyV3}, familyV3
	case ver == 2:
		candidates, dflt = []family{familyV3, familyGRPC}, familyGRPC
	default:
		candidates, dflt = []family{familyV3, familyGRPC, familyLegacy}, familyLegacy
	}
	chosen, reason := dflt, fmt.Sprintf("config version %d on containerd %s", ver, v)
	if len(candidates) > 1 {
		// containerd 2 migrates old-style runtimes into io.containerd.cri.v1.runtime
		// only when that plugin has no runtimes of its own, and then replaces the
		// whole runtimes table: the family that already holds runtimes is the one
		// containerd reads, and a handler added to the other is lost (or, added as
		// the first runtimes of cri.v1.runtime, drops every old-style runtime).
		found := false
		for _, f := range candidates {
			if _, ok := lookup(doc.tree, f.Runtimes()); ok {
				chosen, found = f, true
				reason = fmt.Sprintf("config version %d whose runtimes live in %s tables", ver, f.Name)
				break
			}
		}
		if !found {
			for _, f := range candidates {
				if _, ok := lookup(doc.tree, f.Plugin); ok {
					chosen = f
					reason = fmt.Sprintf("config version %d that uses %s tables", ver, f.Name)
					break
				}
			}
		}
	}
	d.family = chosen
	d.Plugin = chosen.Name
	d.Reason = reason
	d.RuntimeTable = dottedKey(chosen.Runtimes(), false)
	return d, nil
}

// withFamily is d writing its handlers under family f.
func (d Dialect) withFamily(f family, why string) Dialect {
	d.family, d.Plugin, d.RuntimeTable = f, f.Name, dottedKey(f.Runtimes(), false)
	if why != "" {
		d.Reason = fmt.Sprintf("config version %d: %s", d.ConfigVersion, why)
	}
	return d
}

// newFileVersion is the `version` of a config this tool creates: containerd 1.x
// reads 2; containerd 2 reads 3, and from 2.3 its own default is 4.
func newFileVersion(v Version) int {
	switch {
	case v.Major < 2:
		return 2
	case v.Less(2, 3):
		return 3
	default:
		return 4
	}
}

// hasStatements reports whether the file defines anything (comments do not count).
func hasStatements(doc *document) bool { return len(doc.stmts) > 0 }

// String names the dialect for people: "version 2 with cri.v1.runtime tables".
func (d Dialect) String() string {
	v := fmt.Sprintf("version %d", d.ConfigVersion)
	if d.ConfigVersion == 0 {
		v = "no version (read as 1)"
	}
	return fmt.Sprintf("%s with %s tables", v, d.Plugin)
}
