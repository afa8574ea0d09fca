package bz2

// Canonical Huffman decoding for bzip2's coding tables: code lengths 1..20,
// codes assigned in order of length, then of symbol (as libbzip2 does).
//
// A table lookup on the next fastBits bits decodes most symbols in one step;
// longer codes fall back to comparing left-aligned codes per length.

const (
	maxCodeLen = 20
	fastBits   = 10
	maxAlpha   = 258 // 256 MTF positions + RUNA/RUNB - 1 + EOB
)

type huffman struct {
	// fast[v] for the next fastBits bits v: symbol<<4 | length, or 0 when the
	// code is longer than fastBits (or v starts no code).
	fast [1 << fastBits]uint16
	// limit[l]: one past the largest code of length l, left-aligned to
	// maxCodeLen bits; base[l]: index in syms of the first code of length l
	// minus that code's value.
	limit   [maxCodeLen + 2]uint32
	base    [maxCodeLen + 1]int32
	syms    [maxAlpha]uint16
	minLong int // shortest code length above fastBits
}

// build makes the decoding tables from code lengths; it refuses lengths that
// do not form a prefix code (more codes of some length than there is room for).
func (h *huffman) build(lens []uint8) error {
	var count [maxCodeLen + 1]int
	for _, l := range lens {
		count[l]++
	}
	var next [maxCodeLen + 2]uint32
	code := uint32(0)
	idx := int32(0)
	var offs [maxCodeLen + 1]int32
	for l := 1; l <= maxCodeLen; l++ {
		next[l] = code
		offs[l] = idx
		h.base[l] = idx - int32(code)
		code += uint32(count[l])
		if code > 1<<l {
			return corrupt("over-subscribed Huffman code")
		}
		h.limit[l] = code << (maxCodeLen - l)
		idx += int32(count[l])
		code <<= 1
	}
	h.limit[maxCodeLen+1] = 1 << maxCodeLen // sentinel, never below a 20-bit peek
	for i := range h.fast {
		h.fast[i] = 0
	}
	h.minLong = maxCodeLen + 1
	for s, l := range lens {
		c := next[l]
		next[l]++
		h.syms[offs[l]] = uint16(s)
		offs[l]++
		if int(l) <= fastBits {
			lo := c << (fastBits - l)
			hi := (c + 1) << (fastBits - l)
			v := uint16(s)<<4 | uint16(l)
			for j := lo; j < hi; j++ {
				h.fast[j] = v
			}
		} else if int(l) < h.minLong {
			h.minLong = int(l)
		}
	}
	return nil
}

// slow decodes a code longer than fastBits from the next maxCodeLen bits,
// left-aligned in peek. It returns the symbol and length, or length 0 when
// the bits start no code (an incomplete code table).
func (h *huffman) slow(peek uint32) (sym uint16, n uint) {
	for l := h.minLong; l <= maxCodeLen; l++ {
		if peek < h.limit[l] {
			i := h.base[l] + int32(peek>>(maxCodeLen-l))
			if i < 0 || int(i) >= len(h.syms) {
				return 0, 0
			}
			return h.syms[i], uint(l)
		}
	}
	return 0, 0
}
