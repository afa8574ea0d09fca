package nodepaths

import (
	"path"
	"strings"
	"testing"
)

// Every path of the table is reachable by every role that uses it, with the access
// it needs, through exactly one mount (its own or an enclosing directory's).
func TestLayoutReachesEveryPathWithItsAccess(t *testing.T) {
	moved := DefaultSettings()
	moved.BinDir = "/opt/gvisor/bin"
	moved.RuntimeConfig = "/etc/gvisor/runsc.toml"
	moved.TextfileDir = "/var/lib/node_exporter/textfile"
	moved.KVM = true
	for name, s := range map[string]Settings{"default": DefaultSettings(), "moved": moved} {
		t.Run(name, func(t *testing.T) {
			table := Table(s)
			l := PodLayout(table)
			vols := map[string]Volume{}
			for _, v := range l.Volumes {
				if _, dup := vols[v.Name]; dup {
					t.Errorf("volume %s twice", v.Name)
				}
				vols[v.Name] = v
			}
			for _, e := range table {
				for r, a := range e.Access {
					var via []Mount
					for _, m := range l.Mounts[r] {
						if m.Host == e.Mount || strings.HasPrefix(e.Mount, m.Host+"/") {
							via = append(via, m)
						}
					}
					if len(via) == 0 {
						t.Errorf("%s: %s (%s) not mounted", r, e.What, e.Mount)
						continue
					}
					m := via[len(via)-1] // the deepest mount wins
					if a == Write && m.ReadOnly {
						t.Errorf("%s: %s needs write but %s is read-only", r, e.What, m.Host)
					}
					if vols[m.Volume].Host != m.Host {
						t.Errorf("%s: mount %s names volume %s of %s", r, m.Host, m.Volume, vols[m.Volume].Host)
					}
				}
			}
			// Nothing more than needed: a role's read-only mount is one no entry
			// needs to write through, and no mount is given to a role that uses
			// nothing under it.
			for r, ms := range l.Mounts {
				for _, m := range ms {
					need := None
					for _, e := range table {
						if e.Mount == m.Host || strings.HasPrefix(e.Mount, m.Host+"/") {
							if e.Access[r] > need {
								need = e.Access[r]
							}
						}
					}
					if need == None || (need == Read) != m.ReadOnly {
						t.Errorf("%s: mount %s readOnly=%v, the table needs %v", r, m.Host, m.ReadOnly, need)
					}
				}
			}
		})
	}
}

func TestDefaultLayout(t *testing.T) {
	l := PodLayout(Table(DefaultSettings()))
	got := map[Role]string{}
	for r, ms := range l.Mounts {
		var parts []string
		for _, m := range ms {
			mode := "rw"
			if m.ReadOnly {
				mode = "ro"
			}
			parts = append(parts, m.Host+":"+mode)
		}
		got[r] = strings.Join(parts, " ")
	}
	want := map[Role]string{
		RoleConfig:    "/etc/gvisor-bootstrap:rw",
		RoleInstall:   "/etc/gvisor-bootstrap:ro /etc/systemd/system:rw /run/dbus:ro /run/gvisor-bootstrap:rw /usr/local/bin:rw /var/lib/gvisor-bootstrap:rw",
		RoleReconcile: "/etc/containerd:rw /etc/gvisor-bootstrap:ro /run/containerd:ro /run/dbus:ro /run/gvisor-bootstrap:rw /usr/local/bin:rw /var/lib/gvisor-bootstrap:rw",
	}
	for _, r := range Roles {
		if got[r] != want[r] {
			t.Errorf("%s mounts\n got %s\nwant %s", r, got[r], want[r])
		}
	}
	// The locks and the last-run record are in one directory both the install
	// and the reconcile containers mount read-write.
	for _, p := range []string{RunLock, InstallLock, LastRun} {
		if path.Dir(p) != RunDir {
			t.Errorf("%s is not in %s", p, RunDir)
		}
	}
}

func TestVolumeName(t *testing.T) {
	for in, want := range map[string]string{"/etc/containerd": "host-etc-containerd", "/run/gvisor-bootstrap": "host-run-gvisor-bootstrap", "/opt/My_Bin/": "host-opt-my-bin", "/dev/kvm": "host-dev-kvm"} {
		if got := VolumeName(in); got != want {
			t.Errorf("VolumeName(%q) = %q, want %q", in, got, want)
		}
	}
}
