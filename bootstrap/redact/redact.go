// Package redact keeps credentials out of everything the tool prints or stores.
// A release URL may carry a password (https://user:password@mirror/...) or an
// Azure SAS token (?sv=...&sig=...); both are credentials. Every log line, error,
// JSON document, state file and metric passes what it says about a URL through
// this package: userinfo becomes REDACTED and every query value becomes REDACTED
// (the keys stay, so an operator can still tell a SAS URL from a plain one).
package redact

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
)

// Mark replaces a secret.
const Mark = "REDACTED"

// URL returns s with its userinfo and every query value replaced by Mark. A
// string that does not parse as a URL is scrubbed as text (String).
func URL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return scrubUnparsed(s)
	}
	if u.User == nil && u.RawQuery == "" && !u.ForceQuery && !strings.Contains(u.Opaque, "@") {
		return s
	}
	if u.User != nil {
		u.User = url.User(Mark)
	}
	u.RawQuery = query(u.RawQuery)
	if strings.Contains(u.Opaque, "@") {
		u.Opaque = Mark + u.Opaque[strings.LastIndex(u.Opaque, "@"):]
	}
	return u.String()
}

// query keeps each key and replaces each value.
func query(raw string) string {
	if raw == "" {
		return ""
	}
	parts := strings.FieldsFunc(raw, func(r rune) bool { return r == '&' || r == ';' })
	for i, p := range parts {
		k, _, hasValue := strings.Cut(p, "=")
		if hasValue {
			parts[i] = k + "=" + Mark
		} else {
			// A bare token (?TOKEN) is a value without a key.
			parts[i] = Mark
		}
	}
	return strings.Join(parts, "&")
}

// urlInText finds URLs inside free text: Go's url.Error quotes them (Get
// "https://..."), go-getter uses single quotes, loggers print them bare.
var urlInText = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.\-]*://[^\s"'<>` + "`" + `]+`)

// String scrubs every URL inside free text (an error message, a log line).
func String(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	return urlInText.ReplaceAllStringFunc(s, URL)
}

// scrubUnparsed handles a URL that net/url refuses (for example a bad escape in
// the password): everything between "://" and the last "@" before the path,
// and everything after "?", is replaced.
func scrubUnparsed(s string) string {
	out := s
	if i := strings.Index(out, "://"); i >= 0 {
		rest := out[i+3:]
		end := strings.IndexAny(rest, "/?#")
		if end < 0 {
			end = len(rest)
		}
		if at := strings.LastIndex(rest[:end], "@"); at >= 0 {
			out = out[:i+3] + Mark + rest[at:]
		}
	}
	if q := strings.Index(out, "?"); q >= 0 {
		frag := ""
		if h := strings.Index(out[q:], "#"); h >= 0 {
			frag = out[q+h:]
			out = out[:q+h]
		}
		out = out[:q+1] + query(out[q+1:]) + frag
	}
	return out
}

// Error wraps err so that its message is scrubbed; errors.Is and errors.As still
// see the chain. Unwrapped errors keep their original text: print only the
// outer error (every edge of the tool does).
func Error(err error) error {
	if err == nil {
		return nil
	}
	msg := String(err.Error())
	if msg == err.Error() {
		return err
	}
	return &scrubbed{err: err, msg: msg}
}

type scrubbed struct {
	err error
	msg string
}

func (s *scrubbed) Error() string { return s.msg }
func (s *scrubbed) Unwrap() error { return s.err }

// secretKey matches a TOML (or diff) line that sets a credential in
// containerd's config: the registry auth table's password, auth and
// identitytoken, and any token, secret or Authorization header.
var secretKey = regexp.MustCompile(`(?im)^([-+ ]?[ \t]*["']?(?:password|auth|identitytoken|identity_token|token|secret|client_secret|authorization)["']?[ \t]*=[ \t]*).*$`)

// ConfigSecrets hides credentials in config text (a containerd config, or a
// diff of one) and every URL's userinfo and query values in it.
func ConfigSecrets(text string) string {
	return String(secretKey.ReplaceAllString(text, `${1}"`+Mark+`"`))
}

// Handler wraps a log handler so that the message and every attribute of every
// record are scrubbed (String) before they are written.
func Handler(h slog.Handler) slog.Handler { return &handler{h} }

type handler struct{ next slog.Handler }

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, String(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(attr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	scrubbed := make([]slog.Attr, len(as))
	for i, a := range as {
		scrubbed[i] = attr(a)
	}
	return &handler{h.next.WithAttrs(scrubbed)}
}

func (h *handler) WithGroup(name string) slog.Handler { return &handler{h.next.WithGroup(name)} }

func attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindGroup:
		g := v.Group()
		out := make([]any, len(g))
		for i, x := range g {
			out[i] = attr(x)
		}
		return slog.Group(a.Key, out...)
	case slog.KindString:
		return slog.String(a.Key, String(v.String()))
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, String(err.Error()))
		}
		if s := v.String(); strings.Contains(s, "://") {
			return slog.String(a.Key, String(s))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// Writer scrubs every write (String) before passing it on: the edge of the
// command line wraps stdout and stderr with it, so that no line the tool prints
// can carry a credential, whatever produced it. Each write is scrubbed on its
// own; every printer of the tool writes whole lines or documents.
type Writer struct{ W io.Writer }

// NewWriter wraps w.
func NewWriter(w io.Writer) *Writer { return &Writer{W: w} }

func (w *Writer) Write(p []byte) (int, error) {
	if !bytes.Contains(p, []byte("://")) {
		return w.W.Write(p)
	}
	if _, err := io.WriteString(w.W, String(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Fd is the underlying file's descriptor (0 when it is not a file), so that a
// terminal is still recognised through the wrapper.
func (w *Writer) Fd() uintptr {
	if f, ok := w.W.(interface{ Fd() uintptr }); ok {
		return f.Fd()
	}
	return ^uintptr(0)
}
