// Package podsim runs the containers of a rendered DaemonSet the way a container
// runtime runs them, for real, on this machine (the tests run as root): a private
// mount namespace, the image's files as a read-only root, exactly the pod's volume
// mounts (hostPath from a temp "host" directory, configMap, emptyDir) with their
// readOnly, /proc, uid 0 with every capability dropped (bounding, effective,
// permitted, inheritable, ambient) and no_new_privs. The network namespace is the
// host's (the loopback servers of the tests), as with nothing else: the rendered
// pod asks for no host namespace, so nothing it does may depend on one.
//
// The test binary re-executes itself (Child, from TestMain) to set the container
// up inside the new mount namespace, then execs the container's command.
package podsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// childEnv carries the container's spec to the re-executed test binary.
const childEnv = "GVB_PODSIM_CONTAINER"

// Mount is one mount of the container.
type Mount struct {
	Source, Target string
	ReadOnly       bool
	// Kind is "bind", "tmpfs" or "proc".
	Kind string
}

// Spec is one container, resolved against the host.
type Spec struct {
	Rootfs string
	// Mountpoint is an empty directory the container's root is mounted on (only in
	// its own mount namespace).
	Mountpoint string
	Mounts     []Mount
	Argv       []string
	Env        []string
}

// Pod is what a container needs from the pod and the node.
type Pod struct {
	// Host stands for the node's "/": hostPath volumes are taken from under it.
	Host string
	// Rootfs is the image's content (the DaemonSet image's files).
	Rootfs string
	// ConfigMaps by name, each key a file.
	ConfigMaps map[string]map[string]string
	// NodeName answers the downward API's spec.nodeName.
	NodeName string
	// Env is added to every container (e.g. GVB_FAULTPOINT for a test, and
	// KUBERNETES_SERVICE_HOST/PORT as kubelet sets them).
	Env []string
	// Token, CACert and Namespace fill a projected service-account volume.
	Token, CACert, Namespace string
	// scratch holds configMap and emptyDir volumes.
	scratch string
	mu      sync.Mutex
	volumes map[string]string
}

// Container resolves c of a pod spec ps into a Spec: every volume mount to its
// source, the env (literal values, spec.nodeName), and checks that the container
// asks for exactly what this runner emulates (uid 0, no privilege, read-only root,
// ALL capabilities dropped). Anything else is an error: the test would otherwise
// prove something about a pod the manifest does not describe.
func (p *Pod) Container(ps corev1.PodSpec, c corev1.Container) (Spec, error) {
	if ps.HostPID || ps.HostNetwork || ps.HostIPC {
		return Spec{}, fmt.Errorf("pod shares a host namespace: not what this runner emulates")
	}
	sc := c.SecurityContext
	if sc == nil || sc.Privileged == nil || *sc.Privileged || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.Capabilities == nil || len(sc.Capabilities.Add) != 0 || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" ||
		sc.RunAsUser == nil || *sc.RunAsUser != 0 || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		return Spec{}, fmt.Errorf("container %s: securityContext %+v is not the restricted one this runner emulates", c.Name, sc)
	}
	vols := map[string]corev1.Volume{}
	for _, v := range ps.Volumes {
		vols[v.Name] = v
	}
	s := Spec{Rootfs: p.Rootfs, Argv: append(append([]string{}, c.Command...), c.Args...)}
	s.Mounts = append(s.Mounts, Mount{Source: "proc", Target: "/proc", Kind: "proc"})
	for _, m := range c.VolumeMounts {
		v, ok := vols[m.Name]
		if !ok {
			return Spec{}, fmt.Errorf("container %s mounts volume %s, which the pod does not have", c.Name, m.Name)
		}
		src, kind, err := p.volume(v)
		if err != nil {
			return Spec{}, fmt.Errorf("container %s, volume %s: %w", c.Name, m.Name, err)
		}
		s.Mounts = append(s.Mounts, Mount{Source: src, Target: m.MountPath, ReadOnly: m.ReadOnly, Kind: kind})
	}
	// Parents first, as runtimes sort them.
	sort.SliceStable(s.Mounts, func(i, j int) bool {
		return strings.Count(filepath.Clean(s.Mounts[i].Target), "/") < strings.Count(filepath.Clean(s.Mounts[j].Target), "/")
	})
	s.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/"}, p.Env...)
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			s.Env = append(s.Env, e.Name+"="+e.Value)
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName":
			s.Env = append(s.Env, e.Name+"="+p.NodeName)
		default:
			return Spec{}, fmt.Errorf("container %s: env %s: only literal values and spec.nodeName are emulated", c.Name, e.Name)
		}
	}
	return s, nil
}

