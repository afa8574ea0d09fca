package release

import (
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/config"
)

func TestSourceDir(t *testing.T) {
	cfg := config.Default().Release
	got, err := SourceDir(cfg, "x86_64")
	if err != nil || got != "https://storage.googleapis.com/gvisor/releases/release/"+config.DefaultRelease+"/x86_64" {
		t.Fatalf("default source %q %v", got, err)
	}
	cfg.Version = "latest"
	if got, _ := SourceDir(cfg, "aarch64"); !strings.HasSuffix(got, "/release/latest/aarch64") {
		t.Errorf("latest: %q", got)
	}
	// An Azure blob container with a SAS token: file names go into the path,
	// the token stays on every file, and messages never show it.
	cfg.URL = "https://acct.blob.core.windows.net/gvisor/20260914.0/x86_64/?sv=2024&sig=SECRET"
	dir, err := SourceDir(cfg, "x86_64")
	if err != nil {
		t.Fatal(err)
	}
	if u := fileURL(dir, "runsc.sha512"); u != "https://acct.blob.core.windows.net/gvisor/20260914.0/x86_64/runsc.sha512?sv=2024&sig=SECRET" {
		t.Errorf("file URL %q", u)
	}
	if r := redact(fileURL(dir, "runsc")); strings.Contains(r, "SECRET") {
		t.Errorf("redact %q", r)
	}
	for _, bad := range []string{"ftp://x/y", "file://host/x", "https:///nohost", "file:relative",
		"s3::https://bucket.s3.amazonaws.com/x", "git::https://example.com/x", "http://mirror/x", "http://user:pw@mirror/x"} {
		cfg.URL = bad
		if _, err := SourceDir(cfg, "x86_64"); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	cfg.URL = ""
	for _, bad := range []string{"../x", "a/b", "", "20260914.0/../.."} {
		cfg.Version = bad
		if _, err := SourceDir(cfg, "x86_64"); err == nil {
			t.Errorf("accepted release %q", bad)
		}
		// With an explicit URL too: the release names the install directory.
		withURL := cfg
		withURL.URL = "file:///opt/gvisor"
		if _, err := (&Installer{Cfg: withURL}).want(); err == nil {
			t.Errorf("installer accepted release %q", bad)
		}
	}
}

func TestArchDefaultsToMachine(t *testing.T) {
	a, err := Arch(config.Release{})
	want := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[runtime.GOARCH]
	if err != nil || a != want {
		t.Errorf("Arch = %q %v, want %q", a, err, want)
	}
	if a, _ := Arch(config.Release{Arch: "aarch64"}); a != "aarch64" {
		t.Errorf("configured arch ignored: %q", a)
	}
}

func TestClassify(t *testing.T) {
	bg := t.Context()
	for _, tc := range []struct {
		status int
		err    error
		want   Kind
	}{
		{404, errors.New("bad response code: 404"), KindNotFound},
		{503, errors.New("bad response code: 503"), KindTransient},
		{429, errors.New("bad response code: 429"), KindTransient},
		{403, errors.New("bad response code: 403"), KindPermanent},
		{0, errTooLarge, KindPermanent},
		{http.StatusOK, fmt.Errorf("read: %w", syscall.ECONNRESET), KindTransient},
		{0, fmt.Errorf("write /x: %w", syscall.ENOSPC), KindLocal},
	} {
		if got := classify(bg, bg, "http://x/y", tc.status, tc.err); got.Kind != tc.want {
			t.Errorf("status %d err %v: kind %v, want %v", tc.status, tc.err, got.Kind, tc.want)
		}
	}
}
