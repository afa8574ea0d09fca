// Package nodepaths declares, once, every path gvisor-bootstrap reads or writes on a
// node, and who needs it how. The code uses these names; `render daemonset` derives
// the DaemonSet's hostPath volumes, each container's mounts and their readOnly from
// Table, so the pod can reach exactly what its commands touch and nothing else.
//
// It imports nothing of the project, so config (defaults) and every package that
// touches the node can use it.
package nodepaths

import (
	"fmt"
	"path"
	"sort"
	"strings"
)

// Fixed node paths.
const (
	// ToolConfigDir holds the tool's own config (ToolConfig).
	ToolConfigDir = "/etc/gvisor-bootstrap"
	ToolConfig    = ToolConfigDir + "/config.toml"

	// RunDir is root-only (0700) and on tmpfs. It holds the locks, so that every run
	// on a node takes the same lock whether it runs on the host (boot unit, path
	// unit, kubelet gate, an operator) or in the DaemonSet's pod, which mounts this
	// directory. It is not /run/lock: that is world-writable, so anyone could hold
	// the lock there (and fs.protected_regular turns a file planted there into a
	// confusing EACCES for root).
	RunDir = "/run/gvisor-bootstrap"
	// RunLock serialises every reconcile and uninstall on the node.
	RunLock = RunDir + "/run.lock"
	// InstallLock serialises changes to the bin dir (install, run, uninstall).
	InstallLock = RunDir + "/install.lock"
	// LastRun is the last run's record (tmpfs: recording a healthy boot writes
	// nothing to disk).
	LastRun = RunDir + "/last-run.json"
	// FailedAttempt remembers a run that restarted containerd and failed;
	// FailedDownload, a release artifact that failed verification. Both keep the
	// kubelet gate's retries from repeating the same failure in a loop.
	FailedAttempt  = RunDir + "/failed-attempt.json"
	FailedDownload = RunDir + "/failed-download.json"

	// StateDir holds what survives reboots: the install record and the backup of
	// containerd's original config.
	StateDir     = "/var/lib/gvisor-bootstrap"
	ReleaseState = StateDir + "/release.json"

	// Binary is where every unit expects the tool itself.
	Binary = "/usr/local/bin/gvisor-bootstrap"
	// UnitDir is the administrator's unit directory the units are installed into.
	UnitDir = "/etc/systemd/system"
	// DBusSocket is the system bus: systemd is driven through it (restart
	// containerd, daemon-reload, enable and start units).
	DBusSocket = "/run/dbus/system_bus_socket"
	// KVM is needed only by runsc's kvm platform.
	KVM = "/dev/kvm"
)

// KubeletKubeconfigs are where kubelet keeps its own API credentials (AKS, then
// kubeadm): `uninstall` on the host uses them to take its Node out of the gVisor
// pool. Read only, on the host (the DaemonSet's pod has its service account).
var KubeletKubeconfigs = []string{"/var/lib/kubelet/kubeconfig", "/etc/kubernetes/kubelet.conf"}

// Defaults of the paths the config can move.
const (
	DefaultBinDir           = "/usr/local/bin"
	DefaultContainerdConfig = "/etc/containerd/config.toml"
	DefaultDropin           = "/etc/containerd/conf.d/90-gvisor-runsc.toml"
	DefaultRuntimeConfig    = "/etc/containerd/runsc.toml"
	DefaultBackup           = StateDir + "/config.toml.orig"
	DefaultCRISocket        = "/run/containerd/containerd.sock"
)

// Role is one of the DaemonSet's containers, named after what it runs.
type Role string

const (
	// RoleConfig copies the ConfigMap's config to the host (`render config -o`).
	RoleConfig Role = "config"
	// RoleInstall installs the tool, the release and the units (`install --units`).
	RoleInstall Role = "install"
	// RoleReconcile is the long-running `run --watch`.
	RoleReconcile Role = "reconcile"
)

// Roles in the order the pod runs them.
var Roles = []Role{RoleConfig, RoleInstall, RoleReconcile}

// Access is how a role uses a path.
type Access int

const (
	None Access = iota
	Read
	// Write needs the containing directory writable: files are replaced by rename.
	Write
)

