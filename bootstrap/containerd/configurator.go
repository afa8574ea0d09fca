package containerd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"strings"
	"sync"

	"github.com/pmezard/go-difflib/difflib"
	"golang.org/x/sys/unix"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/config"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/faultpoint"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/redact"
)

// Configurator registers the runsc handler(s) in the node's containerd config.
type Configurator struct {
	Root       fsroot.Root
	Containerd config.Containerd
	Runsc      config.Runsc
	Version    Version
	// BinDir is where the release's entry points live (release.bin_dir): when
	// containerd would not find them on its own PATH, the handler names them.
	BinDir string
	// Loaded is the config file containerd is started with when that is not
	// Containerd.ConfigPath (the unit's --config: a composition root that
	// imports ConfigPath, as on Azure Container Linux); "" means ConfigPath.
	Loaded string
	Log    *slog.Logger

	// docs are the files parsed so far, by node path: one run reads the same
	// (possibly large) config for the plan, FileHasRunsc and the CRI check's
	// expectations. Documents are never changed once parsed.
	docsMu sync.Mutex
	docs   map[string]*document
}

// parsed is parseDocumentContext of the node file p holding data, from the
// cache when that content was parsed before.
func (c *Configurator) parsed(ctx context.Context, p string, data []byte) (*document, error) {
	c.docsMu.Lock()
	doc := c.docs[p]
	c.docsMu.Unlock()
	if doc != nil && bytes.Equal(doc.data, data) {
		return doc, nil
	}
	doc, err := parseDocumentContext(ctx, c.Root.Path(p), data)
	if err != nil {
		return nil, err
	}
	c.docsMu.Lock()
	if c.docs == nil {
		c.docs = map[string]*document{}
	}
	c.docs[p] = doc
	c.docsMu.Unlock()
	return doc, nil
}

// The release's entry points in BinDir (stable links into the current release).
const (
	ShimBinary  = "containerd-shim-runsc-v1"
	RunscBinary = "runsc"
)

// defaultPath is the PATH systemd gives containerd.service (and so the shim it
// starts): entry points in one of these need no absolute path.
var defaultPath = []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// binDirOnPath reports whether containerd finds the release's binaries by name.
func (c *Configurator) binDirOnPath() bool {
	if c.BinDir == "" {
		return true
	}
	for _, d := range defaultPath {
		if path.Clean(c.BinDir) == d {
			return true
		}
	}
	return false
}

// runtimePath is the handler's runtime_path: "" when containerd finds the shim on
// its PATH, else the shim's stable link in BinDir.
func (c *Configurator) runtimePath() string {
	if c.binDirOnPath() {
		return ""
	}
	return path.Join(c.BinDir, ShimBinary)
}

// runscBinary is the options file's binary_name: "" when the shim finds runsc on
// its PATH, else runsc's stable link in BinDir.
func (c *Configurator) runscBinary() string {
	if c.binDirOnPath() {
		return ""
	}
	return path.Join(c.BinDir, RunscBinary)
}

// mainPath is the config file this tool edits, as a node path: a symlink is
// followed (the target's content is replaced, the link stays) unless its target
// is read-only (a link into /usr, as images ship it): then the link itself is
// replaced by a real file.
func (c *Configurator) mainPath() string {
	p := c.Containerd.ConfigPath
	if t := c.resolveLink(p); t != p && !c.readOnly(t) {
		return t
	}
	return p
}

// rootPath is the file containerd is started with (its load order starts there).
func (c *Configurator) rootPath() string {
	if c.Loaded != "" {
		return c.resolveLink(c.Loaded)
	}
	return c.mainPath()
}

// readOnly reports a node file this tool must not write through: under /usr
// (read-only on image-based systems) or on a file system that refuses writes.
func (c *Configurator) readOnly(p string) bool {
	if p == "/usr" || strings.HasPrefix(p, "/usr/") {
		return true
	}
	return unix.Access(c.Root.Path(p), unix.W_OK) != nil && !os.IsNotExist(unix.Access(c.Root.Path(p), unix.F_OK))
}

