package bz2

import (
	"bytes"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

// compress runs the real bzip2 (Go has no bzip2 writer).
func compress(t testing.TB, data []byte, level int) []byte {
	t.Helper()
	cmd := exec.Command("bzip2", fmt.Sprintf("-%d", level), "-c")
	cmd.Stdin = bytes.NewReader(data)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("bzip2 -%d: %v: %s", level, err, errb.String())
	}
	return out.Bytes()
}

func decodeAll(z *Reader) ([]byte, error) {
	defer z.Close()
	return io.ReadAll(z)
}

// samples are inputs that exercise every stage: runs of every length around
// the run-length thresholds, long zero runs (the 45x blocks), text, noise, and
// a slice of a real executable.
func samples(t testing.TB) map[string][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	noise := make([]byte, 1<<20)
	for i := range noise {
		noise[i] = byte(r.Uint32())
	}
	var runs bytes.Buffer
	for n := 1; n < 600; n++ {
		runs.Write(bytes.Repeat([]byte{byte(n)}, n))
		runs.Write(bytes.Repeat([]byte{'x'}, n%7))
	}
	var text bytes.Buffer
	words := strings.Fields("runsc containerd shim sandbox gVisor sentry gofer kernel node pod release bundle")
	for text.Len() < 3<<19 {
		text.WriteString(words[r.IntN(len(words))])
		text.WriteByte(" \n"[r.IntN(2)])
	}
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		"one byte":   {'a'},
		"four equal": []byte("aaaa"),
		"five equal": []byte("aaaaa"),
		"runs":       runs.Bytes(),
		"zeros":      make([]byte, 2<<20), // blocks of runs: 900k of them expand to 45 MB
		"noise":      noise,
		"text":       text.Bytes(),
		"executable": self[:min(len(self), 2<<20)],
	}
}

func TestDecodeMatchesBzip2(t *testing.T) {
	for name, data := range samples(t) {
		for _, level := range []int{1, 9} {
			comp := compress(t, data, level)
			for _, workers := range []int{1, 3} {
				t.Run(fmt.Sprintf("%s/-%d/workers=%d", name, level, workers), func(t *testing.T) {
					got, err := decodeAll(NewReader(bytes.NewReader(comp), workers))
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, data) {
						t.Fatalf("decoded %d bytes, want %d (first difference at %d)", len(got), len(data), firstDiff(got, data))
					}
				})
			}
		}
	}
}

// TestOneCore decodes with the runtime limited to one thread and with reads
// of one byte at a time from both ends.
func TestOneCore(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	data := samples(t)["text"]
	comp := compress(t, data, 1)
	z := NewReader(iotest.OneByteReader(bytes.NewReader(comp)), 0)
	defer z.Close()
	got, err := io.ReadAll(&oneByte{z})
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("err %v, %d bytes of %d", err, len(got), len(data))
	}
}

type oneByte struct{ r io.Reader }

func (o *oneByte) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}

// TestConcatenatedStreams: pbzip2 writes one stream per block; `cat a.bz2
// b.bz2` is valid bzip2 and decodes to both.
func TestConcatenatedStreams(t *testing.T) {
	s := samples(t)
	a, b := s["text"], s["runs"]
	var comp []byte
	comp = append(comp, compress(t, a, 1)...)
	comp = append(comp, compress(t, nil, 9)...) // an empty stream in between
	comp = append(comp, compress(t, b, 9)...)
	got, err := decodeAll(NewReader(bytes.NewReader(comp), 2))
	if err != nil {
		t.Fatal(err)
	}
	if want := append(append([]byte(nil), a...), b...); !bytes.Equal(got, want) {
		t.Fatalf("decoded %d bytes, want %d", len(got), len(want))
	}
	if got, err := decodeAll(NewReader(bytes.NewReader(compress(t, nil, 9)), 2)); err != nil || len(got) != 0 {
		t.Fatalf("empty stream: %d bytes, %v", len(got), err)
	}
}

func TestTrailingGarbageRefused(t *testing.T) {
	comp := append(compress(t, []byte("hello"), 9), "garbage"...)
	_, err := decodeAll(NewReader(bytes.NewReader(comp), 2))
	var ce *CorruptError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a CorruptError", err)
	}
}

