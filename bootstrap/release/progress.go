package release

import (
	"io"
	"log/slog"
	"os"
	"path"
	"time"

	getter "github.com/hashicorp/go-getter/v2"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progressFor returns how downloads report progress: a bar when w is a terminal
// (an operator at a shell), structured log lines otherwise (systemd's journal,
// cloud-init's log, a DaemonSet's log), where a bar would be noise.
func progressFor(w io.Writer, log *slog.Logger) func(src string) getter.ProgressTracker {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return func(string) getter.ProgressTracker { return barTracker{w: w} }
	}
	return func(src string) getter.ProgressTracker { return logTracker{log: log, url: redact(src)} }
}

type barTracker struct{ w io.Writer }

func (b barTracker) TrackProgress(src string, current, total int64, stream io.ReadCloser) io.ReadCloser {
	if total <= 0 {
		total = -1 // unknown length: the bar shows a spinner
	}
	bar := progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(b.w),
		progressbar.OptionSetDescription(path.Base(src)),
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

// logTracker logs the start, each quarter and the end of a download.
type logTracker struct {
	log *slog.Logger
	url string
}

func (l logTracker) TrackProgress(src string, current, total int64, stream io.ReadCloser) io.ReadCloser {
	l.log.Info("download started", "url", l.url, "bytes", total)
	return &loggingReader{rc: stream, log: l.log, url: l.url, total: total, done: current, start: time.Now()}
}

type loggingReader struct {
	rc          io.ReadCloser
	log         *slog.Logger
	url         string
	total, done int64
	quarter     int64
	start       time.Time
	eof         bool
}

func (r *loggingReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	r.done += int64(n)
	if r.total > 0 {
		if q := r.done * 4 / r.total; q > r.quarter && q < 4 {
			r.quarter = q
			r.log.Info("downloading", "url", r.url, "percent", q*25, "bytes", r.done)
		}
	}
	if err == io.EOF && !r.eof {
		r.eof = true
		r.log.Info("download finished", "url", r.url, "bytes", r.done, "seconds", time.Since(r.start).Seconds())
	}
	return n, err
}

func (r *loggingReader) Close() error { return r.rc.Close() }
