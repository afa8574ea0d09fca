package release

import (
	"archive/tar"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/bz2"
	"golang.org/x/sys/unix"
)

// Bounds on what a bundle may unpack to. Today's runsc is ~100 MB and the whole
// bundle well under 1 GB; the bounds stop a hostile or broken archive (a bzip2
// bomb, endless entries) from filling the bin directory's filesystem.
const (
	maxBundleFile    = 1 << 30 // one file
	maxBundleTotal   = 3 << 30 // all files
	maxBundleEntries = 256
	// maxSkippedEntry bounds an entry that is not installed (README, LICENSE):
	// tar decompresses it to skip it, so a bomb there costs as much as anywhere.
	maxSkippedEntry = 16 << 20
	maxDownload     = 1 << 30 // one downloaded artifact
	maxChecksumFile = 4 << 10 // one .sha512 file
)

// extractBundle unpacks gvisor.tar.bz2 into dir, which must be empty. Only what a
// release contains is accepted: runsc, containerd-shim-runsc-v1 and regular files
// directly inside gvisor-bin/. Absolute names, "..", links, devices and anything
// deeper are refused; other top-level files are skipped. Every file is written
// with mode 0755 and fsynced. It returns the relative paths it wrote.
func extractBundle(archive, dir string) ([]string, error) {
	written, _, err := extractBundleHashed(context.Background(), archive, dir)
	return written, err
}

// extractBundleHashed is extractBundle that also returns each written file's
// sha512, computed as it was written. It stops when ctx ends (SIGTERM, the
// run's deadline), also in the middle of an entry.
func extractBundleHashed(ctx context.Context, archive, dir string) (written []string, digests map[string]string, err error) {
	f, err := os.Open(archive)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	return extractBundleFrom(ctx, f, dir)
}

// extractBundleFrom is extractBundleHashed reading the compressed archive from
// r as it arrives (the download, as it downloads). bzip2 blocks are decoded on
// all cores; each file is fsynced in the background while the next one is
// unpacked, and all are durable before it returns. It reads r to its end, so a
// writer feeding r through a pipe is never left blocked.
func extractBundleFrom(ctx context.Context, r io.Reader, dir string) (written []string, digests map[string]string, err error) {
	z := bz2.NewReader(r, 0)
	defer z.Close()
	syncs := &syncer{}
	defer func() {
		if serr := syncs.wait(); err == nil && serr != nil {
			written, digests, err = nil, nil, serr
		}
	}()
	// The work is in decompressing (a bomb's few compressed bytes are read at
	// once): the context is checked on the decompressed side.
	tr := tar.NewReader(ctxReader{ctx, z})
	digests = map[string]string{}
	seen := map[string]bool{}
	var total int64
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read %s: %w", BundleName, err)
		}
		if n >= maxBundleEntries {
			return nil, nil, fmt.Errorf("%s has more than %d entries; refusing it", BundleName, maxBundleEntries)
		}
		name, ok, err := bundlePath(hdr.Name)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: entry %q: %w", BundleName, hdr.Name, err)
		}
		// Every entry counts against the bounds, skipped ones too: the next
		// Next() decompresses a skipped entry's whole body to get past it.
		if hdr.Size < 0 || hdr.Size > maxBundleFile || total+hdr.Size > maxBundleTotal || (!ok && hdr.Size > maxSkippedEntry) {
			return nil, nil, fmt.Errorf("%s: entry %q (%d bytes) exceeds the size bounds (%d bytes per file, %d in all, %d for a file that is not installed); refusing the bundle", BundleName, hdr.Name, hdr.Size, maxBundleFile, maxBundleTotal, maxSkippedEntry)
		}
		total += hdr.Size
		if !ok {
			continue
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if name != SidecarDir {
				return nil, nil, fmt.Errorf("%s: unexpected directory %q", BundleName, hdr.Name)
			}
			continue
		case tar.TypeReg:
		default:
			return nil, nil, fmt.Errorf("%s: entry %q is a %s; only regular files are installed", BundleName, hdr.Name, typeName(hdr.Typeflag))
		}
		if name == SidecarDir {
			return nil, nil, fmt.Errorf("%s: %q is a file; want a directory", BundleName, hdr.Name)
		}
		if seen[name] {
			return nil, nil, fmt.Errorf("%s: %q appears twice", BundleName, name)
		}
		seen[name] = true
		h := sha512.New()
		if err := syncs.write(filepath.Join(dir, name), io.TeeReader(io.LimitReader(tr, hdr.Size), h), hdr.Size); err != nil {
			return nil, nil, err
		}
		written = append(written, name)
		digests[name] = hex.EncodeToString(h.Sum(nil))
	}
	if err := drainTar(z); err != nil {
		return nil, nil, err
	}
	for _, want := range []string{RunscName, ShimName} {
		if !seen[want] {
			return nil, nil, fmt.Errorf("%s has no %s; it is not a gVisor release bundle", BundleName, want)
		}
	}
	if err := syncs.wait(); err != nil {
		return nil, nil, err
	}
	if err := syncTree(dir); err != nil {
		return nil, nil, err
	}
	return written, digests, nil
}

