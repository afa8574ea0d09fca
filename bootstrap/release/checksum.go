package release

import (
	"bufio"
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
)

// ChecksumError is a digest that does not match: never retried, never installed.
type ChecksumError struct {
	Name, URL    string
	Want, Got    string
	WantFrom     string // where Want came from: a URL or "release.sha512.<name>"
	PinConflicts bool   // the published file disagrees with the pinned digest
}

func (e *ChecksumError) Error() string {
	if e.PinConflicts {
		return fmt.Sprintf("%s publishes sha512 %s for %s, but the config pins release.sha512.%s = %s; "+
			"the server offers a different artifact than the one pinned. "+
			"If the release changed on purpose, update the pinned digest (or --sha512 %s=HEX); otherwise treat the mirror as untrusted",
			redact(e.URL), e.Got, e.Name, e.Name, e.Want, e.Name)
	}
	return fmt.Sprintf("%s: sha512 is %s, but %s says %s; the download is corrupt or not the published artifact. "+
		"Retry later; if it persists, check the mirror (or the pinned digest)", redact(e.URL), e.Got, redactFrom(e.WantFrom), e.Want)
}

func redactFrom(s string) string {
	if strings.Contains(s, "://") {
		return redact(s)
	}
	return s
}

// parseSHA512File reads sha512sum output: "<128 hex>  <basename>" (a leading "*"
// marks binary mode). A file naming another artifact is refused, so a mirror
// cannot answer runsc.sha512 with the shim's digest.
func parseSHA512File(data []byte, name string) (string, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		digest := strings.ToLower(fields[0])
		if !isSHA512Hex(digest) {
			return "", fmt.Errorf("not sha512sum output (want \"<128 hex digits>  %s\")", name)
		}
		if len(fields) > 1 {
			file := strings.TrimPrefix(fields[1], "*")
			if i := strings.LastIndex(file, "/"); i >= 0 {
				file = file[i+1:]
			}
			if file != name {
				return "", fmt.Errorf("digest is for %q, not %q", file, name)
			}
		}
		return digest, nil
	}
	return "", fmt.Errorf("empty checksum file")
}

func isSHA512Hex(s string) bool {
	if len(s) != sha512.Size*2 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// hashFile returns a file's sha512 as lowercase hex.
func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha512.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// expectedDigest decides the digest an artifact must have. A pinned digest wins
// (authenticity anchored in the image or customData, not in the server) and a
// published file that disagrees with it is an error; without a pin the published
// file is mandatory.
func expectedDigest(name, pinned, published, publishedURL string) (want, from string, err error) {
	pinned = strings.ToLower(pinned)
	if pinned != "" {
		if published != "" && published != pinned {
			return "", "", &ChecksumError{Name: name, URL: publishedURL, Want: pinned, Got: published, PinConflicts: true}
		}
		return pinned, "release.sha512." + name, nil
	}
	if published == "" {
		return "", "", fmt.Errorf("%s has no published checksum (%s is missing) and none is pinned: checksums are mandatory; "+
			"publish the .sha512 file next to it or pin the digest with --sha512 %s=HEX", name, redact(publishedURL), name)
	}
	return published, publishedURL, nil
}
