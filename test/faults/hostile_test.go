package faults

import (
	"crypto/sha512"
	"encoding/hex"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/release/releasetest"
)

// escapeNode is a node root at <tmp>/root with a directory beside it,
// <tmp>/elsewhere, that stands for a host directory outside the root (a link on
// a hostile or misconfigured node names it).
func escapeNode(t *testing.T) (n *node, outside string) {
	t.Helper()
	parent := t.TempDir()
	n = newNodeIn(t, filepath.Join(parent, "root"))
	outside = filepath.Join(parent, "elsewhere")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	// The host's own files there, which a run must never touch.
	for name, data := range map[string]string{"config.toml": "# the host's own file\n", "bin/runsc": "host runsc\n"} {
		p := filepath.Join(outside, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return n, outside
}

// treeDigest lists every entry under dir with its type and content digest.
func treeDigest(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		line := rel + " " + d.Type().String()
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s := sha512.Sum512(b)
			line += " " + hex.EncodeToString(s[:8])
		}
		if d.Type()&fs.ModeSymlink != 0 {
			tgt, _ := os.Readlink(p)
			line += " -> " + tgt
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// relink replaces the node directory nodeDir (with whatever it holds) by a
// symlink to target, and puts the content back where the node now finds it:
// through the link, resolved inside the root.
func (n *node) relink(nodeDir, target string) {
	n.t.Helper()
	files := map[string][]byte{}
	dir := n.root.LinkPath(nodeDir)
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			files[rel], _ = os.ReadFile(p)
		}
		return nil
	})
	if err := os.RemoveAll(dir); err != nil {
		n.t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		n.t.Fatal(err)
	}
	if err := os.Symlink(target, dir); err != nil {
		n.t.Fatal(err)
	}
	for rel, data := range files {
		n.writeFile(filepath.Join(nodeDir, rel), string(data), 0o644)
	}
}

