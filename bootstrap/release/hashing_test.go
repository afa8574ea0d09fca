package release

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"io"
	"testing"
)

func readAll(t *testing.T, rc io.ReadCloser) {
	t.Helper()
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Fatal(err)
	}
}

func TestHashingTrackerDigestsTheWholeStreamOnly(t *testing.T) {
	body := bytes.Repeat([]byte("gvisor"), 100000)
	sum := sha512.Sum512(body)
	want := hex.EncodeToString(sum[:])

	h := &hashingTracker{}
	h.reset(nil)
	readAll(t, h.TrackProgress("u", 0, int64(len(body)), io.NopCloser(bytes.NewReader(body))))
	if got, ok := h.digest(); !ok || got != want {
		t.Fatalf("whole stream: %v %s", ok, got)
	}

	h.reset(nil) // a resumed download streams only the tail: never trust its digest
	readAll(t, h.TrackProgress("u", 10, int64(len(body)), io.NopCloser(bytes.NewReader(body[10:]))))
	if _, ok := h.digest(); ok {
		t.Fatal("digest of a resumed stream trusted")
	}

	h.reset(nil) // a stream not read to its end
	rc := h.TrackProgress("u", 0, int64(len(body)), io.NopCloser(bytes.NewReader(body)))
	buf := make([]byte, 10)
	_, _ = rc.Read(buf)
	if _, ok := h.digest(); ok {
		t.Fatal("digest of a partly read stream trusted")
	}

	h.reset(nil) // nothing streamed (file:// copies): the caller hashes the file
	if _, ok := h.digest(); ok {
		t.Fatal("digest without a stream")
	}
}
