package containerd

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
)

// bigConfig is a containerd config of about size bytes: AKS's shape plus many
// registry mirror tables and an unrelated array nested depth deep.
func bigConfig(size, depth int) []byte {
	var b strings.Builder
	b.WriteString("version = 2\n")
	b.WriteString("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n")
	b.WriteString("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n  SystemdCgroup = true\n")
	if depth > 0 {
		b.WriteString("[plugins.\"io.example.deep\"]\n  x = " + strings.Repeat("[", depth) + "1" + strings.Repeat("]", depth) + "\n")
	}
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"registry-%d.example.com\"]\n  endpoint = [\"https://mirror-%d.example.com\", \"https://registry-%d.example.com\"]\n", i, i, i)
	}
	return []byte(b.String())
}

func benchPlan(b *testing.B, data []byte, version string) {
	node := newScratchNode(&testing.T{}, mustVersionB(b, version), "")
	if err := os.WriteFile(node.configPath(), data, 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// A new Configurator, as each run has (it keeps the files it parsed).
		n := node.C
		c := &Configurator{Root: n.Root, Containerd: n.Containerd, Runsc: n.Runsc, Version: n.Version}
		if _, err := c.Plan(); err != nil {
			b.Fatal(err)
		}
	}
}

func mustVersionB(b *testing.B, s string) Version {
	v, err := ParseVersion(s)
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// Planning is on the kubelet gate's path: the goal is at most 100 ms per MiB of
// config (containerd itself parses these in milliseconds).
func BenchmarkPlan5MB(b *testing.B)           { benchPlan(b, bigConfig(5<<20, 0), "2.3.7") }
func BenchmarkPlanDeepArray25(b *testing.B)   { benchPlan(b, bigConfig(4<<10, 25), "2.3.7") }
func BenchmarkPlanDeepArray5000(b *testing.B) { benchPlan(b, bigConfig(4<<10, 5000), "2.3.7") }

func BenchmarkPlan500K(b *testing.B) { benchPlan(b, bigConfig(500<<10, 0), "2.3.7") }

// BenchmarkParse5MB is one parse of a 5 MB config (statements and value tree);
// a plan parses the file and its edited result.
func BenchmarkParse5MB(b *testing.B) {
	data := bigConfig(5<<20, 0)
	b.SetBytes(int64(len(data)))
	for i := 0; i < b.N; i++ {
		if _, err := parseDocument("bench", data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHealthyRun5MB is what one run (the kubelet gate's) asks of the
// configurator on a node whose 5 MB config already registers runsc: the plan
// (no change), FileHasRunsc and the CRI check's expectations, with a new
// Configurator each time, as each run has.
func BenchmarkHealthyRun5MB(b *testing.B) {
	data := bigConfig(5<<20, 0)
	node := newScratchNode(&testing.T{}, mustVersionB(b, "2.3.7"), "")
	if err := os.WriteFile(node.configPath(), data, 0o644); err != nil {
		b.Fatal(err)
	}
	if _, err := node.C.Ensure(context.Background(), false); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n := node.C
		c := &Configurator{Root: n.Root, Containerd: n.Containerd, Runsc: n.Runsc, Version: n.Version}
		ch, err := c.Ensure(context.Background(), false)
		if err != nil || ch.Changed || !c.FileHasRunsc() || c.Expect().DefinedBy == "" {
			b.Fatalf("not a healthy node: %+v %v", ch, err)
		}
	}
}
