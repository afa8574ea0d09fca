// Package releasetest serves gVisor release trees over real HTTP on loopback, in
// the layout of gVisor's release bucket (<base>/<release>/<arch>/<file>, with
// sha512sum files), and injects the failures an installer must survive.
package releasetest

import (
	"archive/tar"
	"bytes"
	"crypto/sha512"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// Fault is what the server does instead of serving a path normally.
type Fault struct {
	// Times is how many requests misbehave before the path is served normally;
	// 0 means every request.
	Times int
	// Code answers with this HTTP status (e.g. 500).
	Code int
	// Stall sends the headers and half the body, then stalls until the client
	// goes away (or 30 s).
	Stall bool
	// Truncate announces the full Content-Length, sends half and closes.
	Truncate bool
	// Reset closes the connection with a TCP RST before answering.
	Reset bool
}

// Server is a release bucket on loopback.
type Server struct {
	*httptest.Server
	t      testing.TB
	mu     sync.Mutex
	files  map[string][]byte
	faults map[string]*Fault
	log    []string
}

// BasePath is where releases live on the server, like ".../releases/release".
const BasePath = "/releases/release"

// NewServer starts an HTTPS server, closed when the test ends. Its certificate
// is the process's test CA (TrustTestCA): the test process and every process it
// starts trust it through SSL_CERT_FILE, as a node trusts a mirror's
// certificate. The tool refuses plain HTTP unless every digest is pinned.
func NewServer(t testing.TB) *Server {
	s := &Server{t: t, files: map[string][]byte{}, faults: map[string]*Fault{}}
	s.Server = StartTLS(t, http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// NewPlainServer starts a plain-HTTP server (a mirror without TLS: usable only
// with every digest pinned, see Pins).
func NewPlainServer(t testing.TB) *Server {
	s := &Server{t: t, files: map[string][]byte{}, faults: map[string]*Fault{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// Pins are the sha512 digests of every artifact published for one release
// and arch (the values for release.sha512).
func (s *Server) Pins(release, arch string) map[string]string {
	prefix := BasePath + "/" + release + "/" + arch + "/"
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for p, data := range s.files {
		if name, ok := strings.CutPrefix(p, prefix); ok && !strings.HasSuffix(name, ".sha512") {
			out[name] = Digest(data)
		}
	}
	return out
}

// BaseURL is the value for release.base_url.
func (s *Server) BaseURL() string { return s.URL + BasePath }

// DirURL is the directory URL of one release and arch.
func (s *Server) DirURL(release, arch string) string { return s.BaseURL() + "/" + release + "/" + arch }

// Put serves data at p (a path under the server root), replacing what was there.
func (s *Server) Put(p string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[p] = data
}

// Delete stops serving p.
func (s *Server) Delete(p string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.files, p)
}

// SetFault makes the server misbehave on path p.
func (s *Server) SetFault(p string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[p] = &f
}

// Requests returns "METHOD /path" for every request so far.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.log...)
}

// ResetLog forgets the requests so far.
func (s *Server) ResetLog() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = nil
}

// Count is how many requests asked for p.
func (s *Server) Count(p string) int {
	n := 0
	for _, r := range s.Requests() {
		if strings.HasSuffix(r, " "+p) {
			n++
		}
	}
	return n
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.log = append(s.log, r.Method+" "+r.URL.Path)
	data, ok := s.files[r.URL.Path]
	f := s.faults[r.URL.Path]
	var fault Fault
	if f != nil && f.Times >= 0 {
		fault = *f
		if f.Times > 0 {
			if f.Times--; f.Times == 0 {
				f.Times = -1 // served normally from now on
			}
		}
	}
	s.mu.Unlock()
	switch {
	case fault.Code != 0:
		http.Error(w, http.StatusText(fault.Code), fault.Code)
		return
	case fault.Reset:
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			ResetConn(conn)
		}
		return
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	switch {
	case fault.Stall:
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(data[:len(data)/2])
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
	case fault.Truncate:
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(data[:len(data)/2])
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	default:
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		_, _ = w.Write(data)
	}
}

// ResetConn closes a hijacked connection with a TCP RST (SO_LINGER 0), under
// TLS too.
func ResetConn(conn net.Conn) {
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn()
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	conn.Close()
}

// SHA512Line is sha512sum's output for data named name.
func SHA512Line(data []byte, name string) []byte {
	return fmt.Appendf(nil, "%x  %s\n", sha512.Sum512(data), name)
}

// Digest is data's sha512 in hex.
func Digest(data []byte) string { return fmt.Sprintf("%x", sha512.Sum512(data)) }

// AddLoose publishes runsc and the shim as loose files with their .sha512 files.
func (s *Server) AddLoose(release, arch string, runsc, shim []byte) {
	dir := BasePath + "/" + release + "/" + arch
	for name, data := range map[string][]byte{"runsc": runsc, "containerd-shim-runsc-v1": shim} {
		s.Put(dir+"/"+name, data)
		s.Put(dir+"/"+name+".sha512", SHA512Line(data, name))
	}
}

// AddBundle publishes gvisor.tar.bz2 (and its .sha512) holding files, whose
// keys are archive paths ("runsc", "gvisor-bin/checkpointgofer"). It returns
// the bundle.
func (s *Server) AddBundle(release, arch string, files map[string][]byte) []byte {
	var entries []Entry
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	dirs := map[string]bool{}
	for _, n := range names {
		if d := path.Dir(n); d != "." && !dirs[d] {
			dirs[d] = true
			entries = append(entries, Entry{Name: d + "/", Type: tar.TypeDir})
		}
		entries = append(entries, Entry{Name: n, Type: tar.TypeReg, Data: files[n]})
	}
	b := TarBz2(s.t, entries)
	s.PutBundle(release, arch, b)
	return b
}

// PutBundle publishes a prepared bundle and its .sha512.
func (s *Server) PutBundle(release, arch string, bundle []byte) {
	dir := BasePath + "/" + release + "/" + arch
	s.Put(dir+"/gvisor.tar.bz2", bundle)
	s.Put(dir+"/gvisor.tar.bz2.sha512", SHA512Line(bundle, "gvisor.tar.bz2"))
}

// Entry is one tar entry; Linkname serves symlinks and hard links.
type Entry struct {
	Name     string
	Type     byte
	Data     []byte
	Linkname string
	Size     int64 // overrides len(Data) in the header when non-zero
}

// TarBz2 builds a bzip2-compressed tar. Go has no bzip2 writer, so the tar is
// piped through the real `bzip2` command (Debian package bzip2).
func TarBz2(t testing.TB, entries []Entry) []byte {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, e := range entries {
		size := int64(len(e.Data))
		if e.Type != tar.TypeReg {
			size = 0
		}
		if e.Size != 0 {
			size = e.Size
		}
		hdr := &tar.Header{Name: e.Name, Typeflag: e.Type, Mode: 0o755, Size: size, Linkname: e.Linkname, ModTime: time.Unix(1757808000, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("tar header %s: %v", e.Name, err)
		}
		if e.Type == tar.TypeReg && e.Size == 0 {
			if _, err := tw.Write(e.Data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil && !strings.Contains(err.Error(), "missed writing") {
		t.Fatal(err)
	}
	cmd := exec.Command("bzip2", "-c", "-1")
	cmd.Stdin = &raw
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bzip2 (apt-get install bzip2): %v", err)
	}
	return out
}

// WriteTree writes the server's files for one release and arch into dir, for
// file:// sources.
func (s *Server) WriteTree(release, arch, dir string) {
	s.t.Helper()
	prefix := BasePath + "/" + release + "/" + arch + "/"
	s.mu.Lock()
	defer s.mu.Unlock()
	for p, data := range s.files {
		if name, ok := strings.CutPrefix(p, prefix); ok {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
				s.t.Fatal(err)
			}
		}
	}
}

// Script is a tiny executable standing in for a gVisor binary in unit tests.
func Script(name, version string) []byte {
	return fmt.Appendf(nil, "#!/bin/sh\necho %s version %s\n", name, version)
}
