package bz2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

const (
	blockMagic = 0x314159265359 // BCD of pi
	eosMagic   = 0x177245385090 // BCD of sqrt(pi)
	maxBlock   = 900000         // level 9: the largest block any stream may declare
	groupSize  = 50             // symbols per selector
	maxGroups  = 6
)

// errShort says a block's bits ran past the end of the data it was given: the
// next block magic the scanner found was a false positive inside this block's
// data (or the stream is truncated). The reader retries with more data.
var errShort = errors.New("block runs past its data")

// CorruptError says the compressed data is not valid bzip2.
type CorruptError struct {
	Offset int64 // byte offset in the compressed stream, approximately
	What   string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("bzip2 data corrupt near byte %d: %s", e.Offset, e.What)
}

// corrupt is a CorruptError whose offset the caller fills in.
func corrupt(what string) error { return &CorruptError{Offset: -1, What: what} }

// bitReader reads bits most significant first from an in-memory slice. Past the
// end it reads zeros and counts them, so a caller checks once whether it
// overran instead of at every read.
type bitReader struct {
	data []byte
	pos  int    // next byte of data to load
	over int    // zero bytes loaded past the end
	acc  uint64 // the next n bits, left-aligned; the bits below are the following data
	n    uint
}

func (b *bitReader) init(data []byte, bit int64) {
	*b = bitReader{data: data, pos: int(bit / 8)}
	b.refill()
	b.skip(uint(bit % 8))
}

// bitPos is the position of the next bit, counted from data[0].
func (b *bitReader) bitPos() int64 { return int64(b.pos+b.over)*8 - int64(b.n) }

// refill makes at least 56 bits available.
func (b *bitReader) refill() {
	if b.n >= 56 {
		return
	}
	if b.pos+8 <= len(b.data) {
		// Bits already below the n valid ones are the same data again, so OR
		// is safe; whole bytes are accounted for.
		b.acc |= binary.BigEndian.Uint64(b.data[b.pos:]) >> b.n
		k := (63 - b.n) >> 3
		b.pos += int(k)
		b.n += k * 8
		return
	}
	for b.n < 56 {
		var c byte
		if b.pos < len(b.data) {
			c = b.data[b.pos]
			b.pos++
		} else {
			b.over++
		}
		b.acc |= uint64(c) << (56 - b.n)
		b.n += 8
	}
}

// bits reads k <= 32 bits.
func (b *bitReader) bits(k uint) uint32 {
	if b.n < k {
		b.refill()
	}
	v := uint32(b.acc >> (64 - k))
	b.acc <<= k
	b.n -= k
	return v
}

func (b *bitReader) skip(k uint) {
	if b.n < k {
		b.refill()
	}
	b.acc <<= k
	b.n -= k
}

// decoder decodes single blocks; one per goroutine, reused across blocks.
type decoder struct {
	tt   []uint32 // inverse-BWT links: next position << 8 | byte
	walk walker
	huff [maxGroups]huffman
	sel  []uint8
	lens [maxAlpha]uint8
}

func newDecoder() *decoder {
	return &decoder{tt: make([]uint32, maxBlock), sel: make([]uint8, 1<<15)}
}

// block is one decoded block: its bytes after the inverse BWT (still
// run-length encoded: 4 equal bytes are followed by a count), the CRC it
// declares, and where it ends.
type block struct {
	pre []byte
	crc uint32
	end int64 // bit position after the block, from data[0]
}

// decode decodes the block whose header starts at bit start of data (just
// after its block magic). limit is the bit position where the data the block
// may use ends; running past it is errShort. out receives the block's bytes
// (capacity maxBlock).
func (d *decoder) decode(data []byte, start, limit int64, out []byte) (blk block, err error) {
	var br bitReader
	br.init(data, start)
	blk, err = d.decodeBits(&br, out)
	if br.bitPos() > limit {
		return block{}, errShort
	}
	if err != nil {
		return block{}, err
	}
	blk.end = br.bitPos()
	if got := blockCRC(blk.pre); got != blk.crc {
		return block{}, corrupt(fmt.Sprintf("block CRC mismatch (stored %08x, computed %08x)", blk.crc, got))
	}
	return blk, nil
}

