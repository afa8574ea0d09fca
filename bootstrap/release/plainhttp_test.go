package release

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/release/releasetest"
)

// Plain HTTP: the .sha512 comes over the same channel as the binary, so it is
// refused unless every artifact the installer would fetch is pinned.
func TestPlainHTTPRefusedUnlessEveryDigestPinned(t *testing.T) {
	plain := releasetest.NewPlainServer(t)
	plain.AddBundle(rel1, arch, bundleFiles(rel1))
	plain.AddLoose(rel2, arch, releasetest.Script("runsc", rel2), releasetest.Script("shim", rel2))
	bundlePins, loosePins := plain.Pins(rel1, arch), plain.Pins(rel2, arch)

	for name, pins := range map[string]map[string]string{
		"no pins":    {},
		"runsc only": {RunscName: loosePins[RunscName]},
		"shim only":  {ShimName: loosePins[ShimName]},
	} {
		t.Run("refused/"+name, func(t *testing.T) {
			e := newEnv(t)
			in := e.installer(rel1)
			in.Cfg.BaseURL = plain.BaseURL()
			if pins != nil {
				in.Cfg.SHA512 = pins
			}
			plain.ResetLog()
			_, err := in.Install(context.Background(), false)
			if err == nil || !strings.Contains(err.Error(), "plain HTTP is refused unless every artifact's sha512 is pinned") {
				t.Fatalf("want the plain-HTTP refusal, got %v", err)
			}
			for _, s := range []string{`release.sha512."gvisor.tar.bz2"`, "https://", "file://"} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error does not say %q: %v", s, err)
				}
			}
			if n := len(plain.Requests()); n != 0 {
				t.Errorf("%d requests made before refusing", n)
			}
			if ents, _ := os.ReadDir(e.root.Dir()); len(ents) != 0 {
				t.Errorf("the root was written: %v", ents)
			}
		})
	}
	t.Run("bundle pinned installs", func(t *testing.T) {
		e := newEnv(t)
		in := e.installer(rel1)
		in.Cfg.BaseURL = plain.BaseURL()
		in.Cfg.SHA512 = map[string]string{BundleName: bundlePins[BundleName]}
		e.install(in)
		if ps := in.Verify(true); len(ps) != 0 {
			t.Fatal(ps)
		}
	})
	t.Run("both loose files pinned installs", func(t *testing.T) {
		e := newEnv(t)
		in := e.installer(rel2)
		in.Cfg.BaseURL = plain.BaseURL()
		in.Cfg.SHA512 = map[string]string{RunscName: loosePins[RunscName], ShimName: loosePins[ShimName]}
		e.install(in)
		if got := e.runInstalled("runsc"); !strings.Contains(got, rel2) {
			t.Fatalf("runsc %q", got)
		}
	})
}

// An https mirror that redirects to plain http would downgrade the channel the
// .sha512 comes over: refused (once, not retried) unless everything is pinned.
func TestRedirectFromHTTPSToPlainHTTPRefused(t *testing.T) {
	plain := releasetest.NewPlainServer(t)
	plain.AddBundle(rel1, arch, bundleFiles(rel1))
	redirects := 0
	tlsSrv := releasetest.StartTLS(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		redirects++
		http.Redirect(w, r, plain.URL+r.URL.Path, http.StatusFound)
	}))
	t.Cleanup(tlsSrv.Close)

	e := newEnv(t)
	in := e.installer(rel1)
	in.Cfg.BaseURL = tlsSrv.URL + releasetest.BasePath
	_, err := in.Install(context.Background(), false)
	if err == nil || !strings.Contains(err.Error(), "redirected from https to plain http") {
		t.Fatalf("want the downgrade refused, got %v", err)
	}
	if redirects != 1 || len(plain.Requests()) != 0 {
		t.Fatalf("%d redirects, plain server asked %v; want 1 and none", redirects, plain.Requests())
	}
	if st, _ := LoadState(e.root); st.Release != "" {
		t.Fatalf("installed after a refused downgrade: %+v", st)
	}

	// With the bundle pinned the redirect is followed and the pin decides.
	in.Cfg.SHA512 = map[string]string{BundleName: plain.Pins(rel1, arch)[BundleName]}
	e.install(in)
}
