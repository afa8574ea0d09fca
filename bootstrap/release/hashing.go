package release

import (
	"crypto/sha512"
	"encoding/hex"
	"hash"
	"io"

	getter "github.com/hashicorp/go-getter/v2"
)

// hashingTracker is a go-getter progress tracker that hashes the response body as
// the getter copies it to disk, then hands the stream on to the real progress
// tracker (bar or log lines), if any. One tracker serves one attempt at a time.
type hashingTracker struct {
	inner  getter.ProgressTracker
	notify func() // called after each read of the stream (the bundle's follower), if set
	h      hash.Hash
	whole  bool // the stream started at byte 0 (not a resumed download)
	eof    bool
	broken bool // tracked more than once in one attempt
}

func (t *hashingTracker) reset(inner getter.ProgressTracker) {
	*t = hashingTracker{inner: inner, notify: t.notify}
}

func (t *hashingTracker) TrackProgress(src string, current, total int64, stream io.ReadCloser) io.ReadCloser {
	if t.h != nil {
		t.broken = true
	}
	t.h, t.whole = sha512.New(), current == 0
	if t.inner != nil {
		stream = t.inner.TrackProgress(src, current, total, stream)
	}
	return &hashingReader{rc: stream, t: t}
}

// streamed reports whether any stream went through the tracker.
func (t *hashingTracker) streamed() bool { return t.h != nil }

// digest is the sha512 of everything streamed, when that is the whole file.
func (t *hashingTracker) digest() (string, bool) {
	if t.h == nil || !t.whole || !t.eof || t.broken {
		return "", false
	}
	return hex.EncodeToString(t.h.Sum(nil)), true
}

type hashingReader struct {
	rc io.ReadCloser
	t  *hashingTracker
}

func (r *hashingReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	r.t.h.Write(p[:n])
	if r.t.notify != nil && n > 0 {
		// The getter writes each chunk before reading the next: what came
		// before this one is in the file now.
		r.t.notify()
	}
	if err == io.EOF {
		r.t.eof = true
	}
	return n, err
}

func (r *hashingReader) Close() error { return r.rc.Close() }