func TestNotBzip2(t *testing.T) {
	for name, in := range map[string][]byte{"empty": nil, "text": []byte("this is not a bzip2 stream"), "BZh only": []byte("BZh9")} {
		_, err := decodeAll(NewReader(bytes.NewReader(in), 2))
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestTruncated: every cut of a multi-block stream is an error, never a
// silently short result.
func TestTruncated(t *testing.T) {
	data := samples(t)["text"]
	comp := compress(t, data, 1)
	r := rand.New(rand.NewPCG(3, 4))
	cuts := []int{0, 1, 3, 4, 10, len(comp) - 1, len(comp) - 4, len(comp) - 10}
	for range 40 {
		cuts = append(cuts, r.IntN(len(comp)))
	}
	for _, n := range cuts {
		got, err := decodeAll(NewReader(bytes.NewReader(comp[:n]), 2))
		if err == nil {
			t.Fatalf("cut at %d of %d: no error (%d bytes decoded)", n, len(comp), len(got))
		}
		if !bytes.HasPrefix(data, got) {
			t.Fatalf("cut at %d: output is not a prefix of the data", n)
		}
	}
}

// TestCorruptBlocks flips bits across a stream: the result is an error or,
// when the flip hit bits that carry no data, the original.
func TestCorruptBlocks(t *testing.T) {
	data := samples(t)["executable"]
	comp := compress(t, data, 1)
	r := rand.New(rand.NewPCG(5, 6))
	for range 60 {
		bad := append([]byte(nil), comp...)
		bit := r.IntN(len(bad) * 8)
		bad[bit/8] ^= 0x80 >> (bit % 8)
		got, err := decodeAll(NewReader(bytes.NewReader(bad), 2))
		if err == nil && !bytes.Equal(got, data) {
			t.Fatalf("bit %d flipped: no error and wrong output", bit)
		}
		if err != nil && !bytes.HasPrefix(data, got) {
			t.Fatalf("bit %d flipped: %v, and output beyond the good blocks", bit, err)
		}
	}
}

// TestFalseMagic cuts the stream at extra positions, as a block magic that
// occurs by chance inside compressed data would: the reader must notice the
// cut is inside a block, decode it again with more data, and skip the cut.
func TestFalseMagic(t *testing.T) {
	data := samples(t)["text"]
	comp := compress(t, data, 1)
	r := rand.New(rand.NewPCG(7, 8))
	fake := map[int64]bool{}
	for range 30 {
		fake[int64(r.IntN(len(comp)*8))] = true
	}
	for k := int64(0); k < 64; k++ {
		fake[k] = true                    // in and around the header
		fake[int64(len(comp))*8-k] = true // in and around the end-of-stream trailer
	}
	testCut = func(bit int64) bool { return fake[bit] }
	defer func() { testCut = nil }()
	for _, workers := range []int{1, 2} {
		got, err := decodeAll(NewReader(iotest.HalfReader(bytes.NewReader(comp)), workers))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("decoded %d bytes, want %d", len(got), len(data))
		}
	}
}

// TestReadError passes the input's error through.
func TestReadError(t *testing.T) {
	boom := errors.New("boom")
	comp := compress(t, samples(t)["text"], 1)
	in := io.MultiReader(bytes.NewReader(comp[:len(comp)/2]), iotest.ErrReader(boom))
	if _, err := decodeAll(NewReader(in, 2)); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want %v", err, boom)
	}
}

func TestCRC(t *testing.T) {
	// The reference: bit by bit, most significant first.
	ref := func(p []byte) uint32 {
		c := ^uint32(0)
		for _, b := range p {
			c ^= uint32(b) << 24
			for range 8 {
				if c&0x80000000 != 0 {
					c = c<<1 ^ 0x04c11db7
				} else {
					c <<= 1
				}
			}
		}
		return ^c
	}
	p := []byte("123456789 and some more bytes to pass the eight-byte loop")
	for n := range len(p) {
		if got, want := ^crcUpdate(^uint32(0), p[:n]), ref(p[:n]); got != want {
			t.Fatalf("len %d: %08x, want %08x", n, got, want)
		}
	}
	if got := ^crcUpdate(^uint32(0), []byte("123456789")); got != 0xfc891918 {
		t.Fatalf("check value %08x, want fc891918 (CRC-32/BZIP2)", got)
	}
}

// FuzzReader: whatever the input, the reader ends (no panic, no hang), and
// agrees with the standard library's decoder on every input both accept.
func FuzzReader(f *testing.F) {
	for _, s := range []string{"", "a", "aaaaaaaa", strings.Repeat("gvisor ", 400)} {
		f.Add(compress(f, []byte(s), 9))
	}
	f.Add(append(compress(f, []byte("one"), 1), compress(f, []byte("two"), 1)...))
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := decodeAll(NewReader(bytes.NewReader(in), 2))
		want, werr := io.ReadAll(bzip2.NewReader(bytes.NewReader(in)))
		if err == nil && werr == nil && !bytes.Equal(got, want) {
			t.Fatalf("output differs from compress/bzip2")
		}
		if err == nil && werr != nil && !strings.Contains(werr.Error(), "randomized") {
			t.Logf("accepted what compress/bzip2 refuses (%v)", werr)
		}
	})
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// benchFile is the .bz2 file BZ2_BENCH_FILE names; the benchmark is skipped without one.
func benchFile(b *testing.B) []byte {
	path := os.Getenv("BZ2_BENCH_FILE")
	if path == "" {
		b.Skip("set BZ2_BENCH_FILE to a .bz2 file")
	}
	comp, err := os.ReadFile(filepath.Clean(path))
	if err != nil {
		b.Fatal(err)
	}
	return comp
}

func BenchmarkDecode(b *testing.B) {
	comp := benchFile(b)
	for _, workers := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			b.SetBytes(int64(len(comp)))
			for b.Loop() {
				z := NewReader(bytes.NewReader(comp), workers)
				if _, err := io.Copy(io.Discard, z); err != nil {
					b.Fatal(err)
				}
				z.Close()
			}
		})
	}
	b.Run("compress/bzip2", func(b *testing.B) {
		b.SetBytes(int64(len(comp)))
		for b.Loop() {
			if _, err := io.Copy(io.Discard, bzip2.NewReader(bytes.NewReader(comp))); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkBlock decodes the first block of BZ2_BENCH_FILE over and over on
// one goroutine: the decoder's own speed, without the pipeline.
func BenchmarkBlock(b *testing.B) {
	comp := benchFile(b)
	comp = comp[:min(len(comp), maxChunk)]
	d := newDecoder()
	out := make([]byte, maxBlock)
	blk, err := d.decode(comp, 32+48, int64(len(comp))*8, out)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(blk.pre)))
	for b.Loop() {
		if _, err := d.decode(comp, 32+48, int64(len(comp))*8, out); err != nil {
			b.Fatal(err)
		}
	}
}
