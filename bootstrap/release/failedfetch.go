package release

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/backoff"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/nodepaths"
)

// A download that fails verification fails the same way next time: the mirror
// serves the same bytes. kubelet's gate runs at every kubelet start and kubelet's
// Restart= starts it again every few seconds, and each attempt would download
// the whole bundle (55 MB) and decode it again, for nothing, on a node that
// may be running pods. So an artifact that failed verification is remembered by
// what was asked for (its URL and the digest it must have) and not downloaded
// again until a pause has passed that doubles with each consecutive failure.
// A different URL or digest (the mirror or the pin was fixed) tries at once; a
// reboot (the record is on /run) or a success forgets it.

// FailedDownloadPath is the record of the last artifact that failed verification.
var FailedDownloadPath = nodepaths.FailedDownload

// Variables for tests.
var (
	fetchBackoffBase = 30 * time.Second
	fetchBackoffMax  = 10 * time.Minute
	timeNow          = time.Now
)

type failedFetch struct {
	// Key is a hash of the URL (which may hold credentials) and the digest.
	Key   string    `json:"key"`
	File  string    `json:"file"`
	URL   string    `json:"url"` // redacted
	At    time.Time `json:"at"`
	Count int       `json:"consecutive_failures"`
	Error string    `json:"error"`
}

// NotRetriedError is a download skipped because the same artifact failed
// verification a moment ago.
type NotRetriedError struct {
	File, URL string
	Last      failedFetch
	Next      time.Time
	Record    string // node path of the record
}

func (e *NotRetriedError) Error() string {
	return fmt.Sprintf("%s: not downloaded again: it failed verification at %s (%d time(s) in a row): %s; "+
		"the next download is allowed from %s. Fix the mirror or the pinned digest (a changed URL or digest is tried at once), "+
		"or remove %s to try now", e.URL, e.Last.At.Format(time.RFC3339), e.Last.Count, e.Last.Error, e.Next.Format(time.RFC3339), e.Record)
}

func fetchKey(url, digest string) string {
	h := sha256.Sum256([]byte(url + "\n" + digest))
	return hex.EncodeToString(h[:])
}

func fetchBackoff(failures int) time.Duration {
	return backoff.Doubling(fetchBackoffBase, fetchBackoffMax, failures)
}

func loadFailedFetch(root fsroot.Root) (failedFetch, bool) {
	var f failedFetch
	b, err := root.ReadFile(FailedDownloadPath)
	if err != nil || json.Unmarshal(b, &f) != nil {
		return f, false
	}
	return f, true
}

// mayFetch refuses a download of an artifact that just failed verification.
func (i *Installer) mayFetch(name, url, digest string) error {
	last, ok := loadFailedFetch(i.Root)
	if !ok || last.Key != fetchKey(url, digest) {
		return nil
	}
	next := last.At.Add(fetchBackoff(last.Count))
	if !timeNow().Before(next) {
		return nil
	}
	return &NotRetriedError{File: name, URL: redact(url), Last: last, Next: next, Record: i.Root.Path(FailedDownloadPath)}
}

// recordFetch remembers an artifact that failed verification (err != nil) or
// forgets the record once an artifact verified.
func (i *Installer) recordFetch(name, url, digest string, err error) {
	if err == nil {
		if rerr := i.Root.Remove(FailedDownloadPath); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			i.log().Warn("could not forget the failed download", "path", i.Root.Path(FailedDownloadPath), "error", rerr)
		}
		return
	}
	key := fetchKey(url, digest)
	last, _ := loadFailedFetch(i.Root)
	count := 1
	if last.Key == key {
		count = last.Count + 1
	}
	rec := failedFetch{Key: key, File: name, URL: redact(url), At: timeNow().UTC(), Count: count, Error: err.Error()}
	b, _ := json.MarshalIndent(rec, "", "  ")
	if werr := i.Root.WriteFile(FailedDownloadPath, append(b, '\n'), fsroot.WriteOptions{Mode: 0o600}); werr != nil {
		i.log().Warn("could not remember the failed download: the next run downloads it again", "path", i.Root.Path(FailedDownloadPath), "error", werr)
	}
}
