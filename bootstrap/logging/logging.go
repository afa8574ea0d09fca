// Package logging builds the tool's logger: structured journald entries when
// systemd runs it (so `journalctl -u gvisor-bootstrap` can filter on fields such
// as GVB_STEP), plain text on a terminal or in a container log.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/coreos/go-systemd/v22/journal"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/redact"
)

// New returns a logger writing to the journal when stderr is connected to it, and
// to w as text otherwise.
func New(w io.Writer, level slog.Level) *slog.Logger {
	if ok, _ := journal.StderrIsJournalStream(); ok && journal.Enabled() {
		return slog.New(redact.Handler(&journalHandler{level: level}))
	}
	return slog.New(redact.Handler(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})))
}

// journalHandler sends each record as one journal entry; attributes become
// GVB_<KEY> fields.
type journalHandler struct {
	level slog.Level
	attrs []slog.Attr
	group string
}

func (h *journalHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *journalHandler) Handle(_ context.Context, r slog.Record) error {
	vars := map[string]string{"SYSLOG_IDENTIFIER": "gvisor-bootstrap"}
	var text strings.Builder
	text.WriteString(r.Message)
	add := func(a slog.Attr) bool {
		key := fieldName(h.group, a.Key)
		vars[key] = a.Value.String()
		fmt.Fprintf(&text, " %s=%q", a.Key, a.Value.String())
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	return journal.Send(text.String(), priority(r.Level), vars)
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append(append([]slog.Attr{}, h.attrs...), as...)
	return &n
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	n := *h
	n.group = name
	return &n
}

func fieldName(group, key string) string {
	var b strings.Builder
	b.WriteString("GVB_")
	for _, c := range strings.ToUpper(strings.TrimPrefix(group+"_"+key, "_")) {
		if (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' {
			b.WriteRune(c)
		} else {
			b.WriteRune('_')
		}
	}
	return b.String()
}

func priority(l slog.Level) journal.Priority {
	switch {
	case l >= slog.LevelError:
		return journal.PriErr
	case l >= slog.LevelWarn:
		return journal.PriWarning
	case l >= slog.LevelInfo:
		return journal.PriInfo
	default:
		return journal.PriDebug
	}
}