// volume returns a volume's source on this machine, made the way kubelet makes it.
func (p *Pod) volume(v corev1.Volume) (string, string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.volumes == nil {
		p.volumes = map[string]string{}
	}
	if src, ok := p.volumes[v.Name]; ok {
		return src, "bind", nil
	}
	if p.scratch == "" {
		d, err := os.MkdirTemp("", "podsim-vol")
		if err != nil {
			return "", "", err
		}
		p.scratch = d
	}
	var src string
	switch {
	case v.HostPath != nil:
		src = filepath.Join(p.Host, v.HostPath.Path)
		t := corev1.HostPathUnset
		if v.HostPath.Type != nil {
			t = *v.HostPath.Type
		}
		st, err := os.Stat(src)
		switch t {
		case corev1.HostPathDirectoryOrCreate:
			if err != nil {
				if err := os.MkdirAll(src, 0o755); err != nil {
					return "", "", err
				}
			} else if !st.IsDir() {
				return "", "", fmt.Errorf("hostPath %s is not a directory", v.HostPath.Path)
			}
		case corev1.HostPathDirectory:
			if err != nil || !st.IsDir() {
				return "", "", fmt.Errorf("hostPath %s (type Directory) does not exist on the node: the pod would not start", v.HostPath.Path)
			}
		case corev1.HostPathCharDev:
			if err != nil || st.Mode()&os.ModeCharDevice == 0 {
				return "", "", fmt.Errorf("hostPath %s (type CharDevice) is not a character device on the node", v.HostPath.Path)
			}
		default:
			return "", "", fmt.Errorf("hostPath type %q is not emulated", t)
		}
	case v.ConfigMap != nil:
		data, ok := p.ConfigMaps[v.ConfigMap.Name]
		if !ok {
			return "", "", fmt.Errorf("no ConfigMap %s", v.ConfigMap.Name)
		}
		src = filepath.Join(p.scratch, v.Name)
		if err := os.MkdirAll(src, 0o755); err != nil {
			return "", "", err
		}
		for k, val := range data {
			if err := os.WriteFile(filepath.Join(src, k), []byte(val), 0o644); err != nil {
				return "", "", err
			}
		}
	case v.Projected != nil:
		src = filepath.Join(p.scratch, v.Name)
		if err := os.MkdirAll(src, 0o755); err != nil {
			return "", "", err
		}
		for _, ps := range v.Projected.Sources {
			var name, data string
			switch {
			case ps.ServiceAccountToken != nil:
				name, data = ps.ServiceAccountToken.Path, p.Token
			case ps.ConfigMap != nil && ps.ConfigMap.Name == "kube-root-ca.crt" && len(ps.ConfigMap.Items) == 1:
				name, data = ps.ConfigMap.Items[0].Path, p.CACert
			case ps.DownwardAPI != nil && len(ps.DownwardAPI.Items) == 1 && ps.DownwardAPI.Items[0].FieldRef != nil && ps.DownwardAPI.Items[0].FieldRef.FieldPath == "metadata.namespace":
				name, data = ps.DownwardAPI.Items[0].Path, p.Namespace
			default:
				return "", "", fmt.Errorf("projected source not emulated: %+v", ps)
			}
			if err := os.WriteFile(filepath.Join(src, name), []byte(data), 0o644); err != nil {
				return "", "", err
			}
		}
	case v.EmptyDir != nil:
		src = filepath.Join(p.scratch, v.Name)
		if err := os.MkdirAll(src, 0o777); err != nil {
			return "", "", err
		}
	default:
		return "", "", fmt.Errorf("volume kind not emulated: %+v", v.VolumeSource)
	}
	p.volumes[v.Name] = src
	return src, "bind", nil
}

// Close removes the pod's scratch volumes.
func (p *Pod) Close() {
	if p.scratch != "" {
		os.RemoveAll(p.scratch)
	}
}

// Command returns the command that runs the container: the test binary itself
// (self), re-executed in a new mount namespace, where Child sets the container up.
func Command(self, mountpoint string, s Spec) (*exec.Cmd, error) {
	s.Mountpoint = mountpoint
	b, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = []string{childEnv + "=" + string(b)}
	// Go makes the new namespace's mounts private (MS_REC|MS_PRIVATE on /) before
	// exec: nothing the container mounts reaches the host.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Setpgid: true}
	return cmd, nil
}

// Child, called first thing in TestMain, turns a re-executed test binary into the
// container when it carries a spec, and never returns then.
func Child() {
	raw := os.Getenv(childEnv)
	if raw == "" {
		return
	}
	var s Spec
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		fatal("spec: %v", err)
	}
	if err := setup(s); err != nil {
		fatal("%v", err)
	}
	fatal("exec %s: %v", s.Argv[0], syscall.Exec(s.Argv[0], s.Argv, s.Env))
}

func fatal(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "podsim: "+format+"\n", a...)
	os.Exit(127)
}

func setup(s Spec) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	// A tmpfs holds the container's root: the image's files are copied in (a
	// runtime unpacks layers the same way), mount points made, then it is made
	// read-only.
	root := s.Mountpoint
	if err := unix.Mount("tmpfs", root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=256m"); err != nil {
		return fmt.Errorf("root tmpfs: %w", err)
	}
	if out, err := exec.Command("/bin/cp", "-a", s.Rootfs+"/.", root).CombinedOutput(); err != nil {
		return fmt.Errorf("copy the image's files: %v: %s", err, out)
	}
	for _, m := range s.Mounts {
		target := filepath.Join(root, m.Target)
		st, err := os.Stat(m.Source)
		if m.Kind == "bind" && err == nil && !st.IsDir() {
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			if f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
				f.Close()
			}
		} else if err := os.MkdirAll(target, 0o755); err != nil {
			return err
		}
		switch m.Kind {
		case "proc":
			err = unix.Mount("proc", target, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
		case "tmpfs":
			err = unix.Mount("tmpfs", target, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=64m")
		default:
			err = unix.Mount(m.Source, target, "", unix.MS_BIND|unix.MS_REC, "")
			if err == nil && m.ReadOnly {
				err = unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, "")
			}
		}
		if err != nil {
			return fmt.Errorf("mount %s at %s: %w", m.Source, m.Target, err)
		}
	}
	if err := unix.Mount("", root, "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("read-only root: %w", err)
	}
	last, err := capLast()
	if err != nil {
		return err
	}
	if err := unix.Chroot(root); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}
	// Capabilities are per thread: drop them on the thread that execs.
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	for c := 0; c <= last; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("drop capabilities: %w", err)
	}
	return nil
}

func capLast() (int, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(string(bytes.TrimSpace(b)))
}
