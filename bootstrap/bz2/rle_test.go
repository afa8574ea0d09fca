package bz2

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// refExpand is bzip2's first run-length stage undone one byte at a time, as
// the format describes it: after four equal bytes, a count of further copies.
func refExpand(pre []byte) []byte {
	var out []byte
	run := 0
	var prev byte
	for i := 0; i < len(pre); i++ {
		b := pre[i]
		if run == 4 {
			out = append(out, bytes.Repeat([]byte{prev}, int(b))...)
			run = 0
			continue
		}
		if run > 0 && b == prev {
			run++
		} else {
			prev, run = b, 1
		}
		out = append(out, b)
	}
	return out
}

// runny is input with runs of every length near four, counts of every
// value, and literals, from a few byte values so runs are frequent.
func runny(r *rand.Rand, n int) []byte {
	p := make([]byte, 0, n)
	for len(p) < n {
		b := byte(r.IntN(4))
		switch r.IntN(4) {
		case 0:
			p = append(p, bytes.Repeat([]byte{b}, 1+r.IntN(6))...)
		case 1:
			p = append(p, b, b, b, b, byte(r.IntN(256)))
		default:
			p = append(p, byte(r.IntN(256)))
		}
	}
	return p[:n]
}

func TestLitLen(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for range 20000 {
		p := runny(r, r.IntN(40))
		want := len(p)
		for i := 0; i+3 < len(p); i++ {
			if p[i] == p[i+1] && p[i] == p[i+2] && p[i] == p[i+3] {
				want = i
				break
			}
		}
		if got := litLen(p); got != want {
			t.Fatalf("litLen(%v) = %d, want %d", p, got, want)
		}
	}
}

// TestExpandAndCRC: expand, fed in pieces of every size, and blockCRC agree
// with the byte-at-a-time reference.
func TestExpandAndCRC(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for range 2000 {
		pre := runny(r, r.IntN(3000))
		want := refExpand(pre)
		var got []byte
		var z rle1
		src := pre
		for {
			dst := make([]byte, 1+r.IntN(300))
			w, c := z.expand(dst, src)
			got = append(got, dst[:w]...)
			src = src[c:]
			if w == 0 {
				break
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("expand: %d bytes, want %d (first difference at %d)", len(got), len(want), firstDiff(got, want))
		}
		if c, w := blockCRC(pre), ^crcUpdate(^uint32(0), want); c != w {
			t.Fatalf("blockCRC %08x, want %08x", c, w)
		}
	}
}
