// Package cli is gvisor-bootstrap's command line: global flags, the subcommand
// table and output helpers. Each subcommand lives in its own file and registers
// itself; the work is done by the packages it calls.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/config"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/redact"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/release"
)

// Exit codes. `run` uses all of them; other commands use 0, 1 and 2.
const (
	ExitOK       = 0  // healthy: nothing needed changing (or the command succeeded)
	ExitFailed   = 1  // the node is not (or could not be made) right; see the message
	ExitUsage    = 2  // bad flags, arguments or configuration; nothing was changed
	ExitRepaired = 10 // the node was changed and is now verified
)

// Globals are the flags every subcommand takes plus the loaded configuration.
type Globals struct {
	Root       fsroot.Root
	ConfigPath string
	JSON       bool
	DryRun     bool
	Config     config.Config
	Stdout     io.Writer
	Stderr     io.Writer
	// Unattended is set by runs nobody watches (the kubelet gate): downloads log
	// plain lines instead of drawing a progress bar even when stderr is a terminal.
	Unattended bool
	// artefact is stdout unscrubbed, for `render`: customData and manifests are
	// deliverables that must carry the configured URL as it is.
	artefact io.Writer
}

// Command is one subcommand.
type Command struct {
	Name    string
	Summary string
	// Usage is the argument synopsis after the command name.
	Usage   string
	Long    string
	Example string
	// Flags registers the command's own flags and returns a function, run after the
	// config file is loaded, that copies the flags the user set onto g.Config (flags
	// override the file).
	Flags func(fs *pflag.FlagSet) func(g *Globals) error
	Run   func(ctx context.Context, g *Globals, args []string) (int, error)
}

var commands = map[string]*Command{}

func register(c *Command) { commands[c.Name] = c }

// UsageError marks an error caused by bad input; it exits with ExitUsage.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

func usageErrorf(format string, a ...any) error { return UsageError{fmt.Errorf(format, a...)} }

// Main runs the command line until it ends or SIGINT/SIGTERM, and returns the
// process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return MainContext(ctx, args, stdout, stderr)
}