// FileChange is one node file to write (or, with Remove, delete).
type FileChange struct {
	// Path is the node path.
	Path     string
	Old, New []byte
	Existed  bool
	// Mode is the mode of a new file (an existing file keeps its own).
	Mode   fs.FileMode
	Remove bool
	// Why says what the change is for ("register runsc", "runsc options", ...).
	Why string
	// LinkTarget, when set, is the target of the symlink at Path that the write
	// replaces by a real file (a link into read-only /usr); undo puts it back.
	LinkTarget string
}

// Plan is what Apply will do.
type Plan struct {
	Dialect Dialect
	Changes []FileChange
	// RestartNeeded is set when containerd's effective config (the main file or
	// the drop-in) changes. An options-file-only change needs no restart: the shim
	// reads it for every new sandbox.
	RestartNeeded bool
	// Backup, when set, is written before any change: the pristine main config
	// kept for uninstall.
	Backup *FileChange
	// SystemdCgroup reports that runc uses the systemd cgroup driver, so runsc
	// was given systemd-cgroup = "true".
	SystemdCgroup bool
	// MainPath is containerd's main config file (a symlink resolved) and MainAfter
	// its content once the plan is applied: a caller compares it with the file
	// later to notice another agent's rewrite.
	MainPath  string
	MainAfter []byte

	// Fingerprint identifies the input the plan was made from: every file
	// containerd loads, the options files and containerd's release.
	Fingerprint string

	// mainDoc and overrides are the planned content of containerd's config
	// files (nil: removed), for the simulation of its load.
	mainDoc   *document
	overrides map[string]*document
	// parsed are planned contents already parsed (by the edit's self-check).
	parsed map[string]*document
}

// Changed reports whether applying the plan writes anything.
func (p Plan) Changed() bool { return len(p.Changes) > 0 }

func (c *Configurator) log() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.New(slog.DiscardHandler)
}

// readNode reads a node file; a missing file is (nil, false, nil).
func (c *Configurator) readNode(p string) ([]byte, bool, error) {
	data, err := c.Root.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", c.Root.Path(p), err)
	}
	return data, true, nil
}

// wanted is the list of handlers the tool's config asks for.
func (c *Configurator) wanted() []Handler {
	rp := c.runtimePath()
	w := []Handler{{Name: HandlerRunsc, OptionsPath: c.Containerd.RuntimeConfigPath, RuntimePath: rp}}
	if c.Runsc.KVMHandler {
		w = append(w, Handler{Name: HandlerRunscKVM, OptionsPath: kvmOptionsPath(c.Containerd.RuntimeConfigPath), RuntimePath: rp})
	}
	return w
}

// change records a file write when the content differs.
func (c *Configurator) change(p *Plan, path string, old []byte, existed bool, data []byte, mode fs.FileMode, why string) {
	if existed && bytes.Equal(old, data) {
		return
	}
	if existed {
		mode = modeOf(c.Root, path)
	}
	ch := FileChange{Path: path, Old: old, New: data, Existed: existed, Mode: mode, Why: why}
	if t, err := os.Readlink(c.Root.LinkPath(path)); err == nil {
		ch.LinkTarget = t
		ch.Why += fmt.Sprintf(" (replacing the symlink to read-only %s by a real file)", c.resolveLink(path))
	}
	p.Changes = append(p.Changes, ch)
}

// removeOwned records the removal of a file this tool wrote (it carries our
// marker); a foreign file of the same name is left alone.
func (c *Configurator) removeOwned(p *Plan, path, why string) error {
	old, existed, err := c.readNode(path)
	if err != nil || !existed {
		return err
	}
	if !bytes.Contains(old, []byte(markerPrefix)) {
		c.log().Warn("leaving a file this tool did not write", "path", c.Root.Path(path), "why", why)
		return nil
	}
	p.Changes = append(p.Changes, FileChange{Path: path, Old: old, Existed: true, Remove: true, Why: why})
	return nil
}

// Plan computes every change without writing anything.
func (c *Configurator) Plan() (Plan, error) { return c.PlanContext(context.Background()) }

