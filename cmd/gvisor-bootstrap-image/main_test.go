package main

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// inputs are two stand-in binaries and a CA bundle (the real binary adds build time
// only: what is under test is that equal bytes give an equal digest).
func inputs(t *testing.T) Options {
	dir := t.TempDir()
	w := func(n, s string) string {
		p := filepath.Join(dir, n)
		if err := os.WriteFile(p, []byte(s), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return Options{Tag: "v0.0.1-test", Binaries: map[string]string{"amd64": w("amd64", "\x7fELF amd64"), "arm64": w("arm64", "\x7fELF arm64")},
		CACerts: w("ca.crt", "-----BEGIN CERTIFICATE-----\n"), Epoch: time.Unix(1764547200, 0).UTC()}
}

func TestDigestIsReproducible(t *testing.T) {
	var digests, tars []string
	for i := 0; i < 2; i++ {
		o := inputs(t) // fresh files, fresh mtimes
		dir := t.TempDir()
		tarPath := filepath.Join(dir, "image.tar")
		if err := run(o, filepath.Join(dir, "layout"), tarPath, Repository, ""); err != nil {
			t.Fatal(err)
		}
		idx, err := Build(o)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := idx.Digest()
		digests = append(digests, d.String())
		b, err := os.ReadFile(tarPath)
		if err != nil {
			t.Fatal(err)
		}
		tars = append(tars, string(b))
		time.Sleep(1100 * time.Millisecond) // a second later: no wall-clock time may leak in
	}
	if digests[0] != digests[1] {
		t.Fatalf("digests differ: %v", digests)
	}
	if tars[0] != tars[1] {
		t.Fatal("the OCI layout tarballs differ")
	}
	o := inputs(t)
	o.Epoch = o.Epoch.Add(time.Second)
	idx, _ := Build(o)
	if d, _ := idx.Digest(); d.String() == digests[0] {
		t.Fatal("another SOURCE_DATE_EPOCH gave the same digest: the timestamps are not in the image")
	}
}

func TestIndexHoldsBothArchsWithOnlyTheBinaryAndCAs(t *testing.T) {
	o := inputs(t)
	dir := filepath.Join(t.TempDir(), "layout")
	if err := run(o, dir, "", Repository, ""); err != nil {
		t.Fatal(err)
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	tm, _ := top.IndexManifest()
	if len(tm.Manifests) != 1 || tm.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != Repository+":v0.0.1-test" {
		t.Fatalf("layout index %+v", tm.Manifests)
	}
	idx, err := top.ImageIndex(tm.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	var archs []string
	for _, m := range im.Manifests {
		archs = append(archs, m.Platform.OS+"/"+m.Platform.Architecture)
		img, err := idx.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, _ := img.ConfigFile()
		if cf.Architecture != m.Platform.Architecture || cf.Config.User != "0:0" || strings.Join(cf.Config.Entrypoint, " ") != "/usr/local/bin/gvisor-bootstrap" {
			t.Errorf("%s config %+v", m.Platform.Architecture, cf.Config)
		}
		layers, _ := img.Layers()
		if len(layers) != 1 {
			t.Fatalf("%d layers", len(layers))
		}
		rc, _ := layers[0].Uncompressed()
		tr := tar.NewReader(rc)
		var files []string
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Typeflag == tar.TypeReg {
				files = append(files, h.Name)
				data, _ := io.ReadAll(tr)
				if h.Name == "usr/local/bin/gvisor-bootstrap" && !bytes.Equal(data, []byte("\x7fELF "+m.Platform.Architecture)) {
					t.Errorf("%s: the binary is not that arch's", m.Platform.Architecture)
				}
			}
		}
		sort.Strings(files)
		if strings.Join(files, " ") != "etc/ssl/certs/ca-certificates.crt usr/local/bin/gvisor-bootstrap" {
			t.Errorf("%s: files %v", m.Platform.Architecture, files)
		}
	}
	if strings.Join(archs, " ") != "linux/amd64 linux/arm64" {
		t.Errorf("platforms %v", archs)
	}
}

func TestRefusesLatest(t *testing.T) {
	o := inputs(t)
	o.Tag = "latest"
	if err := run(o, "", "", Repository, ""); err == nil {
		t.Fatal("tag latest accepted")
	}
}