func (d *decoder) decodeBits(br *bitReader, out []byte) (block, error) {
	var blk block
	blk.crc = br.bits(32)
	if br.bits(1) != 0 {
		return blk, corrupt("randomised block (bzip2 before 0.9.5); not supported")
	}
	origPtr := int(br.bits(24))

	// Which byte values occur: 16 groups of 16.
	var symbols [256]byte
	numInUse := 0
	used := br.bits(16)
	for i := range 16 {
		if used&(0x8000>>i) == 0 {
			continue
		}
		bits := br.bits(16)
		for j := range 16 {
			if bits&(0x8000>>j) != 0 {
				symbols[numInUse] = byte(i*16 + j)
				numInUse++
			}
		}
	}
	if numInUse == 0 {
		return blk, corrupt("block uses no byte values")
	}
	alphaSize := numInUse + 2

	nGroups := int(br.bits(3))
	if nGroups < 2 || nGroups > maxGroups {
		return blk, corrupt(fmt.Sprintf("%d Huffman tables (want 2..6)", nGroups))
	}
	nSel := int(br.bits(15))
	if nSel == 0 {
		return blk, corrupt("no selectors")
	}
	// Selectors, move-to-front coded in unary.
	var groupMTF [maxGroups]uint8
	for i := range groupMTF {
		groupMTF[i] = uint8(i)
	}
	for i := range nSel {
		j := 0
		for br.bits(1) == 1 {
			j++
			if j >= nGroups {
				return blk, corrupt("selector out of range")
			}
		}
		v := groupMTF[j]
		copy(groupMTF[1:j+1], groupMTF[:j])
		groupMTF[0] = v
		d.sel[i] = v
	}

	// Code lengths, delta coded.
	for t := range nGroups {
		l := int(br.bits(5))
		for s := range alphaSize {
			for {
				if l < 1 || l > maxCodeLen {
					return blk, corrupt("code length out of range")
				}
				if br.bits(1) == 0 {
					break
				}
				if br.bits(1) == 0 {
					l++
				} else {
					l--
				}
			}
			d.lens[s] = uint8(l)
		}
		if err := d.huff[t].build(d.lens[:alphaSize]); err != nil {
			return blk, err
		}
	}

	// Symbols: RUNA/RUNB runs of the front byte, MTF positions, end of block.
	eob := uint16(numInUse + 1)
	mtf := symbols
	var counts [256]int
	tt := d.tt
	n := 0
	run, runBit := 0, 1
	selIdx, left := 0, 0
	var h *huffman
	for {
		if left == 0 {
			if selIdx >= nSel {
				return blk, corrupt("more symbols than selectors")
			}
			if br.over > 8 {
				return blk, errShort // decoding zeros past the data: stop early
			}
			h = &d.huff[d.sel[selIdx]]
			selIdx++
			left = groupSize
		}
		left--
		if br.n < maxCodeLen {
			br.refill()
		}
		var sym uint16
		var l uint
		if e := h.fast[br.acc>>(64-fastBits)]; e != 0 {
			sym, l = e>>4, uint(e&0xf)
		} else if sym, l = h.slow(uint32(br.acc >> (64 - maxCodeLen))); l == 0 {
			return blk, corrupt("invalid Huffman code")
		}
		br.acc <<= l
		br.n -= l
		if sym <= 1 { // RUNA adds runBit, RUNB twice that
			run += runBit << sym
			runBit <<= 1
			if run > maxBlock {
				return blk, corrupt("run longer than a block")
			}
			continue
		}
		if run > 0 {
			if n+run > maxBlock {
				return blk, corrupt("block longer than 900000 bytes")
			}
			b := mtf[0]
			counts[b] += run
			v := uint32(b)
			for k := n; k < n+run; k++ {
				tt[k] = v
			}
			n += run
			run, runBit = 0, 1
		}
		if sym == eob {
			break
		}
		if n >= maxBlock {
			return blk, corrupt("block longer than 900000 bytes")
		}
		i := int(sym - 1)
		b := mtf[i]
		if i < 16 { // most positions are small: two words, no loop
			lo := binary.LittleEndian.Uint64(mtf[0:8])
			hi := binary.LittleEndian.Uint64(mtf[8:16])
			mlo := ^(^uint64(0) << (8 * uint(i+1)))
			mhi := ^(^uint64(0) << uint(max(8*(i+1)-64, 0)))
			binary.LittleEndian.PutUint64(mtf[0:8], lo&^mlo|(lo<<8|uint64(b))&mlo)
			binary.LittleEndian.PutUint64(mtf[8:16], hi&^mhi|(hi<<8|lo>>56)&mhi)
		} else {
			copy(mtf[1:i+1], mtf[:i])
			mtf[0] = b
		}
		counts[b]++
		tt[n] = uint32(b)
		n++
	}
	if n == 0 || origPtr >= n {
		return blk, corrupt("BWT origin outside the block")
	}

	// Inverse BWT: tt[k] gets the link T (the position of the next byte)
	// above the byte at k; the output is the cycle through the links.
	sum := 0
	for b := range 256 {
		c := counts[b]
		counts[b] = sum
		sum += c
	}
	tt = tt[:n]
	// The bytes come in runs (it is a BWT): the next free slot of the
	// current run's byte stays in k, not in counts.
	k, last := 0, -1
	for i := range tt {
		b := int(byte(tt[i]))
		if b != last {
			if last >= 0 {
				counts[last] = k
			}
			last, k = b, counts[b]
		}
		tt[k] |= uint32(i) << 8
		k++
	}
	out = out[:n]
	d.walk.inverseBWT(tt, origPtr, out)
	blk.pre = out
	return blk, nil
}

