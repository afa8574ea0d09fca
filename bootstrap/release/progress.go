package release

import (
	"io"
	"log/slog"
	"net/url"
	"os"
	"path"
	"time"

	getter "github.com/hashicorp/go-getter/v2"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progressFor returns how downloads report progress: a bar only when a person is
// watching, structured log lines otherwise (systemd's journal, cloud-init's log, a
// DaemonSet's log, a serial console), where a bar is noise that breaks other lines.
func progressFor(w io.Writer, log *slog.Logger) func(src string) getter.ProgressTracker {
	if watched(w, os.Getenv) {
		return func(string) getter.ProgressTracker { return barTracker{w: w} }
	}
	return func(src string) getter.ProgressTracker {
		return logTracker{log: log, url: redact(src), every: logEvery, now: time.Now}
	}
}

// watched reports whether w is a terminal a person looks at: a terminal, and not
// a systemd unit's (systemd sets INVOCATION_ID for every unit it runs and
// JOURNAL_STREAM when output goes to the journal; a unit's TTYPath is a console).
func watched(w io.Writer, getenv func(string) string) bool {
	f, ok := w.(interface{ Fd() uintptr }) // an *os.File, or the CLI's scrubbing wrapper of one
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return false
	}
	return getenv("INVOCATION_ID") == "" && getenv("JOURNAL_STREAM") == ""
}

// logEvery is the least time between two "downloading" lines.
const logEvery = 5 * time.Second

type barTracker struct{ w io.Writer }

func (b barTracker) TrackProgress(src string, current, total int64, stream io.ReadCloser) io.ReadCloser {
	if total <= 0 {
		total = -1 // unknown length: the bar shows a spinner
	}
	bar := progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(b.w),
		progressbar.OptionSetDescription(baseName(src)),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionShowCount(),
		progressbar.OptionOnCompletion(func() { _, _ = io.WriteString(b.w, "\n") }),
	)
	_ = bar.Set64(current)
	r := progressbar.NewReader(stream, bar)
	return &r
}

// logTracker logs the start and the end of a download, and between them a
// progress line at most once per `every`.
type logTracker struct {
	log   *slog.Logger
	url   string
	every time.Duration
	now   func() time.Time
}

func (l logTracker) TrackProgress(src string, current, total int64, stream io.ReadCloser) io.ReadCloser {
	l.log.Info("download started", "url", l.url, "bytes", total)
	start := l.now()
	return &loggingReader{rc: stream, log: l.log, url: l.url, total: total, done: current,
		start: start, last: start, every: l.every, now: l.now}
}

type loggingReader struct {
	rc          io.ReadCloser
	log         *slog.Logger
	url         string
	total, done int64
	start, last time.Time
	every       time.Duration
	now         func() time.Time
	eof         bool
}

func (r *loggingReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	r.done += int64(n)
	if err == io.EOF && !r.eof {
		r.eof = true
		r.log.Info("download finished", "url", r.url, "bytes", r.done, "seconds", r.now().Sub(r.start).Seconds())
		return n, err
	}
	if now := r.now(); n > 0 && now.Sub(r.last) >= r.every {
		r.last = now
		if r.total > 0 {
			r.log.Info("downloading", "url", r.url, "percent", r.done*100/r.total, "bytes", r.done)
		} else {
			r.log.Info("downloading", "url", r.url, "bytes", r.done)
		}
	}
	return n, err
}

func (r *loggingReader) Close() error { return r.rc.Close() }

// baseName is the file name of a URL, without its query (an Azure SAS token).
func baseName(src string) string {
	if u, err := url.Parse(src); err == nil {
		return path.Base(u.Path)
	}
	return path.Base(redact(src))
}