// Kind is what a hostPath volume must find on the host (its `type`).
type Kind string

const (
	// DirOrCreate: a directory the tool may be the first to need.
	DirOrCreate Kind = "DirectoryOrCreate"
	// Dir: a directory that must already exist (another component's).
	Dir Kind = "Directory"
	// CharDevice: a device node.
	CharDevice Kind = "CharDevice"
)

// Entry is one node path the product uses.
type Entry struct {
	// What the path is, for people (and the rendered manifest's comments).
	What string
	// Paths are the node paths the product reads or writes there.
	Paths []string
	// Mount is the host path a pod mounts to reach them: the directory (a file is
	// replaced by rename, a socket is recreated when its daemon restarts, so both
	// need their directory), or the device itself.
	Mount string
	Kind  Kind
	// Access by role; a role not listed does not get the mount.
	Access map[Role]Access
}

// Settings are the node paths the tool's config can move (config.Config holds
// them; the config package fills this in).
type Settings struct {
	BinDir           string
	ContainerdConfig string
	Dropin           string
	RuntimeConfig    string
	Backup           string
	CRISocket        string
	// TextfileDir is the node-exporter textfile directory ("" when unset).
	TextfileDir string
	// KVM is set when a handler uses runsc's kvm platform (/dev/kvm is checked).
	KVM bool
}

// DefaultSettings are Settings for the built-in defaults.
func DefaultSettings() Settings {
	return Settings{BinDir: DefaultBinDir, ContainerdConfig: DefaultContainerdConfig, Dropin: DefaultDropin,
		RuntimeConfig: DefaultRuntimeConfig, Backup: DefaultBackup, CRISocket: DefaultCRISocket}
}

// Table is every node path the product uses with these settings.
func Table(s Settings) []Entry {
	rw := func(roles ...Role) map[Role]Access {
		m := map[Role]Access{}
		for _, r := range roles {
			m[r] = Write
		}
		return m
	}
	t := []Entry{
		{What: "the tool's config", Paths: []string{ToolConfig}, Mount: ToolConfigDir, Kind: DirOrCreate,
			Access: map[Role]Access{RoleConfig: Write, RoleInstall: Read, RoleReconcile: Read}},
		{What: "locks and the last-run record (root-only, tmpfs)", Paths: []string{RunLock, InstallLock, LastRun, FailedAttempt, FailedDownload}, Mount: RunDir, Kind: DirOrCreate,
			Access: rw(RoleInstall, RoleReconcile)},
		{What: "the gVisor release (runsc, shim, gvisor-bin/)", Paths: []string{s.BinDir}, Mount: s.BinDir, Kind: DirOrCreate,
			Access: rw(RoleInstall, RoleReconcile)},
		{What: "the tool itself, run by the units", Paths: []string{Binary}, Mount: path.Dir(Binary), Kind: DirOrCreate,
			Access: rw(RoleInstall)},
		{What: "install record and containerd's original config", Paths: []string{ReleaseState, s.Backup}, Mount: StateDir, Kind: DirOrCreate,
			Access: rw(RoleInstall, RoleReconcile)},
		{What: "systemd units and the kubelet gate drop-in", Paths: []string{UnitDir}, Mount: UnitDir, Kind: Dir,
			Access: rw(RoleInstall)},
		{What: "containerd's config", Paths: []string{s.ContainerdConfig}, Mount: path.Dir(s.ContainerdConfig), Kind: Dir,
			Access: rw(RoleReconcile)},
		{What: "containerd's drop-in directory", Paths: []string{s.Dropin}, Mount: path.Dir(s.Dropin), Kind: DirOrCreate,
			Access: rw(RoleReconcile)},
		{What: "runsc's options (runsc.toml)", Paths: []string{s.RuntimeConfig}, Mount: path.Dir(s.RuntimeConfig), Kind: DirOrCreate,
			Access: rw(RoleReconcile)},
		// A unix socket can be connected to on a read-only mount: connecting is not
		// a write to the filesystem.
		{What: "containerd's CRI socket", Paths: []string{s.CRISocket}, Mount: path.Dir(s.CRISocket), Kind: Dir,
			Access: map[Role]Access{RoleReconcile: Read}},
		{What: "the system D-Bus (systemd)", Paths: []string{DBusSocket}, Mount: path.Dir(DBusSocket), Kind: Dir,
			Access: map[Role]Access{RoleInstall: Read, RoleReconcile: Read}},
	}
	if s.TextfileDir != "" {
		t = append(t, Entry{What: "node-exporter textfile metrics", Paths: []string{s.TextfileDir}, Mount: s.TextfileDir, Kind: DirOrCreate,
			Access: rw(RoleReconcile)})
	}
	if s.KVM {
		t = append(t, Entry{What: "KVM (runsc platform kvm)", Paths: []string{KVM}, Mount: KVM, Kind: CharDevice,
			Access: map[Role]Access{RoleReconcile: Read}})
	}
	return t
}