// blockCRC is the CRC of a block's output: its bytes with the runs expanded.
func blockCRC(pre []byte) uint32 {
	crc := ^uint32(0)
	for i := 0; ; {
		k := i + litLen(pre[i:]) // four equal bytes at k, then a count
		if k+4 >= len(pre) {
			return ^crcUpdate(crc, pre[i:])
		}
		crc = crcUpdate(crc, pre[i:k+4])
		crc = crcRepeat(crc, pre[k], int(pre[k+4]))
		i = k + 5
	}
}

// litLen is the index of the first four equal bytes in p, or len(p): the
// bytes before it are literals of bzip2's first run-length stage. It compares
// eight bytes at a time.
func litLen(p []byte) int {
	const lo7, hi = 0x7f7f7f7f7f7f7f7f, 0x0000008080808080
	i := 0
	for ; i+8 <= len(p); i += 5 {
		x := binary.LittleEndian.Uint64(p[i:])
		e := x ^ (x >> 8)               // byte k (k < 7): p[i+k] ^ p[i+k+1]
		z := ^((e&lo7 + lo7) | e | lo7) // 0x80 in each zero byte of e
		// Bytes k, k+1, k+2 of e zero: p[i+k..i+k+3] equal; k <= 4 uses
		// only bytes of p.
		if m := z & (z >> 8) & (z >> 16) & hi; m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for ; i+3 < len(p); i++ {
		if p[i] == p[i+1] && p[i] == p[i+2] && p[i] == p[i+3] {
			return i
		}
	}
	return len(p)
}

// rle1 undoes bzip2's first run-length stage across calls: after four equal
// bytes, the next byte is a count of further copies.
type rle1 struct {
	rep  int // copies of prev still to write
	run  int // length of the current run of prev, 0..4
	prev byte
}

// expand writes the decoded form of src into dst; it returns the bytes
// written and consumed.
func (r *rle1) expand(dst, src []byte) (w, c int) {
	for w < len(dst) {
		if r.rep > 0 {
			k := min(r.rep, len(dst)-w)
			seg := dst[w : w+k]
			for i := range seg {
				seg[i] = r.prev
			}
			w += k
			r.rep -= k
			continue
		}
		if c >= len(src) {
			break
		}
		b := src[c]
		if r.run < 4 && (r.run == 0 || b != r.prev) {
			// No run continues into src[c:]: copy the literals up to the
			// next four equal bytes, then take up the state after them.
			lit := src[c : c+min(len(src)-c, len(dst)-w)]
			k := litLen(lit)
			if k > 0 {
				copy(dst[w:], lit[:k])
				w += k
				c += k
				r.prev, r.run = lit[k-1], 1
				for j := k - 2; j >= 0 && j >= k-3 && lit[j] == r.prev; j-- {
					r.run++
				}
				continue
			}
		}
		c++
		if r.run == 4 {
			r.rep, r.run = int(b), 0
			continue
		}
		if r.run > 0 && b == r.prev {
			r.run++
		} else {
			r.prev, r.run = b, 1
		}
		dst[w] = b
		w++
	}
	return w, c
}