// PlanContext is Plan that stops, with an error saying so, when ctx is done:
// planning a large config is on the kubelet gate's path, where SIGTERM and
// the unit's start timeout must end it.
func (c *Configurator) PlanContext(ctx context.Context) (Plan, error) {
	p, err := c.plan(ctx)
	if err != nil && ctx.Err() != nil {
		return p, stopped(ctx, "plan containerd's config "+c.Root.Path(c.mainPath()))
	}
	return p, err
}

func (c *Configurator) plan(ctx context.Context) (Plan, error) {
	if err := CheckSupported(c.Version); err != nil {
		return Plan{}, err
	}
	cfgPath := c.mainPath()
	old, existed, err := c.readNode(cfgPath)
	if err != nil {
		return Plan{}, err
	}
	doc, err := c.parsed(ctx, cfgPath, old)
	if err != nil {
		return Plan{}, err
	}
	faultpoint.Hit("containerd-plan-read")
	d, err := detectDialect(doc, c.Version)
	if err != nil {
		return Plan{}, fmt.Errorf("%s: %w", c.Root.Path(cfgPath), err)
	}
	root := c.rootPath()
	before, err := c.loadOrder(ctx, root, map[string]*document{cfgPath: doc})
	if err != nil {
		return Plan{}, err
	}
	if !loads(before, cfgPath) {
		return Plan{}, fmt.Errorf("containerd is started with --config %s, which does not load %s (not even through its imports): edits there would be ignored; set containerd.config_path in gvisor-bootstrap's config to the file containerd loads, or import %s from it", c.Root.Path(root), c.Root.Path(cfgPath), cfgPath)
	}
	systemd := effectiveSystemdCgroup(effectiveTree(before, c.Version), c.Version)
	c.log().Debug("containerd config dialect", "path", cfgPath, "version", d.ConfigVersion, "tables", d.Plugin, "reason", d.Reason)

	// The dialect read from the file comes first; where containerd's merge of
	// the imported files would lose something with it (containerd 2.0 to 2.2
	// merge before they migrate), the other naming is tried, and the first plan
	// that the simulation of containerd's load proves is taken.
	var firstErr error
	for _, cand := range c.candidates(d) {
		if err := ctx.Err(); err != nil {
			return Plan{Dialect: d}, err
		}
		p, err := c.planWith(ctx, cfgPath, doc, cand, old, existed, systemd)
		if err != nil {
			return p, err
		}
		// The files read for the plan, except those it writes: not parsed again.
		over := map[string]*document{}
		for _, f := range before {
			over[f.Path] = f.Doc
		}
		over[cfgPath] = p.mainDoc
		for k, v := range p.overrides {
			over[k] = v
		}
		after, err := c.loadOrder(ctx, root, over)
		if err != nil {
			return p, err
		}
		if err := c.foreignOverride(after, c.handlerFile(cfgPath)); err != nil {
			return p, err
		}
		if err := effectiveCheck(before, after, c.Version, c.wanted()); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			c.log().Debug("dialect refused by the simulation of containerd's load", "tables", cand.Plugin, "error", err)
			continue
		}
		if err := c.planBackup(&p, old, existed); err != nil {
			return p, err
		}
		p.Fingerprint = c.fingerprint(before)
		p.MainPath, p.MainAfter = cfgPath, old
		for _, ch := range p.Changes {
			if ch.Path == cfgPath {
				p.MainAfter = ch.New
			}
		}
		return p, nil
	}
	return Plan{Dialect: d}, fmt.Errorf("%s: refusing to write: %v; fix the imported files so that one naming of the CRI tables holds the runtimes (please report this file)", c.Root.Path(cfgPath), firstErr)
}