// ctxReader ends a read once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, fmt.Errorf("unpacking stopped: %w", err)
	}
	return c.r.Read(p)
}

// bundlePath cleans an entry name; ok is false for entries that are skipped.
func bundlePath(raw string) (name string, ok bool, err error) {
	if strings.HasPrefix(raw, "/") {
		return "", false, fmt.Errorf("absolute path")
	}
	for _, seg := range strings.Split(raw, "/") {
		if seg == ".." {
			return "", false, fmt.Errorf("path escapes the archive (\"..\")")
		}
	}
	name = path.Clean(raw)
	if name == "." {
		return "", false, nil
	}
	parts := strings.Split(name, "/")
	switch {
	case len(parts) == 1 && (name == RunscName || name == ShimName || name == SidecarDir):
		return name, true, nil
	case len(parts) == 2 && parts[0] == SidecarDir:
		return name, true, nil
	case len(parts) > 2 && parts[0] == SidecarDir:
		return "", false, fmt.Errorf("nested below %s/; sidecars are flat", SidecarDir)
	}
	return "", false, nil // not part of an installation (README, LICENSE, ...)
}

func typeName(t byte) string {
	switch t {
	case tar.TypeSymlink:
		return "symlink"
	case tar.TypeLink:
		return "hard link"
	case tar.TypeChar, tar.TypeBlock:
		return "device"
	case tar.TypeFifo:
		return "FIFO"
	}
	return fmt.Sprintf("entry of type %q", t)
}

// writeExecutable writes a new file with mode 0755 and fsyncs it.
func writeExecutable(p string, r io.Reader, size int64) error {
	f, err := writeUnsynced(p, r, size)
	if err != nil {
		return err
	}
	return syncClose(p, f)
}

// writeUnsynced writes a new file with mode 0755 and returns it open, not yet
// fsynced; on error nothing is left open.
func writeUnsynced(p string, r io.Reader, size int64) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return nil, err
	}
	n, err := io.Copy(&writeback{f: f}, r)
	if err == nil && size >= 0 && n != size {
		err = fmt.Errorf("%s: archive entry truncated (%d of %d bytes)", filepath.Base(p), n, size)
	}
	if err == nil {
		err = f.Chmod(0o755) // the umask does not apply to what is installed
	}
	if err != nil {
		f.Close()
		return nil, writeErr(p, err)
	}
	return f, nil
}

// writeback writes to f and starts the disk writes of every few MiB as they
// are written (sync_file_range, which does not wait for them), so the fsync
// at the end waits for the last few MiB instead of the whole file.
type writeback struct {
	f         *os.File
	off, sent int64
}

const writebackEvery = 8 << 20

func (w *writeback) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.off += int64(n)
	if w.off-w.sent >= writebackEvery {
		// A hint: an error here shows again in the fsync.
		_ = unix.SyncFileRange(int(w.f.Fd()), w.sent, w.off-w.sent, unix.SYNC_FILE_RANGE_WRITE)
		w.sent = w.off
	}
	return n, err
}

// syncClose fsyncs and closes a written file.
func syncClose(p string, f *os.File) error {
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return writeErr(p, err)
}

func writeErr(p string, err error) error {
	var pe *fs.PathError
	if err != nil && !errors.As(err, &pe) {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return err
}

// syncTree fsyncs dir and its subdirectories so new entries survive a crash.
func syncTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return syncDir(p)
		}
		return nil
	})
}
