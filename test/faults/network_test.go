package faults

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/release/releasetest"
)

// TestNetworkFaults upgrades a node (old release installed) while the server
// misbehaves on the new release. Every fault ends in exit 1 with a message that
// names the URL and says the installed files were not changed; the old release
// stays whole; the config is old or new (run registers runsc with the old
// binaries when they are present: they serve); once the server is healthy the
// next run completes the job.
func TestNetworkFaults(t *testing.T) {
	newConfig, _ := wantNew(t)
	bundle := releasetest.BasePath + "/" + newRel + "/" + arch + "/gvisor.tar.bz2"
	cases := []struct {
		name  string
		apply func(n *node)
		says  []string
	}{
		{"404", func(n *node) { n.srv.Delete(bundle) }, []string{"404"}},
		{"500", func(n *node) { n.srv.SetFault(bundle, releasetest.Fault{Code: 500}) }, []string{"500"}},
		{"connection reset before the answer", func(n *node) { n.srv.SetFault(bundle, releasetest.Fault{Reset: true}) }, []string{"reset"}},
		{"connection reset mid-body", func(n *node) { resetMidBody(t, n) }, []string{"reset"}},
		{"stall", func(n *node) { n.srv.SetFault(bundle, releasetest.Fault{Stall: true}) }, nil},
		{"truncated body", func(n *node) { n.srv.SetFault(bundle, releasetest.Fault{Truncate: true}) }, nil},
		{"checksum mismatch", func(n *node) {
			n.srv.Put(bundle+".sha512", releasetest.SHA512Line([]byte("another bundle"), "gvisor.tar.bz2"))
		}, []string{"sha512"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := newNode(t)
			n.install(oldRel)
			c.apply(n)
			r := n.run()
			t.Logf("%s", r.stderr[max(0, len(r.stderr)-600):])
			if r.code != 1 {
				t.Fatalf("want exit 1: %s", r)
			}
			url := n.srv.DirURL(newRel, arch)
			if n.resetURL != "" {
				url = strings.Replace(url, n.srv.URL, n.resetURL, 1)
			}
			mustContain(t, r.stderr, append([]string{"FAILED", url, "not changed"}, c.says...)...)
			if bins := n.binState(); bins != oldRel {
				t.Fatalf("binaries after a failed download: %q, want the old release", bins)
			}
			t.Logf("config after the fault: %s", n.configState([]byte(oldContainerdConfig), newConfig))

			// The server recovers: the next run finishes the job.
			n.srv.SetFault(bundle, releasetest.Fault{Times: -1})
			n.srv.AddBundle(newRel, arch, releaseFiles(newRel))
			n.writeToolConfig()
			n.completes(newConfig)
		})
	}
}

// TestNetworkFaultOnFirstInstall: with nothing installed, a failed download
// fails before containerd's config is touched (registering a handler whose
// binaries are missing would break sandboxed pods).
func TestNetworkFaultOnFirstInstall(t *testing.T) {
	n := newNode(t)
	n.srv.Delete(releasetest.BasePath + "/" + newRel + "/" + arch + "/gvisor.tar.bz2")
	r := n.run()
	if r.code != 1 {
		t.Fatalf("want exit 1: %s", r)
	}
	mustContain(t, r.stderr, "FAILED", n.srv.DirURL(newRel, arch), "404")
	if bins := n.binState(); bins != "" {
		t.Fatalf("binaries %q after a failed first install", bins)
	}
	if n.configState([]byte(oldContainerdConfig), nil) != "old" {
		t.Fatal("config changed")
	}
}

// resetMidBody points the node at a second loopback server that sends half of the
// new bundle and then resets the TCP connection (RST, SO_LINGER 0): releasetest's
// Reset fault resets before answering, this one mid-body.
func resetMidBody(t *testing.T, n *node) {
	files := map[string][]byte{}
	bundle := n.srv.AddBundle(newRel, arch, releaseFiles(newRel))
	dir := releasetest.BasePath + "/" + newRel + "/" + arch
	files[dir+"/gvisor.tar.bz2"] = bundle
	files[dir+"/gvisor.tar.bz2.sha512"] = releasetest.SHA512Line(bundle, "gvisor.tar.bz2")
	srv := releasetest.StartTLS(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		if !strings.HasSuffix(r.URL.Path, ".tar.bz2") {
			_, _ = w.Write(data)
			return
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(data[:len(data)/2])
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			releasetest.ResetConn(conn)
		}
	}))
	t.Cleanup(srv.Close)
	// The same paths, another server: the error names this URL.
	n.extra = "" // base_url is rewritten below
	cfg := strings.Replace(string(n.read("/etc/gvisor-bootstrap/config.toml")), n.srv.URL, srv.URL, 1)
	n.writeFile("/etc/gvisor-bootstrap/config.toml", cfg, 0o644)
	n.resetURL = srv.URL
}