// fingerprint hashes the plan's input.
func (c *Configurator) fingerprint(files []loadedFile) string {
	h := sha256.New()
	fmt.Fprintf(h, "containerd %s\x00mode %s\x00", c.Version, c.Containerd.Mode)
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00%d\x00", f.Path, len(f.Doc.data))
		h.Write(f.Doc.data)
	}
	for _, w := range c.wanted() {
		data, _, _ := c.readNode(w.OptionsPath)
		fmt.Fprintf(h, "%s\x00%d\x00", w.OptionsPath, len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func loads(files []loadedFile, p string) bool {
	for _, f := range files {
		if f.Path == p {
			return true
		}
	}
	return false
}

// candidates are the dialects a file may be written in, the detected one first.
func (c *Configurator) candidates(d Dialect) []Dialect {
	out := []Dialect{d}
	if c.Version.Major < 2 || d.ConfigVersion >= 3 {
		return out
	}
	for _, f := range []family{familyV3, familyGRPC} {
		if f.Name != d.Plugin {
			out = append(out, d.withFamily(f, "the naming containerd's merge of the imported files keeps"))
		}
	}
	return out
}

// handlerFile is the file that holds the handlers: the main config, or the drop-in.
func (c *Configurator) handlerFile(cfgPath string) string {
	if c.Containerd.Mode == "dropin" {
		return c.Containerd.DropinPath
	}
	return cfgPath
}

// planWith plans every change for one dialect.
func (c *Configurator) planWith(ctx context.Context, cfgPath string, doc *document, d Dialect, old []byte, existed, systemd bool) (Plan, error) {
	p := Plan{Dialect: d, SystemdCgroup: systemd, parsed: map[string]*document{}}
	wanted := c.wanted()
	if err := c.planOptions(&p, wanted); err != nil {
		return p, err
	}
	switch c.Containerd.Mode {
	case "", "inplace":
		out, changed, err := editDocument(ctx, doc, d, wanted)
		if err != nil {
			return p, fmt.Errorf("%s: %w", c.Root.Path(cfgPath), err)
		}
		if changed {
			c.change(&p, cfgPath, old, existed, out.data, 0o644, "register the runsc runtime handler")
			p.parsed[cfgPath] = out
			p.RestartNeeded = true
		}
		if c.Containerd.DropinPath != "" {
			if err := c.removeOwned(&p, c.Containerd.DropinPath, "in-place mode: the drop-in is no longer used"); err != nil {
				return p, err
			}
			if n := len(p.Changes); n > 0 && p.Changes[n-1].Path == c.Containerd.DropinPath {
				p.RestartNeeded = true
			}
		}
	case "dropin":
		if err := c.planDropin(ctx, &p, doc, d, old, existed, wanted); err != nil {
			return p, err
		}
	default:
		return p, fmt.Errorf("containerd mode %q: want inplace or dropin", c.Containerd.Mode)
	}
	p.mainDoc, p.overrides = doc, map[string]*document{}
	for _, ch := range p.Changes {
		if ch.Path != cfgPath && ch.Path != c.Containerd.DropinPath {
			continue
		}
		if ch.Remove {
			p.overrides[ch.Path] = nil
			continue
		}
		nd := p.parsed[ch.Path]
		if nd == nil || !bytes.Equal(nd.data, ch.New) {
			var err error
			if nd, err = parseDocumentContext(ctx, c.Root.Path(ch.Path), ch.New); err != nil {
				return p, err
			}
		}
		if ch.Path == cfgPath {
			p.mainDoc = nd
		} else {
			p.overrides[ch.Path] = nd
		}
	}
	return p, nil
}

// planOptions writes each wanted handler's shim options file and removes the
// second handler's file when that handler is turned off.
func (c *Configurator) planOptions(p *Plan, wanted []Handler) error {
	for _, h := range wanted {
		platform := c.Runsc.Platform
		if h.Name == HandlerRunscKVM {
			platform = "kvm"
		}
		o, err := optionsFor(c.Root, c.Runsc, h.Name, platform, p.SystemdCgroup)
		if err != nil {
			return err
		}
		o.BinaryName = c.runscBinary()
		old, existed, err := c.readNode(h.OptionsPath)
		if err != nil {
			return err
		}
		c.change(p, h.OptionsPath, old, existed, o.render(), 0o644, fmt.Sprintf("runsc shim options for handler %q", h.Name))
	}
	if !c.Runsc.KVMHandler {
		return c.removeOwned(p, kvmOptionsPath(c.Containerd.RuntimeConfigPath), "the runsc-kvm handler is turned off")
	}
	return nil
}

// planDropin puts the handlers in the drop-in, makes the root import it and
// removes handler stanzas an earlier in-place run left in the root.
func (c *Configurator) planDropin(ctx context.Context, p *Plan, doc *document, d Dialect, old []byte, existed bool, wanted []Handler) error {
	cfgPath, dropin := c.mainPath(), c.Containerd.DropinPath
	if dropin == "" {
		return fmt.Errorf("--mode dropin needs containerd.dropin_path")
	}
	if !hasStatements(doc) {
		// No root config: write one that only sets the version and the import.
		d.ConfigVersion = newFileVersion(c.Version)
		doc2, err := parseDocument("new config", append(append([]byte{}, old...), fmt.Sprintf("version = %d\n", d.ConfigVersion)...))
		if err != nil {
			return err
		}
		doc = doc2
		p.Dialect = d
	}
	if err := checkDropinAllowed(c.Version, d.ConfigVersion); err != nil {
		return err
	}
	rootDoc, _, err := editDocument(ctx, doc, d, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", c.Root.Path(cfgPath), err)
	}
	if err := refuseRevival(doc, rootDoc, d, c.Version); err != nil {
		return fmt.Errorf("%s: %w", c.Root.Path(cfgPath), err)
	}
	root, _, err := ensureImports(ctx, rootDoc, cfgPath, dropin, d.SingleQuotes)
	if err != nil {
		return fmt.Errorf("%s: %w", c.Root.Path(cfgPath), err)
	}
	// The drop-in is written before the root that imports it.
	n := len(p.Changes)
	oldDrop, dropExisted, err := c.readNode(dropin)
	if err != nil {
		return err
	}
	// The user's own keys of the handler tables move with them: from the
	// root's tables, else from the drop-in written before.
	keysFrom := doc.tree
	if dd, err := parseDocument(c.Root.Path(dropin), oldDrop); err == nil && dropExisted {
		if _, inRoot := lookup(doc.tree, d.HandlerPath(HandlerRunsc)); !inRoot {
			keysFrom = dd.tree
		}
	}
	wanted = withUserKeys(keysFrom, d, wanted)
	c.change(p, dropin, oldDrop, dropExisted, renderDropin(d, wanted), 0o644, "register the runsc runtime handler (drop-in)")
	c.change(p, cfgPath, old, existed, root, 0o644, "import the runsc drop-in")
	p.RestartNeeded = len(p.Changes) > n
	return nil
}

// refuseRevival refuses to take handlers out of a root config when they are the
// only runtimes of the tables containerd reads: with them gone, containerd 2 would
// read the runtimes under the other naming instead, which it ignores today
// (found by the generated-config test against containerd 2.3).
func refuseRevival(before, after *document, d Dialect, v Version) error {
	if _, had := lookup(before.tree, d.RuntimesPath()); !had {
		return nil
	}
	if _, still := lookup(after.tree, d.RuntimesPath()); still {
		return nil
	}
	d2, err := detectDialect(after, v)
	if err != nil || d2.Plugin == d.Plugin {
		return nil
	}
	if _, revived := lookup(after.tree, d2.RuntimesPath()); revived {
		return fmt.Errorf("the only runtimes under [%s] are gVisor handlers; moving them to the drop-in would make containerd read the runtimes under [%s] instead, which it ignores today; use --mode inplace, or remove the runtimes under [%s]", d.RuntimeTable, d2.RuntimeTable, d2.RuntimeTable)
	}
	return nil
}

// Apply writes the plan: the backup first, then each file atomically (keeping an
// existing file's mode and owner). A plan without changes writes nothing.
func (c *Configurator) Apply(p Plan) error {
	if p.Backup != nil && len(p.Changes) > 0 {
		if err := c.Root.WriteFile(p.Backup.Path, p.Backup.New, fsroot.WriteOptions{Mode: 0o600}); err != nil {
			return fmt.Errorf("keep a backup of the containerd config before changing it: %w", err)
		}
		c.log().Info("kept the original containerd config for uninstall", "backup", c.Root.Path(p.Backup.Path))
	}
	faultpoint.Hit("containerd-backup-written")
	for _, ch := range p.Changes {
		if ch.Remove {
			if err := c.Root.Remove(ch.Path); err != nil {
				return err
			}
			c.log().Info("removed", "path", c.Root.Path(ch.Path), "why", ch.Why)
			continue
		}
		faultpoint.Hit("containerd-before-write:" + ch.Path)
		if err := c.unchangedSincePlan(ch); err != nil {
			return err
		}
		if ch.LinkTarget != "" {
			// Written through, the link would write into read-only /usr.
			if err := os.Remove(c.Root.LinkPath(ch.Path)); err != nil {
				return fmt.Errorf("replace the symlink %s by a real file: %w", c.Root.Path(ch.Path), err)
			}
		}
		if err := c.Root.WriteFile(ch.Path, ch.New, fsroot.WriteOptions{Mode: ch.Mode}); err != nil {
			return err
		}
		faultpoint.Hit("containerd-after-write:" + ch.Path)
		c.log().Info("wrote", "path", c.Root.Path(ch.Path), "why", ch.Why)
	}
	return nil
}

// Diff is a unified diff of every change, for --dry-run.
func (p Plan) Diff() string {
	var b strings.Builder
	for _, ch := range p.Changes {
		from, to := ch.Path, ch.Path
		if !ch.Existed {
			from = "/dev/null"
		}
		if ch.Remove {
			to = "/dev/null"
		}
		d := difflib.UnifiedDiff{
			A: splitLines(ch.Old), B: splitLines(ch.New),
			FromFile: from, ToFile: to, Context: 3,
		}
		s, err := difflib.GetUnifiedDiffString(d)
		if err != nil {
			s = fmt.Sprintf("(cannot diff %s: %v)\n", ch.Path, err)
		}
		b.WriteString(s)
	}
	// The diff is shown and recorded; registry auth in the context lines is not.
	return redact.ConfigSecrets(b.String())
}

// splitLines splits for difflib; an empty file has no lines at all.
func splitLines(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	lines := strings.SplitAfter(string(b), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	} else {
		lines[len(lines)-1] += "\n"
	}
	return lines
}

// HasRunsc reports whether a containerd config defines the runsc handler under any
// CRI plugin table naming.
func HasRunsc(data []byte) (bool, error) {
	doc, err := parseDocument("containerd config", data)
	if err != nil {
		return false, err
	}
	return docHasRunsc(doc), nil
}

// docHasRunsc is HasRunsc of a parsed config.
func docHasRunsc(doc *document) bool {
	for _, f := range allFamilies {
		if _, ok := lookup(doc.tree, f.Handler(HandlerRunsc)); ok {
			return true
		}
	}
	return false
}

// modeOf is a node file's permission bits (0 when missing).
func modeOf(root fsroot.Root, p string) fs.FileMode {
	st, err := os.Stat(root.Path(p))
	if err != nil {
		return 0
	}
	return st.Mode().Perm()
}

// ErrChangedSincePlan: another agent rewrote a file between Plan and Apply. Writing
// the plan would throw their content away; plan again from what is there now.
var ErrChangedSincePlan = errors.New("changed since it was read")

// unchangedSincePlan narrows the window in which another writer's file could be
// replaced by a plan made from the previous content to the rename itself.
func (c *Configurator) unchangedSincePlan(ch FileChange) error {
	cur, err := c.Root.ReadFile(ch.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if !ch.Existed {
			return nil
		}
	case err != nil:
		return fmt.Errorf("re-read %s before writing it: %w", c.Root.Path(ch.Path), err)
	case ch.Existed && bytes.Equal(cur, ch.Old):
		return nil
	}
	return fmt.Errorf("%s %w; nothing was written to it", c.Root.Path(ch.Path), ErrChangedSincePlan)
}
