package bz2

import "sort"

// The inverse BWT walks one cycle of links through tt, a 3.6 MB table: every
// step is a load from a random place, so a plain walk runs at the speed of
// memory latency, one load at a time. Here the cycle is cut at marked
// positions into segments, and several segments are walked at once
// (interleaved in one loop), so that many independent loads are in flight
// and the core's memory parallelism, not its latency, sets the pace. Each
// segment's bytes go to chunks of a scratch buffer; at the end the segments
// are put in order by following their links from the block's first position.
//
// A block whose links are not one cycle (a periodic block, such as a run of
// one byte: its output repeats a shorter cycle) is walked the plain way.

const (
	lanes     = 16   // segments walked at once
	segments  = 256  // marked positions per block: load balance across lanes
	chunkSize = 4096 // scratch handed to a lane at a time
	markBit   = 1 << 31
	posMask   = 1<<20 - 1 // positions are < maxBlock < 1<<20
	// Blocks below this are walked the plain way: the setup would dominate.
	minLaneBlock = 64 << 10
)

// walker holds the scratch of the multi-lane walk, reused across blocks.
type walker struct {
	scratch []byte
	starts  []uint32 // marked positions, sorted
	segs    []segment
	pieces  []piece
	order   []int
}

type segment struct {
	next   uint32 // marked position where the segment ends (the next one starts)
	n      int    // bytes
	first  int    // index of its first piece in pieces, once sorted
	npiece int
}

// piece is a run of one segment's bytes in scratch.
type piece struct {
	seg, off, n int
}

// inverseBWT writes the block's bytes to out (len n) from tt, whose entries
// hold the forward link above the byte (next position << 8 | byte).
func (wk *walker) inverseBWT(tt []uint32, origPtr int, out []byte) {
	n := len(out)
	p0 := tt[origPtr] >> 8 & posMask // position of out[0]
	if n < minLaneBlock || !wk.lanes(tt, p0, out) {
		plainWalk(tt, p0, out)
	}
}

// plainWalk follows the links from p0 for len(out) steps.
func plainWalk(tt []uint32, p0 uint32, out []byte) {
	n := len(out)
	fw := p0
	for m := 0; m < n; m++ {
		x := tt[fw]
		out[m] = byte(x)
		fw = x >> 8 & posMask
	}
}

// lanes is the multi-lane walk; false when the links from p0 do not come back
// to p0 after exactly len(out) steps (out is then not written).
func (wk *walker) lanes(tt []uint32, p0 uint32, out []byte) bool {
	n := len(out)
	nchunks := n/chunkSize + lanes + 1
	if cap(wk.scratch) < nchunks*chunkSize {
		wk.scratch = make([]byte, nchunks*chunkSize)
	}
	scratch := wk.scratch[:nchunks*chunkSize]

	// Mark p0 and evenly spread positions (which fall at random places in
	// the output).
	starts := wk.starts[:0]
	starts = append(starts, p0)
	for k := range segments {
		if p := uint32(k * n / segments); p != p0 {
			starts = append(starts, p)
		}
	}
	sort.Slice(starts, func(a, b int) bool { return starts[a] < starts[b] })
	wk.starts = starts
	for _, p := range starts {
		tt[p] |= markBit
	}
	defer func() {
		for _, p := range starts {
			tt[p] &^= markBit
		}
	}()
	segs := wk.segs[:0]
	for range starts {
		segs = append(segs, segment{})
	}
	wk.segs = segs
	pieces := wk.pieces[:0]
	nextChunk := 0
	nextSeg := 0
	// The lanes' state, in arrays the loop indexes by a constant range: the
	// position to read next, the write cursor and the end of its chunk (a
	// lane with nothing to walk has cursor == end, so it always takes the
	// slow branch), where its open piece started, and its segment.
	var pos [lanes]uint32
	var w, end, from [lanes]int
	var seg [lanes]int
	active := 0
	// begin starts the next unwalked segment on lane l, taking its first
	// step (the segment's own mark must not end it).
	begin := func(l int) {
		if nextSeg >= len(starts) {
			seg[l] = -1
			end[l] = w[l]
			return
		}
		if seg[l] < 0 {
			active++
		}
		seg[l] = nextSeg
		nextSeg++
		if w[l] == end[l] {
			w[l] = nextChunk * chunkSize
			end[l] = w[l] + chunkSize
			nextChunk++
		}
		from[l] = w[l]
		x := tt[starts[seg[l]]]
		scratch[w[l]] = byte(x)
		w[l]++
		pos[l] = x >> 8 & posMask
	}
	for l := range seg {
		seg[l] = -1
		begin(l)
	}
	total := 0
	for active > 0 {
		// A batch of steps on all lanes with only the mark to check, while
		// every lane is walking and has room for the batch in its chunk.
		if active == lanes {
			room := chunkSize
			for l := range w {
				room = min(room, end[l]-w[l])
			}
		batch:
			for range room {
				for l := range pos {
					x := tt[pos[l]]
					if x&markBit != 0 {
						break batch
					}
					scratch[w[l]] = byte(x)
					w[l]++
					pos[l] = x >> 8 & posMask
				}
			}
		}
		for l := range pos {
			x := tt[pos[l]]
			if x&markBit == 0 && w[l] < end[l] {
				scratch[w[l]] = byte(x)
				w[l]++
				pos[l] = x >> 8 & posMask
				continue
			}
			k := seg[l]
			if k < 0 {
				continue // idle
			}
			pieces = append(pieces, piece{k, from[l], w[l] - from[l]})
			segs[k].n += w[l] - from[l]
			if x&markBit != 0 { // the next segment's start: this one ends
				segs[k].next = pos[l]
				total += segs[k].n
				begin(l)
				if seg[l] < 0 {
					active--
				}
				continue
			}
			// The chunk is full: take another.
			if nextChunk >= nchunks {
				return false // more bytes than the block: not one cycle
			}
			w[l] = nextChunk * chunkSize
			end[l] = w[l] + chunkSize
			from[l] = w[l]
			nextChunk++
		}
	}
	if total != n {
		return false
	}
	wk.pieces = pieces

	// Group the pieces by segment, keeping their order.
	for i := range segs {
		segs[i].npiece = 0
	}
	for _, p := range pieces {
		segs[p.seg].npiece++
	}
	k := 0
	for i := range segs {
		segs[i].first = k
		k += segs[i].npiece
		segs[i].npiece = 0
	}
	order := wk.order[:0]
	for range pieces {
		order = append(order, 0)
	}
	wk.order = order
	for i, p := range pieces {
		s := &segs[p.seg]
		order[s.first+s.npiece] = i
		s.npiece++
	}

	// Follow the segments from p0 until they come back to it.
	index := func(p uint32) int {
		return sort.Search(len(starts), func(i int) bool { return starts[i] >= p })
	}
	first := index(p0)
	cur, o := first, 0
	for hops := 0; ; hops++ {
		if hops >= len(segs) {
			return false
		}
		s := &segs[cur]
		if o+s.n > n {
			return false
		}
		for _, pi := range order[s.first : s.first+s.npiece] {
			p := pieces[pi]
			o += copy(out[o:], scratch[p.off:p.off+p.n])
		}
		cur = index(s.next)
		if cur == first {
			break
		}
	}
	return o == n
}
