package bz2

import (
	"bytes"
	"math/rand/v2"
	"sort"
	"testing"
)

// bwtLinks is the link table of a random text of n bytes drawn from k byte
// values: as decodeBits builds it from the text's BWT.
func bwtLinks(r *rand.Rand, n, k int) (tt []uint32, origPtr int, text []byte) {
	text = make([]byte, n)
	for i := range text {
		text[i] = byte(r.IntN(k))
	}
	tt, origPtr = linksOf(text)
	return tt, origPtr, text
}

// sortRotations sorts the rotations of text (doubled: text twice) by
// prefix doubling, so periodic texts (whose rotations compare equal over their
// whole length) cost no more than others.
func sortRotations(rot []int, doubled []byte, n int) {
	rank := make([]int, n)
	for i := range rank {
		rank[i] = int(doubled[i])
	}
	tmp := make([]int, n)
	for k := 1; ; k *= 2 {
		key := func(i int) (int, int) { return rank[i], rank[(i+k)%n] }
		sort.Slice(rot, func(a, b int) bool {
			a1, a2 := key(rot[a])
			b1, b2 := key(rot[b])
			return a1 < b1 || a1 == b1 && a2 < b2
		})
		tmp[rot[0]] = 0
		for i := 1; i < n; i++ {
			a1, a2 := key(rot[i-1])
			b1, b2 := key(rot[i])
			tmp[rot[i]] = tmp[rot[i-1]]
			if a1 != b1 || a2 != b2 {
				tmp[rot[i]]++
			}
		}
		copy(rank, tmp)
		if k >= n || rank[rot[n-1]] == n-1 {
			return
		}
	}
}

// TestInverseBWT: the multi-lane walk gives the text back, for texts of one
// cycle and periodic ones (several cycles: the plain walk's case), at sizes
// around the lane threshold.
func TestInverseBWT(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	var wk walker
	for _, n := range []int{1, 2, 100, minLaneBlock - 1, minLaneBlock, minLaneBlock + 4097, 100000} {
		for _, k := range []int{1, 2, 4, 256} {
			tt, orig, text := bwtLinks(r, n, k)
			out := make([]byte, n)
			wk.inverseBWT(tt, orig, out)
			if !bytes.Equal(out, text) {
				t.Fatalf("n=%d k=%d: first difference at %d", n, k, firstDiff(out, text))
			}
			for i, x := range tt {
				if x&markBit != 0 {
					t.Fatalf("n=%d: mark left at %d", n, i)
				}
			}
		}
	}
	// Periodic: "abc" repeated, whose links are many cycles of three.
	text := bytes.Repeat([]byte("abcab"), 30000)
	tt, orig := linksOf(text)
	out := make([]byte, len(text))
	wk.inverseBWT(tt, orig, out)
	if !bytes.Equal(out, text) {
		t.Fatalf("periodic: first difference at %d", firstDiff(out, text))
	}
}

// linksOf is the link table of text, by its BWT from sorting rotations (slow,
// fine for tests).
func linksOf(text []byte) ([]uint32, int) {
	n := len(text)
	rot := make([]int, n)
	for i := range rot {
		rot[i] = i
	}
	doubled := append(append([]byte(nil), text...), text...)
	sortRotations(rot, doubled, n)
	tt := make([]uint32, n)
	var counts [256]int
	orig := 0
	for i, s := range rot {
		b := text[(s+n-1)%n]
		tt[i] = uint32(b)
		counts[b]++
		if s == 0 {
			orig = i
		}
	}
	sum := 0
	for b := range 256 {
		c := counts[b]
		counts[b] = sum
		sum += c
	}
	for i := range tt {
		b := byte(tt[i])
		tt[counts[b]] |= uint32(i) << 8
		counts[b]++
	}
	return tt, orig
}

func BenchmarkInverseBWT(b *testing.B) {
	r := rand.New(rand.NewPCG(15, 16))
	tt, orig, _ := bwtLinks(r, maxBlock, 256)
	out := make([]byte, maxBlock)
	b.Run("lanes", func(b *testing.B) {
		var wk walker
		for b.Loop() {
			wk.inverseBWT(tt, orig, out)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/maxBlock, "ns/byte")
	})
	b.Run("plain", func(b *testing.B) {
		for b.Loop() {
			plainWalk(tt, tt[orig]>>8&posMask, out)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/maxBlock, "ns/byte")
	})
}
