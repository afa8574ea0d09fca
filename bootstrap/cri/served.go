package cri

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/pelletier/go-toml/v2"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
)

// The gVisor runtime as containerd must serve it.
const (
	RunscRuntimeType = "io.containerd.runsc.v1"
	RunscOptionsType = "io.containerd.runsc.v1.options"
)

// Expect is the gVisor handler as this tool registered it: what the running
// containerd must serve under the handler's name for a pod asking for it to run
// in gVisor rather than in whatever else the name happens to be bound to.
type Expect struct {
	// Handler is the runtime handler name kubelet asks for ("runsc").
	Handler string
	// ConfigPath is the runsc shim options file the tool wrote (a node path): the
	// handler's options.ConfigPath must be exactly this.
	ConfigPath string
	// RuntimePath is the runtime_path the tool wrote, "" when containerd finds
	// containerd-shim-runsc-v1 on its own PATH.
	RuntimePath string
	// Shim and Runsc are the installed release's entry points (node paths). A
	// served runtime_path, and the options file's binary_name, must resolve to the
	// same files. Empty: not checked.
	Shim, Runsc string
	// DefinedBy names the config file that defines the handler in the config
	// containerd loads (the last one in its merge order); it goes into failures so
	// that the operator knows which file to fix.
	DefinedBy string
}

// NotServed is the one failure of CheckServed: the handler the CRI serves under
// the name is not the gVisor runtime this tool registered.
type NotServed struct {
	Handler   string
	DefinedBy string
	// What is the mismatch, e.g. `as io.containerd.runc.v2`.
	What string
}

func (e *NotServed) Error() string {
	if e.DefinedBy != "" {
		return fmt.Sprintf("the CRI does not serve %q as gVisor: %s is defined by %s %s", e.Handler, e.Handler, e.DefinedBy, e.What)
	}
	return fmt.Sprintf("the CRI does not serve %q as gVisor: %s", e.Handler, e.What)
}

// IsNotServed reports whether err is a NotServed failure.
func IsNotServed(err error) bool {
	var ns *NotServed
	return errors.As(err, &ns)
}

// CheckServed is the one check of what the running containerd serves, used by
// run, the kubelet gate, verify and status: the handler is listed, its runtime
// type is runsc's, its options point at the options file this tool wrote, and
// the binaries it would start are the installed release's. Anything else is a
// NotServed naming what differs; never healthy.
func (s Status) CheckServed(root fsroot.Root, e Expect) error {
	fail := func(format string, a ...any) error {
		return &NotServed{Handler: e.Handler, DefinedBy: e.DefinedBy, What: fmt.Sprintf(format, a...)}
	}
	if !s.HasHandler(e.Handler) {
		return &NotServed{Handler: e.Handler, What: fmt.Sprintf("the running containerd does not list the %q handler", e.Handler)}
	}
	rt, ok := s.Runtimes[e.Handler]
	if !ok {
		return &NotServed{Handler: e.Handler, What: "the CRI lists the handler but its verbose status shows no runtime config for it, so what it runs cannot be confirmed"}
	}
	if rt.Type != RunscRuntimeType {
		return fail("as %s (want %s)", orNone(rt.Type), RunscRuntimeType)
	}
	typeURL, _ := rt.Options["TypeUrl"].(string)
	if typeURL != RunscOptionsType {
		return fail("with options.TypeUrl %s (want %s): the shim would ignore its options file", orNone(typeURL), RunscOptionsType)
	}
	cfgPath, _ := rt.Options["ConfigPath"].(string)
	if cfgPath != e.ConfigPath {
		return fail("with options.ConfigPath %s (want %s, the options file gvisor-bootstrap wrote)", orNone(cfgPath), e.ConfigPath)
	}
	if rt.Path != e.RuntimePath {
		want := e.RuntimePath
		if want == "" {
			want = "none: containerd finds containerd-shim-runsc-v1 on its PATH"
		}
		return fail("with runtime_path %s (want %s)", orNone(rt.Path), want)
	}
	if rt.Path != "" && e.Shim != "" {
		if err := sameFile(root, rt.Path, e.Shim); err != nil {
			return fail("with runtime_path %s, which is not the installed shim: %v", rt.Path, err)
		}
	}
	if e.Runsc != "" {
		bin, err := binaryName(root, e.ConfigPath)
		if err != nil {
			return fail("with an options file containerd cannot use: %v", err)
		}
		if bin != "" {
			if err := sameFile(root, bin, e.Runsc); err != nil {
				return fail("with binary_name %s in %s, which is not the installed runsc: %v", bin, e.ConfigPath, err)
			}
		}
	}
	return nil
}

// binaryName reads the shim options file's binary_name ("" when unset: the shim
// runs "runsc" from its PATH).
func binaryName(root fsroot.Root, path string) (string, error) {
	data, err := root.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", root.Path(path), err)
	}
	var o struct {
		BinaryName string `toml:"binary_name"`
	}
	if err := toml.Unmarshal(data, &o); err != nil {
		return "", fmt.Errorf("%s: %w", root.Path(path), err)
	}
	return o.BinaryName, nil
}

// sameFile checks that two node paths name the same file once symlinks are
// followed (under the root: fsroot resolves them as a chroot would).
func sameFile(root fsroot.Root, got, want string) error {
	if !filepath.IsAbs(got) {
		return fmt.Errorf("%s is not an absolute path", got)
	}
	gs, err := os.Stat(root.Path(got))
	if err != nil {
		return err
	}
	ws, err := os.Stat(root.Path(want))
	if err != nil {
		return fmt.Errorf("the installed release: %w", err)
	}
	if !os.SameFile(gs, ws) {
		return fmt.Errorf("it is another file than %s", want)
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return `""`
	}
	return s
}
