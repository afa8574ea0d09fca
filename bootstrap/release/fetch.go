package release

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"syscall"
	"time"

	getter "github.com/hashicorp/go-getter/v2"

	redactpkg "github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/redact"
)

// Kind classifies a fetch failure; it decides whether to retry and what to tell
// the operator.
type Kind int

const (
	// KindPermanent: retrying will not help (403, bad TLS certificate, ...).
	KindPermanent Kind = iota
	// KindNotFound: the server has no such file (404, 410, missing local file).
	KindNotFound
	// KindTransient: connection reset, 5xx, timeout, truncated body: retried.
	KindTransient
	// KindLocal: writing the download failed here (disk full, read-only, denied).
	KindLocal
	// KindCanceled: the caller canceled (SIGTERM).
	KindCanceled
)

// FetchError says which URL failed, how, after how many attempts, and what to do.
type FetchError struct {
	URL      string
	Kind     Kind
	Status   int
	Attempts int
	Err      error
}

func (e *FetchError) Error() string {
	what := e.Err.Error()
	if e.Status != 0 {
		what = fmt.Sprintf("HTTP %d %s", e.Status, http.StatusText(e.Status))
	}
	tries := ""
	if e.Attempts > 1 {
		tries = fmt.Sprintf(" (%d attempts)", e.Attempts)
	}
	// The wrapped Go error (a *url.Error from net/http, go-getter's text) repeats
	// the URL with its credentials: scrub the whole message.
	return redactpkg.String(fmt.Sprintf("fetch %s%s: %s; %s", redact(e.URL), tries, what, e.fix()))
}

func (e *FetchError) Unwrap() error { return e.Err }

func (e *FetchError) fix() string {
	switch e.Kind {
	case KindNotFound:
		return "check --release and --arch (or --release-url)"
	case KindTransient:
		return "the server or network failed; retry later, raise --retries/--timeout, or use a mirror with --release-url"
	case KindLocal:
		return "free space or make the bin directory writable (--bin-dir), then retry"
	case KindCanceled:
		return "interrupted"
	}
	if e.Status == http.StatusForbidden || e.Status == http.StatusUnauthorized {
		return "the server denied access; check the URL's credentials (an Azure SAS token may have expired)"
	}
	return "check the URL and the server"
}

// redact hides a URL's userinfo and query values (a password, an Azure SAS
// token) in messages.
func redact(s string) string { return redactpkg.URL(s) }

// fetcher downloads single files with go-getter, limited to the http, https and
// file getters, with a timeout per attempt and bounded exponential backoff.
type fetcher struct {
	client   *http.Client // base client; each attempt wraps its transport
	timeout  time.Duration
	retries  int
	backoff  time.Duration // first retry delay; doubles up to maxBackoff
	log      *slog.Logger
	progress func(name string) getter.ProgressTracker
	// plainHTTP allows following a redirect from https to plain http: only when
	// every artifact's digest is pinned (CheckSource).
	plainHTTP bool
}

const maxBackoff = 30 * time.Second

// fetch downloads src to dst (which must not exist), retrying transient failures.
// limit bounds the size of the file.
func (f *fetcher) fetch(ctx context.Context, src, dst string, limit int64) error {
	return f.fetchWith(ctx, src, dst, limit, nil)
}

// fetchHashed is fetch that also returns the file's sha512, computed from the bytes
// as they stream to disk: a large artifact is hashed in the same pass that writes
// it, not read back afterwards (sha512 is the install's main CPU cost). When the
// getter streams nothing through the tracker (file://), the file is hashed after.
func (f *fetcher) fetchHashed(ctx context.Context, src, dst string, limit int64) (string, error) {
	h := &hashingTracker{}
	if err := f.fetchWith(ctx, src, dst, limit, h); err != nil {
		return "", err
	}
	if d, ok := h.digest(); ok {
		return d, nil
	}
	return hashFile(dst)
}

func (f *fetcher) fetchWith(ctx context.Context, src, dst string, limit int64, h *hashingTracker) error {
	delay := f.backoff
	var last *FetchError
	for attempt := 1; ; attempt++ {
		err := f.once(ctx, src, dst, limit, h)
		if err == nil {
			return nil
		}
		last = err
		last.Attempts = attempt
		if last.Kind != KindTransient || attempt > f.retries {
			return last
		}
		f.log.Warn("download failed, retrying", "url", redact(src), "attempt", attempt, "of", f.retries+1, "in", delay.String(), "error", err.Err.Error(), "status", err.Status)
		select {
		case <-ctx.Done():
			return &FetchError{URL: src, Kind: KindCanceled, Attempts: attempt, Err: ctx.Err()}
		case <-time.After(delay):
		}
		delay = min(2*delay, maxBackoff)
	}
}

