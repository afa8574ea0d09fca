// Package render produces what delivers gvisor-bootstrap to nodes and what the cluster
// needs, all from one config.Config: cloud-init customData for VMSS scale-out, the
// RuntimeClass, and the DaemonSet for managed pools whose images cannot be customised.
// Templates are embedded text/template files; every user-supplied value goes through a
// quoting function so that no config value can change the document's structure.
package render

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/config"
)

//go:embed templates/*.tmpl
var templateFS embed.FS

var templates = template.Must(template.New("").Funcs(template.FuncMap{
	"yaml":         yamlScalar,
	"shq":          shellQuote,
	"indent":       indent,
	"tolerations":  tolerationsYAML,
	"nodeSelector": nodeSelectorYAML,
	"hostMounts":   hostMountsYAML,
	"hostVolumes":  hostVolumesYAML,
}).ParseFS(templateFS, "templates/*.tmpl"))

func execute(name string, data any) ([]byte, error) {
	var buf bytes.Buffer
	if err := templates.ExecuteTemplate(&buf, name, data); err != nil {
		return nil, fmt.Errorf("render %s: %w", name, err)
	}
	return buf.Bytes(), nil
}

// plainSafe matches strings YAML reads back as the same string without quotes. ':' and
// leading punctuation are left out on purpose (YAML 1.1 sexagesimals, indicators).
var plainSafe = regexp.MustCompile(`^[A-Za-z0-9/][A-Za-z0-9._/-]*$`)

// yamlScalar renders s as a YAML string scalar: plain when that is unambiguous,
// otherwise double-quoted (a JSON string is a valid YAML double-quoted scalar).
func yamlScalar(s string) string {
	if plainSafe.MatchString(s) && !yamlAmbiguous(s) {
		return s
	}
	b, _ := json.Marshal(s)
	return string(b)
}

// yamlAmbiguous reports plain words YAML 1.1 or 1.2 would read as something else.
func yamlAmbiguous(s string) bool {
	switch strings.ToLower(s) {
	case "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~":
		return true
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return true
	}
	if _, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 0, 64); err == nil {
		return true
	}
	return false
}

// shellQuote single-quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// indent prefixes every non-empty line of s with n spaces (for YAML block scalars).
func indent(n int, s string) string {
	pad := strings.Repeat(" ", n)
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = pad + l
		}
	}
	return strings.Join(lines, "\n")
}

// kv is one map entry, so templates range over maps in a stable order.
type kv struct{ Key, Value string }

func sortedKV(m map[string]string) []kv {
	out := make([]kv, 0, len(m))
	for k, v := range m {
		out = append(out, kv{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// pool is the scheduling part shared by the RuntimeClass and the DaemonSet.
type pool struct {
	NodeSelector []kv
	Tolerations  []config.Toleration
}

func poolOf(c config.Cluster) (pool, error) {
	p := pool{NodeSelector: sortedKV(c.NodeSelector), Tolerations: c.Tolerations}
	for i, t := range c.Tolerations {
		switch t.Operator {
		case "", "Equal":
		case "Exists":
			if t.Value != "" {
				return p, fmt.Errorf("cluster.tolerations[%d]: operator Exists takes no value (got %q)", i, t.Value)
			}
		default:
			return p, fmt.Errorf("cluster.tolerations[%d].operator %q: want \"Equal\" or \"Exists\"", i, t.Operator)
		}
		switch t.Effect {
		case "", "NoSchedule", "PreferNoSchedule", "NoExecute":
		default:
			return p, fmt.Errorf("cluster.tolerations[%d].effect %q: want NoSchedule, PreferNoSchedule or NoExecute", i, t.Effect)
		}
	}
	return p, nil
}

// dnsName checks a Kubernetes object name (RFC 1123 subdomain).
var dnsName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

func checkName(what, v string) error {
	if len(v) > 253 || !dnsName.MatchString(v) {
		return fmt.Errorf("%s %q is not a valid Kubernetes name: use lower-case letters, digits, '-' and '.'", what, v)
	}
	return nil
}

func checkQuantity(what, v string) error {
	if v == "" {
		return nil
	}
	if _, err := resource.ParseQuantity(v); err != nil {
		return fmt.Errorf("%s %q is not a Kubernetes quantity (for example \"100m\" or \"64Mi\"): %v", what, v, err)
	}
	return nil
}

// tolerationsYAML renders tolerations as a YAML block sequence indented by n spaces;
// empty fields are left out.
func tolerationsYAML(n int, ts []config.Toleration) string {
	pad := strings.Repeat(" ", n)
	var b strings.Builder
	for _, t := range ts {
		var fields []string
		for _, f := range []struct{ k, v string }{{"key", t.Key}, {"operator", t.Operator}, {"value", t.Value}, {"effect", t.Effect}} {
			if f.v != "" {
				fields = append(fields, f.k+": "+yamlScalar(f.v))
			}
		}
		if len(fields) == 0 {
			continue
		}
		for i, f := range fields {
			lead := "  "
			if i == 0 {
				lead = "- "
			}
			b.WriteString("\n" + pad + lead + f)
		}
	}
	return b.String()
}

// nodeSelectorYAML renders a label map as a YAML block mapping indented by n spaces.
func nodeSelectorYAML(n int, sel []kv) string {
	pad := strings.Repeat(" ", n)
	var b strings.Builder
	for _, e := range sel {
		b.WriteString("\n" + pad + yamlScalar(e.Key) + ": " + yamlScalar(e.Value))
	}
	return b.String()
}
