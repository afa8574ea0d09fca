package release

import (
	"context"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// The bundle is unpacked while it downloads: the bytes go-getter streams to
// disk are also fed, through a pipe, to the parallel bzip2 decoder and the tar
// extractor, so the download, the sha512 pass, the decoding and the writes of
// the staged files overlap. Nothing staged is used before the whole bundle's
// digest matches: on a mismatch, a failed attempt or a cancel the staged tree
// is discarded (a retry starts from an empty tree). The extractor's bounds
// apply to unverified bytes as they did to verified ones, and the decoder is
// memory-safe and bounded on any input (see bootstrap/bz2).

// fetchUnpacked downloads src to dst like fetchHashed and unpacks it into tree
// in the same pass. It returns the bundle's sha512 and the staged files'
// digests. A download failure is retried (transient) as fetch does; a bad
// archive is not.
func (f *fetcher) fetchUnpacked(ctx context.Context, src, dst string, limit int64, tree string) (string, map[string]string, error) {
	delay := f.backoff
	for attempt := 1; ; attempt++ {
		d, staged, ferr, uerr := f.onceUnpacked(ctx, src, dst, limit, tree)
		if ferr == nil && uerr == nil {
			return d, staged, nil
		}
		if err := emptyDir(tree); err != nil {
			return "", nil, fmt.Errorf("clear %s after a failed attempt: %w", tree, err)
		}
		if ferr == nil {
			// The download is whole: the archive itself is bad (or the disk).
			return d, nil, &unpackError{src: src, err: uerr}
		}
		ferr.Attempts = attempt
		if ferr.Kind != KindTransient || attempt > f.retries {
			return "", nil, ferr
		}
		f.log.Warn("download failed, retrying", "url", redact(src), "attempt", attempt, "of", f.retries+1, "in", delay.String(), "error", ferr.Err.Error(), "status", ferr.Status)
		select {
		case <-ctx.Done():
			return "", nil, &FetchError{URL: src, Kind: KindCanceled, Attempts: attempt, Err: ctx.Err()}
		case <-time.After(delay):
		}
		delay = min(2*delay, maxBackoff)
	}
}

// unpackError is a bundle that downloaded whole but did not unpack.
type unpackError struct {
	src string
	err error
}

func (e *unpackError) Error() string {
	return fmt.Sprintf("unpack %s from %s: %v (if the disk is full: %s)", BundleName, redact(e.src), e.err, localFix)
}

func (e *unpackError) Unwrap() error { return e.err }

// downloadBroke is what the extractor reads when the download under it failed.
type downloadBroke struct{ err error }

func (e *downloadBroke) Error() string { return "download interrupted: " + e.err.Error() }

// onceUnpacked is one attempt: ferr when the download failed, uerr when the
// unpacking did. The extractor follows the file as go-getter writes it, so
// the download never waits for the decoder (its timeout covers the transfer
// only) and nothing is buffered in memory.
func (f *fetcher) onceUnpacked(ctx context.Context, src, dst string, limit int64, tree string) (digest string, staged map[string]string, ferr *FetchError, uerr error) {
	fw := newFollower(dst)
	if lf := openLocal(src, limit); lf != nil {
		// A local bundle is whole already: unpack it (and hash what is
		// unpacked) while go-getter copies it, instead of after.
		fw.local(lf)
	}
	first := fw
	stop := context.AfterFunc(ctx, func() { first.fail(ctx.Err()) })
	defer stop()
	type result struct {
		staged map[string]string
		err    error
	}
	done := make(chan result, 1)
	unpack := func(fw *follower) {
		_, st, err := extractBundleFrom(ctx, fw, tree)
		fw.close()
		done <- result{st, err}
	}
	go unpack(fw)
	h := &hashingTracker{notify: fw.grew}
	ferr = f.once(ctx, src, dst, limit, h)
	if ferr != nil {
		fw.fail(&downloadBroke{ferr})
		<-done
		return "", nil, ferr, nil
	}
	digest, whole := h.digest()
	if !whole && h.streamed() {
		// Streamed in pieces (a resumed download): unpack the file again from its start.
		fw.fail(errors.New("restarting from the downloaded file"))
		<-done
		if err := emptyDir(tree); err != nil {
			return "", nil, nil, err
		}
		fw = newFollower(dst)
		defer context.AfterFunc(ctx, func() { fw.fail(ctx.Err()) })()
		go unpack(fw)
	}
	fw.finish(!whole) // file:// streams nothing through the tracker: hash while reading
	res := <-done
	if !whole {
		if digest = fw.digest(); digest == "" {
			// The extractor stopped before the end: hash the rest for the verdict.
			d, err := hashFile(dst)
			if err != nil {
				return "", nil, nil, err
			}
			digest = d
		}
	}
	if res.err != nil {
		return digest, nil, nil, res.err
	}
	return digest, res.staged, nil, nil
}

// follower reads a file that is still being written, waiting for more until
// the writer has finished (or failed).
type follower struct {
	path string
	f    *os.File
	mu   sync.Mutex
	cond *sync.Cond
	// under mu
	signals  uint64
	finished bool
	hashing  bool
	failed   error
	// the reader's own
	h   hash.Hash
	eof bool
}

func newFollower(path string) *follower {
	fw := &follower{path: path}
	fw.cond = sync.NewCond(&fw.mu)
	return fw
}

// openLocal opens the file a file:// src names when it is a regular file
// within limit; nil otherwise (go-getter's copy then reports the problem).
// O_NONBLOCK: opening a FIFO must not wait for a writer.
func openLocal(src string, limit int64) *os.File {
	u, err := url.Parse(src)
	if err != nil || u.Scheme != "file" {
		return nil
	}
	f, err := os.OpenFile(u.Path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() || st.Size() > limit {
		f.Close()
		return nil
	}
	return f
}

// local makes fw read (and hash) f, a complete file, from its start.
func (fw *follower) local(f *os.File) {
	fw.f, fw.h = f, sha512.New()
	fw.finish(true)
}

func (fw *follower) grew() {
	fw.mu.Lock()
	fw.signals++
	fw.mu.Unlock()
	fw.cond.Broadcast()
}

// finish says the file is complete; hash asks the reader to hash what it reads.
func (fw *follower) finish(hash bool) {
	fw.mu.Lock()
	fw.finished, fw.hashing = true, hash
	fw.mu.Unlock()
	fw.cond.Broadcast()
}

func (fw *follower) fail(err error) {
	fw.mu.Lock()
	if fw.failed == nil {
		fw.failed = err
	}
	fw.mu.Unlock()
	fw.cond.Broadcast()
}

func (fw *follower) state() (uint64, bool, bool, error) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	return fw.signals, fw.finished, fw.hashing, fw.failed
}

// wait blocks until the writer makes progress past seen, finishes or fails.
func (fw *follower) wait(seen uint64) {
	fw.mu.Lock()
	for fw.signals == seen && !fw.finished && fw.failed == nil {
		fw.cond.Wait()
	}
	fw.mu.Unlock()
}

func (fw *follower) Read(p []byte) (int, error) {
	for {
		seen, finished, hashing, failed := fw.state()
		if failed != nil {
			return 0, failed
		}
		if fw.f == nil {
			if seen == 0 && !finished {
				fw.wait(seen) // the getter has not started writing
				continue
			}
			f, err := os.Open(fw.path)
			if err != nil {
				return 0, err
			}
			fw.f = f
			if hashing {
				fw.h = sha512.New() // read from the start after the download: hash here
			}
		}
		n, err := fw.f.Read(p)
		if n > 0 {
			if fw.h != nil {
				fw.h.Write(p[:n])
			}
			return n, nil
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		if finished { // finished before this read: the end is the end
			fw.eof = true
			return 0, io.EOF
		}
		fw.wait(seen)
	}
}

// digest is the sha512 of the whole file when the reader hashed it to its end.
func (fw *follower) digest() string {
	if fw.h == nil || !fw.eof {
		return ""
	}
	return hex.EncodeToString(fw.h.Sum(nil))
}

func (fw *follower) close() {
	if fw.f != nil {
		fw.f.Close()
	}
}

// emptyDir removes everything inside dir.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// maxTarTail bounds what may follow the tar archive's end in the bundle (tar
// pads to its record size, 10 KiB for GNU tar).
const maxTarTail = 1 << 20

// drainTar reads the decompressed stream to its end after the tar archive
// ended, so every remaining bzip2 block is checked and a feeding download
// completes.
func drainTar(r io.Reader) error {
	n, err := io.Copy(io.Discard, io.LimitReader(r, maxTarTail+1))
	if err != nil {
		return fmt.Errorf("read %s: %w", BundleName, err)
	}
	if n > maxTarTail {
		return fmt.Errorf("%s: more than %d bytes after the end of the tar archive; refusing it", BundleName, maxTarTail)
	}
	return nil
}

// syncer fsyncs written files in the background, so unpacking the next file
// does not wait for the disk; wait returns the first error once all are done.
type syncer struct {
	wg   sync.WaitGroup
	mu   sync.Mutex
	err  error
	busy chan struct{} // at most a few files open at once
}

func (s *syncer) write(p string, r io.Reader, size int64) error {
	if s.busy == nil {
		s.busy = make(chan struct{}, 4)
	}
	f, err := writeUnsynced(p, r, size)
	if err != nil {
		return err
	}
	s.busy <- struct{}{}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := syncClose(p, f); err != nil {
			s.mu.Lock()
			if s.err == nil {
				s.err = err
			}
			s.mu.Unlock()
		}
		<-s.busy
	}()
	return nil
}

func (s *syncer) wait() error {
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}