// once is one attempt. go-getter reports an HTTP status only as text, so the
// attempt's transport records the status and enforces the size limit; the
// error is classified from those and from the error chain.
func (f *fetcher) once(ctx context.Context, src, dst string, limit int64, h *hashingTracker) *FetchError {
	_ = os.Remove(dst) // go-getter's HTTP getter appends to an existing file
	u, err := url.Parse(src)
	if err != nil {
		return &FetchError{URL: src, Kind: KindPermanent, Err: err}
	}
	if u.Scheme == "file" {
		// go-getter flattens a local stat error into text: look first, so a
		// missing file is a clean "not found" (a wrong release or arch).
		st, err := os.Stat(u.Path)
		if errors.Is(err, fs.ErrNotExist) {
			return &FetchError{URL: src, Kind: KindNotFound, Err: fmt.Errorf("no such file %s", u.Path)}
		}
		// The same bound as over HTTP; and only a regular file, whose size is
		// known (a device or FIFO, /dev/zero, would be copied without end).
		if err == nil && !st.Mode().IsRegular() {
			return &FetchError{URL: src, Kind: KindPermanent, Err: fmt.Errorf("%s is not a regular file (%s)", u.Path, st.Mode().Type())}
		}
		if err == nil && st.Size() > limit {
			return &FetchError{URL: src, Kind: KindPermanent, Err: fmt.Errorf("%s is %d bytes, more than the %d allowed", u.Path, st.Size(), limit)}
		}
	}
	actx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	rec := &recorder{base: f.client.Transport, limit: limit}
	if rec.base == nil {
		rec.base = http.DefaultTransport
	}
	hc := *f.client
	hc.Transport = rec
	hc.CheckRedirect = f.checkRedirect(f.client.CheckRedirect)
	client := &getter.Client{
		Getters: []getter.Getter{
			&getter.HttpGetter{Client: &hc, DoNotCheckHeadFirst: true, ReadTimeout: f.timeout, XTerraformGetDisabled: true},
			&getter.FileGetter{},
		},
		// Archives are checked against their digest and unpacked by this package,
		// never by go-getter.
		Decompressors:   map[string]getter.Decompressor{},
		DisableSymlinks: true,
	}
	req := &getter.Request{Src: src, Dst: dst, GetMode: getter.ModeFile, Copy: true, DisableSymlinks: true}
	if f.progress != nil {
		req.ProgressListener = f.progress(src)
	}
	if h != nil {
		h.reset(req.ProgressListener)
		req.ProgressListener = h
	}
	_, err = client.Get(actx, req)
	if err == nil {
		if st, serr := os.Lstat(dst); serr != nil || !st.Mode().IsRegular() {
			return &FetchError{URL: src, Kind: KindPermanent, Err: fmt.Errorf("download did not produce a regular file at %s", dst)}
		}
		return nil
	}
	return classify(ctx, actx, src, rec.status(), err)
}

func classify(parent, attempt context.Context, src string, status int, err error) *FetchError {
	e := &FetchError{URL: src, Err: err}
	var errno syscall.Errno
	switch {
	case parent.Err() != nil:
		e.Kind = KindCanceled
	case errors.As(err, &errno) && localErrno[errno]:
		e.Kind = KindLocal
	case errors.Is(err, errTooLarge), errors.Is(err, errDowngrade):
		e.Kind = KindPermanent
	case status == http.StatusNotFound || status == http.StatusGone:
		e.Kind, e.Status = KindNotFound, status
	case status >= 500 || status == http.StatusTooManyRequests || status == http.StatusRequestTimeout:
		e.Kind, e.Status = KindTransient, status
	case status >= 300 && status != http.StatusPartialContent:
		e.Kind, e.Status = KindPermanent, status
	case attempt.Err() != nil:
		e.Kind, e.Err = KindTransient, fmt.Errorf("timed out (no complete answer within the per-attempt timeout): %w", err)
	case isCertError(err):
		e.Kind = KindPermanent
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF), errors.Is(err, io.ErrShortWrite):
		e.Kind, e.Err = KindTransient, fmt.Errorf("connection closed before the whole file arrived (truncated): %w", err)
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EPIPE):
		e.Kind = KindTransient
	default:
		var nerr net.Error
		if errors.As(err, &nerr) {
			e.Kind = KindTransient // DNS not ready at boot, dial timeouts, resets
		} else {
			e.Kind = KindPermanent
		}
	}
	return e
}

// localErrno are failures to write the download here, not the server's fault.
var localErrno = map[syscall.Errno]bool{
	syscall.ENOSPC: true, syscall.EDQUOT: true, syscall.EROFS: true,
	syscall.EACCES: true, syscall.EPERM: true, syscall.ENOTDIR: true,
}

func isCertError(err error) bool {
	var unknown x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	return errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid)
}

var errTooLarge = errors.New("file larger than allowed")

var errDowngrade = errors.New("redirected from https to plain http")

// checkRedirect refuses a redirect from https to plain http unless every digest
// is pinned: the .sha512 would then come over a channel anyone on the path can
// rewrite.
func (f *fetcher) checkRedirect(next func(*http.Request, []*http.Request) error) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme == "http" && len(via) > 0 && via[0].URL.Scheme == "https" && !f.plainHTTP {
			return fmt.Errorf("%w (%s to %s), which is refused unless every artifact's sha512 is pinned", errDowngrade, redact(via[0].URL.String()), redact(req.URL.String()))
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
}

// recorder is the per-attempt transport: it remembers the last response status
// and refuses bodies larger than the limit (a hostile or broken server cannot
// fill the disk).
type recorder struct {
	base  http.RoundTripper
	limit int64
	mu    sync.Mutex
	code  int
}

func (r *recorder) status() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.code
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.code = resp.StatusCode
	r.mu.Unlock()
	if resp.ContentLength > r.limit {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: server announces %d bytes, limit %d", errTooLarge, resp.ContentLength, r.limit)
	}
	resp.Body = &limitedBody{rc: resp.Body, left: r.limit}
	return resp, nil
}

type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// Probe one byte: a body of exactly the limit is fine.
		var one [1]byte
		if n, _ := b.rc.Read(one[:]); n > 0 {
			return 0, errTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