// Volume is one hostPath volume of the pod.
type Volume struct {
	Name string
	Host string
	Kind Kind
	What []string
}

// Mount is one container's mount of a Volume at prefix+Host.
type Mount struct {
	Volume   string
	Host     string
	ReadOnly bool
}

// Layout is the pod's host volumes and each role's mounts, derived from a table:
// one volume per distinct host directory; a role gets the widest access any entry
// gives it there; a mount already covered by a mount of an enclosing directory with
// at least the same access is left out.
type Layout struct {
	Volumes []Volume
	Mounts  map[Role][]Mount
}

// PodLayout derives the Layout from t.
func PodLayout(t []Entry) Layout {
	type dir struct {
		kind   Kind
		what   []string
		access map[Role]Access
	}
	dirs := map[string]*dir{}
	for _, e := range t {
		d := dirs[e.Mount]
		if d == nil {
			d = &dir{kind: e.Kind, access: map[Role]Access{}}
			dirs[e.Mount] = d
		}
		// A directory the tool may create wins over one that must exist only if no
		// entry requires it to exist.
		if e.Kind == Dir {
			d.kind = Dir
		}
		d.what = append(d.what, e.What)
		for r, a := range e.Access {
			if a > d.access[r] {
				d.access[r] = a
			}
		}
	}
	hosts := make([]string, 0, len(dirs))
	for h := range dirs {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	// covered: an enclosing directory of h is mounted for r with at least access a.
	covered := func(h string, r Role, a Access) bool {
		for p := path.Dir(h); ; p = path.Dir(p) {
			if d, ok := dirs[p]; ok && d.access[r] >= a {
				return true
			}
			if p == "/" || p == "." {
				return false
			}
		}
	}
	names, taken := map[string]string{}, map[string]bool{}
	for _, h := range hosts {
		n := VolumeName(h)
		for i := 2; taken[n]; i++ {
			n = fmt.Sprintf("%s-%d", VolumeName(h), i)
		}
		names[h], taken[n] = n, true
	}
	l := Layout{Mounts: map[Role][]Mount{}}
	used := map[string]bool{}
	for _, r := range Roles {
		for _, h := range hosts {
			a := dirs[h].access[r]
			if a == None || covered(h, r, a) {
				continue
			}
			l.Mounts[r] = append(l.Mounts[r], Mount{Volume: names[h], Host: h, ReadOnly: a != Write})
			used[h] = true
		}
	}
	for _, h := range hosts {
		if used[h] {
			l.Volumes = append(l.Volumes, Volume{Name: names[h], Host: h, Kind: dirs[h].kind, What: dirs[h].what})
		}
	}
	return l
}

// VolumeName is the pod volume's name for a host path: "host-" and the path's
// elements joined by '-' (lower-case, other characters replaced), e.g.
// /etc/containerd -> host-etc-containerd.
func VolumeName(host string) string {
	var b strings.Builder
	b.WriteString("host")
	for _, c := range strings.ToLower(host) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			b.WriteRune(c)
		default:
			b.WriteByte('-')
		}
	}
	n := strings.TrimRight(b.String(), "-")
	for strings.Contains(n, "--") {
		n = strings.ReplaceAll(n, "--", "-")
	}
	if len(n) > 63 {
		n = strings.TrimRight(n[:63], "-")
	}
	return n
}
