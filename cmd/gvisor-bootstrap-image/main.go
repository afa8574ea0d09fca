// Command gvisor-bootstrap-image builds the DaemonSet's image without docker: an OCI
// image index for linux/amd64 and linux/arm64 (go-containerregistry), each image one
// layer holding the static binary at /usr/local/bin/gvisor-bootstrap and CA
// certificates (for HTTPS downloads of the gVisor release), nothing else. Every
// timestamp is fixed (SOURCE_DATE_EPOCH, the commit's time), so the same inputs give
// the same digest. It writes an OCI layout directory and/or its tarball (which
// `ctr -n k8s.io images import` loads), and pushes when --push names a repository.
//
//	gvisor-bootstrap-image --tag v1.2.3 --binary amd64=bin/gvisor-bootstrap-linux-amd64 \
//	  --binary arm64=bin/gvisor-bootstrap-linux-arm64 --tar bin/image.tar
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Repository is the default image name; the tag is the version.
const Repository = "ghcr.io/gvisor-bootstrap/gvisor-bootstrap"

type binaries map[string]string

func (b binaries) String() string { return fmt.Sprint(map[string]string(b)) }
func (b binaries) Set(s string) error {
	arch, path, ok := strings.Cut(s, "=")
	if !ok || (arch != "amd64" && arch != "arm64") {
		return fmt.Errorf("want amd64=PATH or arm64=PATH, got %q", s)
	}
	b[arch] = path
	return nil
}

// Options of one build.
type Options struct {
	Tag      string
	Binaries map[string]string // arch -> static binary
	CACerts  string
	Epoch    time.Time
}

func main() {
	bins := binaries{}
	var o Options
	var out, tarPath, push, repo string
	flag.StringVar(&o.Tag, "tag", "", "image tag, the version (not latest), e.g. v1.2.3")
	flag.Var(bins, "binary", "ARCH=PATH of the static binary, repeatable: amd64=bin/gvisor-bootstrap-linux-amd64")
	flag.StringVar(&o.CACerts, "ca-certificates", "/etc/ssl/certs/ca-certificates.crt", "CA bundle put at /etc/ssl/certs/ca-certificates.crt")
	flag.StringVar(&out, "layout", "", "write an OCI layout directory here")
	flag.StringVar(&tarPath, "tar", "", "write the OCI layout as a tarball here (ctr images import)")
	flag.StringVar(&repo, "repository", Repository, "image repository the ref name uses")
	flag.StringVar(&push, "push", "", "push the index to REGISTRY/REPO:TAG when set, e.g. myregistry.azurecr.io/gvisor-bootstrap")
	flag.Parse()
	o.Binaries = bins
	o.Epoch = epoch()
	if err := run(o, out, tarPath, repo, push); err != nil {
		fmt.Fprintln(os.Stderr, "gvisor-bootstrap-image:", err)
		os.Exit(1)
	}
}

func run(o Options, out, tarPath, repo, push string) error {
	if o.Tag == "" || o.Tag == "latest" {
		return fmt.Errorf("--tag: give the version (e.g. v1.2.3), not %q", o.Tag)
	}
	idx, err := Build(o)
	if err != nil {
		return err
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	ref := repo + ":" + o.Tag
	if tarPath != "" && out == "" {
		tmp, err := os.MkdirTemp("", "gvb-image")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		out = tmp
	}
	if out != "" {
		if err := WriteLayout(out, idx, ref); err != nil {
			return err
		}
	}
	if tarPath != "" {
		if err := TarDir(out, tarPath, o.Epoch); err != nil {
			return err
		}
	}
	if push != "" {
		r, err := name.ParseReference(push + ":" + o.Tag)
		if err != nil {
			return fmt.Errorf("--push %q: %w", push, err)
		}
		if err := remote.WriteIndex(r, idx, remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
			return fmt.Errorf("push %s: %w", r, err)
		}
		ref = r.String()
	}
	fmt.Printf("%s@%s\n", ref, d)
	return nil
}

// epoch is SOURCE_DATE_EPOCH (the commit's time, set by the Makefile), else 0.
func epoch() time.Time {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return time.Unix(n, 0).UTC()
		}
	}
	return time.Unix(0, 0).UTC()
}

// Build makes the index from the binaries.
func Build(o Options) (v1.ImageIndex, error) {
	if len(o.Binaries) == 0 {
		return nil, fmt.Errorf("no --binary given")
	}
	ca, err := os.ReadFile(o.CACerts)
	if err != nil {
		return nil, fmt.Errorf("CA certificates: %w (apt-get install ca-certificates, or --ca-certificates FILE)", err)
	}
	archs := make([]string, 0, len(o.Binaries))
	for a := range o.Binaries {
		archs = append(archs, a)
	}
	sort.Strings(archs)
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range archs {
		bin, err := os.ReadFile(o.Binaries[arch])
		if err != nil {
			return nil, fmt.Errorf("binary for %s: %w", arch, err)
		}
		img, err := image(arch, bin, ca, o.Epoch)
		if err != nil {
			return nil, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	return idx, nil
}

func image(arch string, bin, ca []byte, at time.Time) (v1.Image, error) {
	layerTar, err := rootfs(bin, ca, at)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerTar)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.AppendLayers(img, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Created = v1.Time{Time: at}
	cf.History = nil
	cf.Config = v1.Config{
		// uid 0 because the host files it edits are root's; the pod drops every
		// capability.
		User:       "0:0",
		Entrypoint: []string{"/usr/local/bin/gvisor-bootstrap"},
		Cmd:        []string{"run", "--root", "/host", "--watch"},
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
	}
	return mutate.ConfigFile(img, cf)
}

// rootfs is the layer: directories, the binary and the CA bundle, root-owned, with
// fixed times.
func rootfs(bin, ca []byte, at time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := func(name string, mode int64, typ byte, size int) *tar.Header {
		return &tar.Header{Name: name, Mode: mode, Typeflag: typ, Size: int64(size), ModTime: at, Format: tar.FormatPAX, Uname: "root", Gname: "root"}
	}
	for _, d := range []string{"etc/", "etc/ssl/", "etc/ssl/certs/", "tmp/", "usr/", "usr/local/", "usr/local/bin/"} {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(hdr(d, mode, tar.TypeDir, 0)); err != nil {
			return nil, err
		}
	}
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{"etc/ssl/certs/ca-certificates.crt", 0o644, ca}, {"usr/local/bin/gvisor-bootstrap", 0o755, bin}} {
		if err := tw.WriteHeader(hdr(f.name, f.mode, tar.TypeReg, len(f.data))); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteLayout writes the index as an OCI layout, named ref.
func WriteLayout(dir string, idx v1.ImageIndex, ref string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref})); err != nil {
		return fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	return nil
}

// TarDir packs the layout directory into a tarball with sorted entries and fixed
// times (byte-identical for the same layout).
func TarDir(dir, out string, at time.Time) error {
	var files []string
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(files)
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	tw := tar.NewWriter(f)
	for _, p := range files {
		info, err := os.Stat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h := &tar.Header{Name: filepath.ToSlash(rel), ModTime: at, Mode: 0o644, Format: tar.FormatPAX}
		if info.IsDir() {
			h.Name += "/"
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		} else {
			h.Typeflag, h.Size = tar.TypeReg, info.Size()
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if !info.IsDir() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if _, err := tw.Write(data); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}