// TestRootEscapeThroughSymlinks: node directories that are symlinks pointing
// out of the root, absolutely or through "..", resolve as a chroot would. A full
// run (install, configure, and install --units) writes nothing outside the root,
// the node's files are right where the node sees them, and what the run prints
// names only paths under the root.
func TestRootEscapeThroughSymlinks(t *testing.T) {
	newConfig, _ := wantNew(t)
	cases := []struct {
		name, nodeDir string
		target        func(outside string) string
	}{
		// R/etc/containerd -> /elsewhere (the host's directory).
		{"containerd dir absolute", "/etc/containerd", func(o string) string { return o }},
		// R/etc/containerd -> ../../elsewhere: on the host that is <tmp>/elsewhere.
		{"containerd dir relative", "/etc/containerd", func(string) string { return "../../elsewhere" }},
		{"containerd dir deep relative", "/etc/containerd", func(o string) string { return "../../../../../../../../.." + o }},
		{"usr/local absolute", "/usr/local", func(o string) string { return o }},
		{"usr/local relative", "/usr/local", func(string) string { return "../../elsewhere" }},
		{"bin dir absolute", "/usr/local/bin", func(o string) string { return filepath.Join(o, "bin") }},
		{"state dir absolute", "/var/lib/gvisor-bootstrap", func(o string) string { return o }},
		{"systemd units absolute", "/etc/systemd/system", func(o string) string { return o }},
		{"kubelet drop-in dir relative", "/etc/systemd/system/kubelet.service.d", func(string) string { return "../../../../elsewhere" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n, outside := escapeNode(t)
			n.relink(c.nodeDir, c.target(outside))
			before := treeDigest(t, outside)

			r := n.run()
			if r.code != 10 {
				t.Fatalf("run: %s", r)
			}
			units := n.exec(nil, "install", "--units")
			if units.code != 0 && units.code != 10 {
				t.Fatalf("install --units: %s", units)
			}

			if after := treeDigest(t, outside); after != before {
				t.Fatalf("the run wrote outside the root:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if fi, err := os.Lstat(n.root.LinkPath(c.nodeDir)); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
				t.Fatalf("%s is no longer the node's symlink: %v %v", c.nodeDir, fi, err)
			}
			if got := n.read("/etc/containerd/config.toml"); string(got) != string(newConfig) {
				t.Fatalf("the node's containerd config is not the new one:\n%s", got)
			}
			if rel := n.binState(); rel != newRel {
				t.Fatalf("the node's release is %q, want %s", rel, newRel)
			}
			for _, p := range []string{"/usr/local/bin/gvisor-bootstrap", "/etc/systemd/system/gvisor-bootstrap.service",
				"/etc/systemd/system/kubelet.service.d/10-gvisor-bootstrap.conf", "/var/lib/gvisor-bootstrap/release.json"} {
				if _, err := os.Stat(n.path(p)); err != nil {
					t.Errorf("the node has no %s: %v", p, err)
				}
			}
			if v := n.exec(nil, "verify", "--deep"); v.code != 0 {
				t.Fatalf("verify --deep: %s", v)
			}
			// What the user sees names the root's files, never the host's.
			out := r.stdout + r.stderr + units.stdout + units.stderr
			hostPath := regexp.MustCompile(`(^|[^A-Za-z0-9_./-])` + regexp.QuoteMeta(outside))
			if loc := hostPath.FindStringIndex(out); loc != nil {
				t.Fatalf("output names the host's directory %s:\n%s", outside, out)
			}
		})
	}
}

// TestHostFileSymlinksResolveInsideRoot: Azure Container Linux links
// /etc/containerd/config.toml to /usr/share/containerd/config.toml. Under --root
// (the DaemonSet's /host), the link resolves inside the root, absolute or
// relative: the node's target file gets runsc, the link stays a link, and the
// file of the same name outside the root (the container's own) is untouched.
func TestHostFileSymlinksResolveInsideRoot(t *testing.T) {
	newConfig, _ := wantNew(t)
	for name, target := range map[string]func(outside string) string{
		"absolute": func(o string) string { return filepath.Join(o, "config.toml") },
		"relative": func(string) string { return "../../../elsewhere/config.toml" },
	} {
		t.Run(name, func(t *testing.T) {
			n, outside := escapeNode(t)
			link := n.root.LinkPath("/etc/containerd/config.toml")
			if err := os.Remove(link); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target(outside), link); err != nil {
				t.Fatal(err)
			}
			n.writeFile("/etc/containerd/config.toml", oldContainerdConfig, 0o644) // through the link, inside the root
			before := treeDigest(t, outside)
			r := n.run()
			if r.code != 10 {
				t.Fatalf("run: %s", r)
			}
			if after := treeDigest(t, outside); after != before {
				t.Fatalf("the run wrote outside the root:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
				t.Fatalf("config.toml is no longer a symlink: %v %v", fi, err)
			}
			if got := n.read("/etc/containerd/config.toml"); string(got) != string(newConfig) {
				t.Fatalf("the node's config (through the link) is not the new one:\n%s", got)
			}
			if v := n.exec(nil, "verify", "--deep"); v.code != 0 {
				t.Fatalf("verify --deep: %s", v)
			}
		})
	}
}

// TestPlainHTTPWithoutPins: release.url over plain http with no pinned digests
// is refused before any request, by `run` and by `render` alike; with every
// digest pinned the same server is used.
func TestPlainHTTPWithoutPins(t *testing.T) {
	newConfig, _ := wantNew(t)
	n := newNode(t)
	plain := releasetest.NewPlainServer(t)
	plain.AddBundle(newRel, arch, releaseFiles(newRel))
	n.extra = ""
	url := plain.DirURL(newRel, arch)
	cfg := strings.Replace(string(n.read("/etc/gvisor-bootstrap/config.toml")), "[release]\n", "[release]\nurl = \""+url+"\"\n", 1)
	n.writeFile("/etc/gvisor-bootstrap/config.toml", cfg, 0o644)
	before := treeDigest(t, n.dir)

	const says = "plain HTTP is refused unless every artifact's sha512 is pinned"
	for _, args := range [][]string{{"run"}, {"install"}, {"render", "cloud-init", "--baked"}, {"render", "config"}} {
		r := n.exec(nil, args...)
		if r.code != 2 {
			t.Fatalf("%v: want exit 2 (bad input): %s", args, r)
		}
		mustContain(t, r.stderr, says, `release.url "`+url+`"`, `release.sha512."gvisor.tar.bz2"`, "https://")
		t.Logf("%v: user sees: %s", args, strings.TrimSpace(r.stderr))
	}
	if n := len(plain.Requests()); n != 0 {
		t.Fatalf("%d requests to the plain-HTTP server", n)
	}
	if after := treeDigest(t, n.dir); after != before {
		t.Fatalf("the node changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// Every artifact pinned: installs from the same plain server.
	pin := plain.Pins(newRel, arch)["gvisor.tar.bz2"]
	n.writeFile("/etc/gvisor-bootstrap/config.toml", cfg+"\n[release.sha512]\n\"gvisor.tar.bz2\" = \""+pin+"\"\n", 0o644)
	if r := n.run(); r.code != 10 {
		t.Fatalf("pinned plain HTTP: %s", r)
	}
	if got := n.read("/etc/containerd/config.toml"); string(got) != string(newConfig) {
		t.Fatalf("config after the pinned run:\n%s", got)
	}
	if rel := n.binState(); rel != newRel {
		t.Fatalf("release %q", rel)
	}
}

const (
	secretPassword = "hunter2password"
	secretSig      = "SECRETSIGd3adb33f"
	secretRegistry = "REGISTRYPASSc0ffee"
)

// A containerd config whose registry auth sits right where runsc's table goes,
// so the config diff's context lines hold the password.
const configWithRegistryAuth = `version = 2

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "mcr.microsoft.com/oss/kubernetes/pause:3.6"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".registry.configs."myreg.azurecr.io".auth]
    username = "ops"
    password = "` + secretRegistry + `"
    auth = "` + secretRegistry + `"
`

// secretURL is u with a password and an Azure SAS query.
func secretURL(u string) string {
	return strings.Replace(u, "https://", "https://gvbuser:"+secretPassword+"@", 1) + "?sv=2024-01-01&se=2027-01-01&sig=" + secretSig + "%3D"
}

// noSecrets fails if any credential appears in what the user sees or in a file.
func noSecrets(t *testing.T, where, s string) {
	t.Helper()
	for _, secret := range []string{secretPassword, secretSig, secretRegistry} {
		if strings.Contains(s, secret) {
			t.Errorf("%s shows a credential (%s):\n%s", where, secret, s)
		}
	}
}

// TestCredentialsNeverShown: a release URL with userinfo and a SAS token, and
// registry auth in containerd's config. Nothing the tool prints (text or JSON,
// success or failure, including the wrapped Go errors of net/http) and no file
// it writes (release.json, the last-run record with its config diff, metrics)
// holds a credential; the files that can hold config text are 0600.
func TestCredentialsNeverShown(t *testing.T) {
	n := newNode(t)
	n.extra = "\n[metrics]\ntextfile_dir = \"/var/lib/node_exporter\"\n"
	n.writeToolConfig()
	cfg := strings.Replace(string(n.read("/etc/gvisor-bootstrap/config.toml")), "[release]\n",
		"[release]\nurl = \""+secretURL(n.srv.DirURL(newRel, arch))+"\"\n", 1)
	n.writeFile("/etc/gvisor-bootstrap/config.toml", cfg, 0o644)
	n.writeFile("/etc/containerd/config.toml", configWithRegistryAuth, 0o644)

	dry := n.exec(nil, "configure", "--dry-run")
	noSecrets(t, "configure --dry-run", dry.stdout+dry.stderr)
	mustContain(t, dry.stdout, `password = "REDACTED"`) // the context line was there, scrubbed

	r := n.exec(nil, "run", "--json")
	if r.code != 10 {
		t.Fatalf("run: %s", r)
	}
	noSecrets(t, "run --json", r.stdout+r.stderr)
	for _, args := range [][]string{{"status"}, {"status", "--json"}, {"install", "--dry-run", "--json"}, {"verify"}} {
		o := n.exec(nil, args...)
		noSecrets(t, strings.Join(args, " "), o.stdout+o.stderr)
	}
	mustContain(t, string(n.read("/var/lib/gvisor-bootstrap/release.json")), "sig=REDACTED", "REDACTED@")
	// render's output is the deliverable (customData, the node's config): it
	// carries the URL as configured, or the node could not download.
	if o := n.exec(nil, "render", "config"); !strings.Contains(o.stdout, secretSig) || o.code != 0 {
		t.Errorf("render config lost the configured URL: %s", o)
	}
	for p, mode := range map[string]fs.FileMode{
		"/var/lib/gvisor-bootstrap/release.json":       0,
		"/run/gvisor-bootstrap/last-run.json":          0o600,
		"/var/lib/node_exporter/gvisor_bootstrap.prom": 0,
		"/var/lib/gvisor-bootstrap/config.toml.orig":   0o600,
	} {
		b := n.read(p)
		if b == nil {
			t.Errorf("%s was not written", p)
		}
		if !strings.HasSuffix(p, ".orig") { // the backup is the user's file, restored by uninstall: 0600
			noSecrets(t, p, string(b))
		}
		if fi, err := os.Stat(n.path(p)); err == nil && mode != 0 && fi.Mode().Perm() != mode {
			t.Errorf("%s has mode %04o, want %04o", p, fi.Mode().Perm(), mode)
		}
	}
	if !strings.Contains(string(n.read("/run/gvisor-bootstrap/last-run.json")), `password = \"REDACTED\"`) {
		t.Errorf("the last-run record's diff lost the scrubbed context line:\n%s", n.read("/run/gvisor-bootstrap/last-run.json"))
	}

	// Failures: a server that is gone (net/http's *url.Error repeats the URL),
	// then a 404 and a 403.
	closed := releasetest.StartTLS(t, http.NotFoundHandler())
	gone := closed.URL
	closed.Close()
	for name, url := range map[string]string{
		"connection refused": secretURL(gone + releasetest.BasePath + "/" + oldRel + "/" + arch),
		"404":                secretURL(n.srv.DirURL("19990101.0", arch)),
	} {
		t.Run(name, func(t *testing.T) {
			bad := strings.Replace(cfg, secretURL(n.srv.DirURL(newRel, arch)), url, 1)
			bad = strings.Replace(bad, "version = \""+newRel+"\"", "version = \""+oldRel+"\"", 1)
			n.writeFile("/etc/gvisor-bootstrap/config.toml", bad, 0o644)
			for _, args := range [][]string{{"run"}, {"run", "--json"}, {"install", "--json"}} {
				o := n.exec(nil, args...)
				if o.code != 1 {
					t.Fatalf("%v: want exit 1: %s", args, o)
				}
				noSecrets(t, strings.Join(args, " "), o.stdout+o.stderr)
				mustContain(t, o.stderr, "REDACTED")
			}
			noSecrets(t, "last-run record", string(n.read("/run/gvisor-bootstrap/last-run.json")))
		})
	}
	n.srv.SetFault(releasetest.BasePath+"/"+newRel+"/"+arch+"/gvisor.tar.bz2.sha512", releasetest.Fault{Code: 403})
	_ = n.exec(nil, "uninstall")
	n.writeFile("/etc/gvisor-bootstrap/config.toml", cfg, 0o644)
	o := n.exec(nil, "install")
	if o.code != 1 {
		t.Fatalf("403: want exit 1: %s", o)
	}
	noSecrets(t, "install (403)", o.stdout+o.stderr)
	mustContain(t, o.stderr, "HTTP 403", "sig=REDACTED")
}

// TestBundleBombOnTheNode: a bundle whose skipped README is more than any README
// (17 MiB of zeros, a few hundred bytes compressed) is refused from the entry's
// header, before it is decompressed; nothing changes on the node.
func TestBundleBombOnTheNode(t *testing.T) {
	newConfig, _ := wantNew(t)
	n := newNode(t)
	n.install(oldRel)
	files := releaseFiles(newRel)
	files["README"] = make([]byte, 17<<20)
	n.srv.AddBundle(newRel, arch, files)
	r := n.run()
	if r.code != 1 {
		t.Fatalf("want exit 1: %s", r)
	}
	mustContain(t, r.stderr, "FAILED", `entry "README" (17825792 bytes) exceeds the size bounds`, "not changed")
	if rel := n.binState(); rel != oldRel {
		t.Fatalf("binaries %q after the bomb, want the old release", rel)
	}
	if left, _ := filepath.Glob(n.path("/usr/local/bin/.gvisor-staging-*")); len(left) != 0 {
		t.Fatalf("staging left behind: %v", left)
	}
	n.srv.AddBundle(newRel, arch, releaseFiles(newRel))
	n.completes(newConfig)
}

// TestFileSourcesAreBounded: a file:// release gets HTTP's size limit, and only
// regular files are read (a link to /dev/zero would be copied without end).
func TestFileSourcesAreBounded(t *testing.T) {
	for name, prepare := range map[string]func(t *testing.T, dir string){
		"2 GiB bundle (sparse)": func(t *testing.T, dir string) {
			if err := os.Truncate(filepath.Join(dir, "gvisor.tar.bz2"), 2<<30); err != nil {
				t.Fatal(err)
			}
		},
		"bundle is /dev/zero": func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "gvisor.tar.bz2"))
			if err := os.Symlink("/dev/zero", filepath.Join(dir, "gvisor.tar.bz2")); err != nil {
				t.Fatal(err)
			}
		},
		"checksum file is /dev/zero": func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "gvisor.tar.bz2.sha512"))
			if err := os.Symlink("/dev/zero", filepath.Join(dir, "gvisor.tar.bz2.sha512")); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			n := newNode(t)
			n.install(oldRel)
			dir := t.TempDir()
			n.srv.WriteTree(newRel, arch, dir)
			prepare(t, dir)
			cfg := strings.Replace(string(n.read("/etc/gvisor-bootstrap/config.toml")), "[release]\n", "[release]\nurl = \"file://"+dir+"\"\n", 1)
			n.writeFile("/etc/gvisor-bootstrap/config.toml", cfg, 0o644)
			r := n.run()
			if r.code != 1 {
				t.Fatalf("want exit 1: %s", r)
			}
			if strings.Contains(name, "sparse") {
				mustContain(t, r.stderr, "is 2147483648 bytes, more than the 1073741824 allowed")
			} else {
				mustContain(t, r.stderr, "is not a regular file")
			}
			if rel := n.binState(); rel != oldRel {
				t.Fatalf("binaries %q, want the old release", rel)
			}
		})
	}
}

