package cri

import (
	"os"
	"strings"
	"testing"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
)

func TestCheckServed(t *testing.T) {
	root := fsroot.New(t.TempDir())
	// A release as installed: stable links in BinDir into the current release.
	for _, f := range []string{"/opt/gvisor/bin/gvisor.1/runsc", "/opt/gvisor/bin/gvisor.1/containerd-shim-runsc-v1", "/usr/local/bin/other-shim"} {
		if err := root.WriteFile(f, []byte("x"), fsroot.WriteOptions{Mode: 0o755}); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"/opt/gvisor/bin/.gvisor-current":          "gvisor.1",
		"/opt/gvisor/bin/runsc":                    ".gvisor-current/runsc",
		"/opt/gvisor/bin/containerd-shim-runsc-v1": "/opt/gvisor/bin/.gvisor-current/containerd-shim-runsc-v1", // absolute: a node path
	} {
		if err := os.Symlink(target, root.Path(link)); err != nil {
			t.Fatal(err)
		}
	}
	writeOpts := func(body string) {
		if err := root.WriteFile("/etc/containerd/runsc.toml", []byte(body), fsroot.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	want := Expect{Handler: "runsc", ConfigPath: "/etc/containerd/runsc.toml", RuntimePath: "/opt/gvisor/bin/containerd-shim-runsc-v1",
		Shim: "/opt/gvisor/bin/containerd-shim-runsc-v1", Runsc: "/opt/gvisor/bin/runsc", DefinedBy: "/etc/containerd/conf.d/50-x.toml"}
	good := GVisor("/etc/containerd/runsc.toml")
	good.Path = "/opt/gvisor/bin/containerd-shim-runsc-v1"
	base := Status{RuntimeReady: true}.WithHandler("runc", RuntimeInfo{Type: "io.containerd.runc.v2"})

	writeOpts("binary_name = \"/opt/gvisor/bin/runsc\"\n")
	if err := base.WithHandler("runsc", good).CheckServed(root, want); err != nil {
		t.Fatalf("the registered handler is not accepted: %v", err)
	}

	with := func(f func(*RuntimeInfo)) Status {
		rt := good
		rt.Options = map[string]any{}
		for k, v := range good.Options {
			rt.Options[k] = v
		}
		f(&rt)
		return base.WithHandler("runsc", rt)
	}
	cases := []struct {
		name string
		st   Status
		opts string
		want []string
	}{
		{"not listed", base, "", []string{`does not list the "runsc" handler`}},
		{"listed without config info", Status{Handlers: []string{"runsc"}}, "", []string{"cannot be confirmed"}},
		{"runc under the name", with(func(r *RuntimeInfo) { r.Type = "io.containerd.runc.v2" }), "", []string{"defined by /etc/containerd/conf.d/50-x.toml as io.containerd.runc.v2"}},
		{"other options file", with(func(r *RuntimeInfo) { r.Options["ConfigPath"] = "/etc/other.toml" }), "", []string{"ConfigPath /etc/other.toml"}},
		{"no TypeUrl", with(func(r *RuntimeInfo) { delete(r.Options, "TypeUrl") }), "", []string{"TypeUrl"}},
		{"no runtime_path", with(func(r *RuntimeInfo) { r.Path = "" }), "", []string{"runtime_path"}},
		{"shim elsewhere", func() Status { s := with(func(r *RuntimeInfo) { r.Path = "/usr/local/bin/other-shim" }); return s }(), "", []string{"runtime_path /usr/local/bin/other-shim"}},
		{"runsc elsewhere", base.WithHandler("runsc", good), "binary_name = \"/usr/local/bin/other-shim\"\n", []string{"binary_name /usr/local/bin/other-shim", "not the installed runsc"}},
		{"options file broken", base.WithHandler("runsc", good), "binary_name = [\n", []string{"options file"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts := c.opts
			if opts == "" {
				opts = "binary_name = \"/opt/gvisor/bin/runsc\"\n"
			}
			writeOpts(opts)
			w := want
			if c.name == "shim elsewhere" {
				w.RuntimePath = "/usr/local/bin/other-shim" // registered so, but not the release's shim
			}
			err := c.st.CheckServed(root, w)
			if err == nil || !IsNotServed(err) {
				t.Fatalf("CheckServed = %v, want a NotServed failure", err)
			}
			for _, s := range c.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q does not say %q", err, s)
				}
			}
		})
	}
}