// MainContext is Main with the caller's context (tests cancel it).
func MainContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	args = commandFirst(args)
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printTopUsage(stdout)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "gvisor-bootstrap: unknown command %q\n\n", args[0])
		printTopUsage(stderr)
		return ExitUsage
	}
	// Whatever any part of the tool prints, no credential reaches the terminal,
	// the journal (through stderr) or a JSON consumer.
	raw := stdout
	stdout, stderr = redact.NewWriter(stdout), redact.NewWriter(stderr)
	g := &Globals{Stdout: stdout, Stderr: stderr, artefact: raw}
	fs := pflag.NewFlagSet("gvisor-bootstrap "+cmd.Name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var rootDir string
	fs.StringVar(&rootDir, "root", "/", "directory that stands for the node's /; every path is resolved under it (e.g. --root /host in the DaemonSet)")
	fs.StringVar(&g.ConfigPath, "config", config.DefaultPath, "the tool's TOML config, a node path resolved under --root (missing file: built-in defaults)")
	fs.BoolVar(&g.JSON, "json", false, "print machine-readable JSON instead of text")
	fs.BoolVar(&g.DryRun, "dry-run", false, "say what would change and change nothing")
	var apply func(*Globals) error
	if cmd.Flags != nil {
		apply = cmd.Flags(fs)
	}
	help := fs.BoolP("help", "h", false, "show this help")
	if err := fs.Parse(args[1:]); err != nil {
		fmt.Fprintf(stderr, "gvisor-bootstrap %s: %v\n\n", cmd.Name, err)
		printCommandUsage(stderr, cmd, fs)
		return ExitUsage
	}
	if *help {
		printCommandUsage(stdout, cmd, fs)
		return ExitOK
	}
	g.Root = fsroot.New(rootDir)
	cfg, err := config.Load(g.Root, g.ConfigPath)
	if err != nil {
		fmt.Fprintf(stderr, "gvisor-bootstrap %s: %v\n", cmd.Name, err)
		if gate := fs.Lookup("gate"); gate != nil && gate.Value.String() == "true" && config.OnFailureDespite(g.Root, g.ConfigPath) == "continue" {
			fmt.Fprintln(stderr, "gvisor-bootstrap run: boot.on_failure = \"continue\": letting kubelet start on a node that CANNOT run gVisor pods (the config could not be loaded)")
			return ExitOK
		}
		return ExitUsage
	}
	g.Config = cfg
	if apply != nil {
		if err := apply(g); err != nil {
			fmt.Fprintf(stderr, "gvisor-bootstrap %s: %v\n", cmd.Name, err)
			return ExitUsage
		}
		if err := g.Config.Validate(); err != nil {
			fmt.Fprintf(stderr, "gvisor-bootstrap %s: %v\n", cmd.Name, err)
			return ExitUsage
		}
	}
	if err := release.CheckVersion(g.Config.Release.Version); err != nil {
		fmt.Fprintf(stderr, "gvisor-bootstrap %s: release.version: %v\n", cmd.Name, err)
		return ExitUsage
	}
	// A source install would refuse (plain HTTP without pins, ftp://, s3::) is bad
	// input for every command, render included: nothing is rendered or run that
	// the node would refuse.
	if err := release.CheckSource(g.Config.Release); err != nil {
		fmt.Fprintf(stderr, "gvisor-bootstrap %s: %v\n", cmd.Name, err)
		return ExitUsage
	}
	code, err := cmd.Run(ctx, g, fs.Args())
	if err != nil {
		var ue UsageError
		if errors.As(err, &ue) {
			code = ExitUsage
		} else if code == ExitOK {
			code = ExitFailed
		}
		if g.JSON {
			_ = json.NewEncoder(stdout).Encode(map[string]any{"command": cmd.Name, "ok": false, "error": redact.String(err.Error())})
		}
		fmt.Fprintf(stderr, "gvisor-bootstrap %s: %v\n", cmd.Name, redact.String(err.Error()))
	}
	return code
}

// Emit prints v as JSON with --json, or calls human otherwise.
func (g *Globals) Emit(v any, human func(w io.Writer)) {
	if g.JSON {
		enc := json.NewEncoder(g.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(v)
		return
	}
	human(g.Stdout)
}

func printTopUsage(w io.Writer) {
	fmt.Fprintln(w, "gvisor-bootstrap makes a Kubernetes node run untrusted pods in gVisor: it installs")
	fmt.Fprintln(w, "runsc and its containerd shim, registers the runsc runtime handler in containerd's")
	fmt.Fprintln(w, "config, verifies it through the CRI, and repairs the node on every boot.")
	fmt.Fprintln(w, "\nUsage: gvisor-bootstrap <command> [flags]\n\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].Summary)
	}
	fmt.Fprintln(w, "\nRun `gvisor-bootstrap <command> --help` for a command's flags and examples.")
	fmt.Fprintln(w, "\nExit codes: 0 ok/healthy, 1 failed, 2 bad input (nothing changed), 10 repaired (run).")
}

func printCommandUsage(w io.Writer, c *Command, fs *pflag.FlagSet) {
	fmt.Fprintf(w, "Usage: gvisor-bootstrap %s %s\n\n%s\n", c.Name, c.Usage, c.Summary)
	if c.Long != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.Long))
	}
	fmt.Fprintf(w, "\nFlags:\n%s", fs.FlagUsages())
	if c.Example != "" {
		fmt.Fprintf(w, "\nExamples:\n%s\n", strings.TrimRight(c.Example, "\n"))
	}
}

// commandFirst moves the command name to the front so that global flags may come
// before it: `gvisor-bootstrap --root /host run` equals `gvisor-bootstrap run --root /host`.
func commandFirst(args []string) []string {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return args
		case a == "--root" || a == "--config":
			i++ // the flag's value
		case strings.HasPrefix(a, "-"):
		default:
			if i == 0 {
				return args
			}
			out := append([]string{a}, args[:i]...)
			return append(out, args[i+1:]...)
		}
	}
	return args
}
