package containerd

import (
	"bufio"
	"bytes"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
)

// unitDirs are systemd's unit directories, highest precedence first.
var unitDirs = []string{"/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system"}

// LoadedConfig finds the config file containerd's unit starts it with: the
// `--config`/`-c` of the unit's ExecStart (its last one, drop-ins applied), with
// $VAR and ${VAR} expanded from the unit's Environment= (Azure Container Linux
// sets CONTAINERD_CONFIG=/run/containerd/acl-config.toml in a drop-in; Flatcar
// sets --config in one). It returns "" when the unit does not say, and where it
// found the setting.
func LoadedConfig(root fsroot.Root, unit string) (configPath, from string) {
	var files []string
	for _, d := range unitDirs {
		p := path.Join(d, unit)
		if root.Exists(p) {
			files = append(files, p)
			break
		}
	}
	if len(files) == 0 {
		return "", ""
	}
	dropins := map[string]string{}
	for i := len(unitDirs) - 1; i >= 0; i-- { // higher precedence replaces same names
		matches, _ := filepath.Glob(root.Path(path.Join(unitDirs[i], unit+".d", "*.conf")))
		for _, m := range matches {
			dropins[filepath.Base(m)] = root.NodePath(m)
		}
	}
	names := make([]string, 0, len(dropins))
	for n := range dropins {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		files = append(files, dropins[n])
	}
	env := map[string]string{}
	var exec, execFrom string
	for _, f := range files {
		data, err := root.ReadFile(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				continue
			}
			switch strings.TrimSpace(k) {
			case "Environment":
				for _, kv := range splitWords(v) {
					if ek, ev, ok := strings.Cut(kv, "="); ok {
						env[ek] = ev
					}
				}
			case "ExecStart":
				exec, execFrom = strings.TrimSpace(v), f // an empty one resets
			}
		}
	}
	words := splitWords(exec)
	for i, w := range words {
		var val string
		switch {
		case (w == "--config" || w == "-c") && i+1 < len(words):
			val = words[i+1]
		case strings.HasPrefix(w, "--config="):
			val = strings.TrimPrefix(w, "--config=")
		default:
			continue
		}
		val = os.Expand(val, func(k string) string { return env[k] })
		if filepath.IsAbs(val) {
			return filepath.Clean(val), execFrom
		}
		return "", ""
	}
	return "", ""
}

// splitWords splits a unit line into words, honouring double and single quotes.
func splitWords(s string) []string {
	var out []string
	var b strings.Builder
	var quote rune
	in := false
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote == 0 && (r == '"' || r == '\''):
			quote, in = r, true
		case quote == 0 && (r == ' ' || r == '\t'):
			if in {
				out = append(out, b.String())
				b.Reset()
				in = false
			}
		default:
			b.WriteRune(r)
			in = true
		}
	}
	if in {
		out = append(out, b.String())
	}
	return out
}