// TestBadDurationsAndURLsAreRefused: values install would misread or refuse are
// bad input (exit 2, nothing changed) for every command, render included.
func TestBadDurationsAndURLsAreRefused(t *testing.T) {
	n := newNode(t)
	base := string(n.read("/etc/gvisor-bootstrap/config.toml"))
	before := treeDigest(t, n.dir)
	for _, c := range []struct {
		name, from, to, says string
	}{
		{"timeout without unit", `timeout = "3s"`, `timeout = 30`, `release.timeout = 30: a duration needs a unit and quotes, e.g. release.timeout = "30s" (seconds) or "5m"`},
		{"negative timeout", `timeout = "3s"`, `timeout = "-3s"`, `release.timeout = "-3s" is out of range: want 1s to 24h0m0s`},
		{"ftp", "[release]\n", "[release]\nurl = \"ftp://mirror.example/gvisor\"\n", `scheme "ftp" not supported`},
		{"go-getter forcing", "[release]\n", "[release]\nurl = \"s3::https://bucket.s3.amazonaws.com/gvisor\"\n", `scheme "s3" not supported`},
	} {
		t.Run(c.name, func(t *testing.T) {
			n.writeFile("/etc/gvisor-bootstrap/config.toml", strings.Replace(base, c.from, c.to, 1), 0o644)
			snap := treeDigest(t, n.dir)
			for _, args := range [][]string{{"run"}, {"render", "cloud-init", "--baked"}, {"render", "daemonset"}} {
				r := n.exec(nil, args...)
				if r.code != 2 {
					t.Fatalf("%v: want exit 2: %s", args, r)
				}
				mustContain(t, r.stderr, c.says)
			}
			if after := treeDigest(t, n.dir); after != snap {
				t.Fatalf("the node changed:\n%s\n%s", snap, after)
			}
		})
	}
	n.writeFile("/etc/gvisor-bootstrap/config.toml", base, 0o644)
	if after := treeDigest(t, n.dir); after != before {
		t.Fatal("the node changed")
	}
}
