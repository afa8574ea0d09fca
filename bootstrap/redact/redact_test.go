package redact

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://mirror/x":                           "https://mirror/x",
		"https://user:pw@mirror/x":                   "https://REDACTED@mirror/x",
		"https://user@mirror/x":                      "https://REDACTED@mirror/x",
		"https://a.blob/x/?sv=2024&se=2027&sig=S%3D": "https://a.blob/x/?sv=REDACTED&se=REDACTED&sig=REDACTED",
		"https://mirror/x?TOKEN":                     "https://mirror/x?REDACTED",
		"https://u:p%zz@mirror/x?sig=S":              "https://REDACTED@mirror/x?sig=REDACTED",
		"file:///opt/gvisor":                         "file:///opt/gvisor",
	} {
		if got := URL(in); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
}

// The wrapped Go error of a real request repeats the URL with its query.
func TestStringScrubsWrappedGoErrors(t *testing.T) {
	_, err := http.Get("https://user:pw@127.0.0.1:1/x?sig=SECRET")
	if err == nil || !strings.Contains(err.Error(), "SECRET") {
		t.Fatalf("net/http no longer repeats the query (%v): the test proves nothing", err)
	}
	wrapped := fmt.Errorf("fetch: %w", err)
	got := Error(wrapped)
	if strings.Contains(got.Error(), "SECRET") || strings.Contains(got.Error(), "pw") {
		t.Fatalf("leaks: %v", got)
	}
	if !errors.Is(got, err) {
		t.Fatal("the chain is lost")
	}
	// go-getter's single quotes, JSON's \u0026.
	for _, s := range []string{"error downloading 'https://h/x?a=1&sig=SECRET'", `{"url":"https://h/x?a=1\u0026sig=SECRET"}`} {
		if out := String(s); strings.Contains(out, "SECRET") {
			t.Errorf("String(%q) = %q", s, out)
		}
	}
}

func TestConfigSecrets(t *testing.T) {
	in := " [x.auth]\n-    password = \"P1\"\n+  auth = 'P2'\n   identitytoken = \"P3\"\n   username = \"ops\"\n   endpoint = [\"https://u:P4@mirror\"]\n"
	out := ConfigSecrets(in)
	for _, s := range []string{"P1", "P2", "P3", "P4"} {
		if strings.Contains(out, s) {
			t.Errorf("%s left in:\n%s", s, out)
		}
	}
	if !strings.Contains(out, `username = "ops"`) || !strings.Contains(out, `-    password = "REDACTED"`) {
		t.Errorf("over- or mis-redacted:\n%s", out)
	}
}

func TestHandlerAndWriter(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(Handler(slog.NewTextHandler(&buf, nil))).With("src", "https://u:pw@h/x?sig=S1")
	log.Info("get https://h/y?sig=S2", "err", errors.New(`Get "https://h/z?sig=S3": refused`), slog.Group("g", "u", "https://h/?sig=S4"))
	var out bytes.Buffer
	fmt.Fprintf(NewWriter(&out), "fetch https://h/x?sig=S5 failed\n")
	for _, s := range []string{"S1", "S2", "S3", "S4", "pw"} {
		if strings.Contains(buf.String(), s) {
			t.Errorf("log line leaks %s: %s", s, buf.String())
		}
	}
	if strings.Contains(out.String(), "S5") {
		t.Errorf("writer leaks: %s", out.String())
	}
}
