package containerd

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

func editFixture(t *testing.T, fixture, version string) (in, out []byte, d Dialect) {
	t.Helper()
	in, err := os.ReadFile("testdata/" + fixture)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := parseDocument(fixture, in)
	if err != nil {
		t.Fatal(err)
	}
	d, err = detectDialect(doc, mustVersion(t, version))
	if err != nil {
		t.Fatal(err)
	}
	out, _, err = editHandlers(doc, d, []Handler{{Name: HandlerRunsc, OptionsPath: "/etc/containerd/runsc.toml"}})
	if err != nil {
		t.Fatal(err)
	}
	return in, out, d
}

// TestEditKeepsEveryOtherLine checks the text, not only the values: every line of
// the input survives in order, and the only new lines are the runsc block.
func TestEditKeepsEveryOtherLine(t *testing.T) {
	for _, c := range []struct{ fixture, version string }{
		{"hand-kept.toml", "1.7.35"}, {"default-2.3.toml", "2.3.7"}, {"aks-ubuntu2404.toml", "2.3.7"},
		{"eks-al2023.toml", "2.3.7"}, {"legacy-v1.toml", "1.7.35"},
	} {
		in, out, _ := editFixture(t, c.fixture, c.version)
		// Removing the inserted lines (all contain "runsc" or are blank) gives back
		// the input's non-blank lines, byte for byte and in order.
		var kept []string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.TrimSpace(l) != "" && !strings.Contains(l, "runsc") && !strings.Contains(l, "TypeUrl") && !strings.Contains(l, "ConfigPath = ") {
				kept = append(kept, l)
			}
		}
		var orig []string
		for _, l := range strings.Split(string(in), "\n") {
			if strings.TrimSpace(l) != "" {
				orig = append(orig, l)
			}
		}
		if strings.Join(kept, "\n") != strings.Join(orig, "\n") {
			t.Errorf("%s: lines outside the runsc block changed:\n%s", c.fixture, out)
		}
		if !bytes.HasPrefix(out, in[:bytes.Index(in, []byte("runtimes"))]) {
			t.Errorf("%s: the text before the runtimes tables changed", c.fixture)
		}
	}
}

func TestEditStyleFollowsFile(t *testing.T) {
	_, out, _ := editFixture(t, "default-2.3.toml", "2.3.7")
	want := "        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runsc]\n          runtime_type = 'io.containerd.runsc.v1'\n"
	if !strings.Contains(string(out), want) {
		t.Errorf("containerd 2's single-quoted, indented style not followed:\n%s", out)
	}
	_, out, _ = editFixture(t, "crlf-default-1.7.toml", "1.7.35")
	if bytes.Contains(bytes.ReplaceAll(out, []byte("\r\n"), nil), []byte("\n")) {
		t.Error("bare LF line ends written into a CRLF file")
	}
}

func TestEditRemovesEveryStaleStatement(t *testing.T) {
	for _, c := range []struct {
		fixture, version string
		stale            []string
	}{
		{"stale-runsc-v2.toml", "1.7.35", []string{"old-runsc", "TypeUrl = 1", "runsc.v2"}},
		{"stale-dotted-v3.toml", "2.3.7", []string{"/run/old/", "\n  runtimes.runsc"}},
		{"aks-ubuntu2404-dead-runsc.toml", "2.3.7", []string{"grpc.v1.cri\".containerd.runtimes.runsc"}},
	} {
		_, out, _ := editFixture(t, c.fixture, c.version)
		for _, stale := range c.stale {
			if strings.Contains(string(out), stale) {
				t.Errorf("%s: stale %q left:\n%s", c.fixture, stale, out)
			}
		}
		if c.fixture == "stale-runsc-v2.toml" && !strings.Contains(string(out), "dev.gvisor.*") {
			t.Errorf("%s: the user's pod_annotations were not kept:\n%s", c.fixture, out)
		}
		if n := strings.Count(string(out), markerPrefix); n != 1 {
			t.Errorf("%s: %d marker comments", c.fixture, n)
		}
	}
}

func TestHasRunsc(t *testing.T) {
	for fixture, want := range map[string]bool{
		"aks-ubuntu2204.toml": false, "stale-runsc-v2.toml": true, "stale-dotted-v3.toml": true,
		"aks-ubuntu2404-dead-runsc.toml": true, "empty.toml": false,
	} {
		data, _ := os.ReadFile("testdata/" + fixture)
		if got, err := HasRunsc(data); err != nil || got != want {
			t.Errorf("HasRunsc(%s) = %v, %v", fixture, got, err)
		}
	}
	if _, err := HasRunsc([]byte("[x")); err == nil {
		t.Error("invalid TOML accepted")
	}
}

func BenchmarkPlanDefault17(b *testing.B) {
	data, _ := os.ReadFile("testdata/default-1.7.toml")
	v := Version{Major: 1, Minor: 7, Patch: 35}
	w := []Handler{{Name: HandlerRunsc, OptionsPath: "/etc/containerd/runsc.toml"}}
	for b.Loop() {
		doc, err := parseDocument("b", data)
		if err != nil {
			b.Fatal(err)
		}
		d, _ := detectDialect(doc, v)
		if _, _, err := editHandlers(doc, d, w); err != nil {
			b.Fatal(err)
		}
	}
}
