// Package bz2 decodes bzip2 streams with the blocks decoded in parallel.
//
// bzip2 compresses in independent blocks of up to 900 kB, each starting with a
// 48-bit magic number at any bit offset. A scanner finds candidate block starts
// in the compressed stream as it arrives, workers decode the blocks on all
// cores, and Read reassembles them in order, checking every block CRC, every
// stream CRC and that each block starts exactly where the previous one ended
// (so a magic number that merely occurs inside compressed data is recognised
// and skipped: the block around it is decoded again with more data).
// Concatenated streams (as pbzip2 and lbzip2 write) are read as one.
//
// Memory stays bounded whatever the input: each worker keeps two 3.6 MB tables,
// at most a few blocks are in flight, and a block is held in its run-length
// encoded form (at most 900 kB) and only expanded as Read is called, so a block
// of runs that expands to 45 MB costs no more than any other.
package bz2

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
)

// MaxWorkers bounds the decoding goroutines, and so the memory (about 9 MB
// each: two 3.6 MB tables and a block or two in flight), on many cores.
const MaxWorkers = 4

const (
	readSize = 256 << 10
	// maxChunk bounds the compressed bytes between two block starts: a block
	// of 900k symbols at 20 bits each is at most 2.25 MB plus its tables.
	maxChunk = 3 << 20
)

// Reader decompresses a bzip2 stream. Close it when done.
type Reader struct {
	in      io.Reader
	workers int
	order   chan *job // every chunk, in stream order, to Read
	work    chan *job // chunks that start a block, to the workers
	quit    chan struct{}
	once    sync.Once
	// Free lists: buffers are reused, not left to the garbage collector, so
	// the heap stays at what is in flight.
	pres, chunks chan []byte

	// Read's side.
	win      []*job // chunks received and not yet released, in order
	drained  bool   // order is closed and empty
	pos      int64  // absolute bit position of what is parsed next
	inStream bool
	level    int // block size limit of the current stream
	streams  int
	sCRC     uint32
	own      *decoder // for re-decoding a block with more data
	cur      *job
	idx      int
	rle      rle1
	err      error
}

// job is a piece of the compressed stream: bytes [off, off+len(data)), which
// overlap the next piece by one byte. Unless it is the stream's first piece,
// it starts with a candidate block magic at bit start, and the block may use
// bits up to limit (where the next candidate starts, or the end of the data).
type job struct {
	off          int64
	data         []byte
	start, limit int64 // absolute bit positions; start < 0: no block
	fatal        error // the scanner failed here (a read error, not bzip2)
	done         chan struct{}
	blk          block
	err          error
	used         bool // blk.pre was handed to Read (which returns it to the pool)
}

// NewReader starts decoding r with up to workers goroutines (0: GOMAXPROCS,
// at most MaxWorkers).
func NewReader(r io.Reader, workers int) *Reader {
	if workers <= 0 {
		workers = min(runtime.GOMAXPROCS(0), MaxWorkers)
	}
	z := &Reader{
		in:      r,
		workers: workers,
		order:   make(chan *job, workers+1),
		work:    make(chan *job, workers),
		quit:    make(chan struct{}),
		pres:    make(chan []byte, 2*workers+4),
		chunks:  make(chan []byte, 2*workers+4),
	}
	go z.scan()
	for range workers {
		go z.worker()
	}
	return z
}

// Close stops the decoding goroutines. It does not close the underlying
// reader; a scanner blocked reading it stops when that read returns.
func (z *Reader) Close() error {
	z.once.Do(func() { close(z.quit) })
	if z.err == nil {
		z.err = errClosed
	}
	return nil
}

var errClosed = errors.New("bz2: reader closed")

func (z *Reader) worker() {
	var d *decoder // allocated at the first block: a tiny stream needs one worker
	for {
		select {
		case j, ok := <-z.work:
			if !ok {
				return
			}
			if d == nil {
				d = newDecoder()
			}
			j.blk, j.err = z.decodeJob(d, j.data, j.start-j.off*8+48, j.limit-j.off*8)
			if j.err == nil {
				j.blk.end += j.off * 8
			}
			close(j.done)
		case <-z.quit:
			return
		}
	}
}

// decodeJob decodes one block; a panic (a decoder bug on hostile input) is an
// error, not a crash.
func (z *Reader) decodeJob(d *decoder, data []byte, start, limit int64) (blk block, err error) {
	defer func() {
		if p := recover(); p != nil {
			blk, err = block{}, corrupt(fmt.Sprintf("undecodable block (%v)", p))
		}
	}()
	var out []byte
	select {
	case out = <-z.pres:
	default:
		out = make([]byte, maxBlock)
	}
	blk, err = d.decode(data, start, limit, out[:maxBlock])
	if err != nil {
		z.putPre(out)
	}
	return blk, err
}

func (z *Reader) putPre(b []byte) {
	if cap(b) == maxBlock {
		select {
		case z.pres <- b[:maxBlock]:
		default:
		}
	}
}

// chunk returns a copy of p in a reused buffer when one is large enough.
func (z *Reader) chunk(p []byte) []byte {
	var b []byte
	select {
	case b = <-z.chunks:
	default:
	}
	if cap(b) < len(p) {
		b = make([]byte, len(p), max(len(p), 1<<20))
	}
	b = b[:len(p)]
	copy(b, p)
	return b
}

func (z *Reader) putChunk(b []byte) {
	select {
	case z.chunks <- b:
	default:
	}
}

// scan reads the input, cuts it at every candidate block magic and hands the
// pieces to the workers and, in order, to Read.
func (z *Reader) scan() {
	defer close(z.order)
	defer close(z.work)
	buf := make([]byte, 0, 2*readSize)
	base := int64(0)       // absolute offset of buf[0]
	cur := &job{start: -1} // the open piece, from buf[0]
	searched := 0          // magic starts before buf[searched] were checked
	eof := false
	emit := func(j *job, data []byte, limit int64) bool {
		j.data = z.chunk(data)
		j.limit = limit
		j.done = make(chan struct{})
		select {
		case z.order <- j:
		case <-z.quit:
			return false
		}
		if j.start < 0 {
			close(j.done)
			return true
		}
		select {
		case z.work <- j:
			return true
		case <-z.quit:
			return false
		}
	}
	for {
		for ; searched+7 <= len(buf); searched++ {
			m := shiftsAt[buf[searched+2]]
			if m == 0 && testCut == nil {
				continue
			}
			for s := uint(0); s < 8; s++ {
				bit := (base+int64(searched))*8 + int64(s)
				if (m&(1<<s) == 0 || !magicAt(buf[searched:], s)) && (testCut == nil || !testCut(bit)) {
					continue
				}
				if !emit(cur, buf[:searched+1], bit) {
					return
				}
				cur = &job{off: base + int64(searched), start: bit}
				buf = buf[:copy(buf, buf[searched:])]
				base += int64(searched)
				searched = 0
			}
		}
		if eof {
			emit(cur, buf, (base+int64(len(buf)))*8)
			return
		}
		if len(buf) > maxChunk {
			cur.fatal = &CorruptError{Offset: base, What: fmt.Sprintf("no bzip2 block starts within %d bytes", maxChunk)}
			emit(cur, nil, 0)
			return
		}
		if cap(buf)-len(buf) < readSize {
			nb := make([]byte, len(buf), 2*len(buf)+readSize)
			copy(nb, buf)
			buf = nb
		}
		n, err := z.in.Read(buf[len(buf) : len(buf)+readSize])
		buf = buf[:len(buf)+n]
		if base == 0 && len(buf) >= 3 && string(buf[:3]) != "BZh" {
			cur.fatal = &CorruptError{Offset: 0, What: "not a bzip2 stream (no BZh header)"}
			emit(cur, nil, 0)
			return
		}
		if err == io.EOF {
			eof = true
		} else if err != nil {
			cur.fatal = err
			emit(cur, nil, 0)
			return
		}
		select {
		case <-z.quit:
			return
		default:
		}
	}
}

// testCut lets tests add false block magics at bit positions.
var testCut func(bit int64) bool

// shiftsAt[b] has bit s set when byte b is the third byte of a block magic
// that starts s bits into a byte: a cheap filter before magicAt.
var shiftsAt = func() (t [256]uint8) {
	for s := range 8 {
		t[byte(uint64(blockMagic)>>(24+s))] |= 1 << s
	}
	return t
}()

// magicAt reports whether a block magic starts s bits into p[0]; p has 7 bytes.
func magicAt(p []byte, s uint) bool {
	v := uint64(p[0])<<56 | uint64(p[1])<<48 | uint64(p[2])<<40 | uint64(p[3])<<32 |
		uint64(p[4])<<24 | uint64(p[5])<<16 | uint64(p[6])<<8
	return (v<<s)>>16 == blockMagic
}

// Read implements io.Reader.
func (z *Reader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if z.err != nil {
			if n > 0 {
				return n, nil
			}
			return 0, z.err
		}
		if z.cur != nil {
			w, c := z.rle.expand(p[n:], z.cur.blk.pre[z.idx:])
			n += w
			z.idx += c
			if z.rle.rep > 0 || z.idx < len(z.cur.blk.pre) {
				continue
			}
			z.putPre(z.cur.blk.pre)
			z.cur = nil
			if n > 0 {
				return n, nil // don't wait for the next block with data in hand
			}
		}
		z.err = z.next()
	}
	return n, nil
}

// next parses what follows the previous block (more blocks, the end of a
// stream, the next stream's header) and makes the next block current; io.EOF
// after the last stream.
func (z *Reader) next() error {
	for {
		if !z.inStream {
			if _, ok, err := z.byteAt(z.pos / 8); err != nil {
				return err
			} else if !ok {
				if z.streams == 0 {
					return &CorruptError{Offset: 0, What: "empty input; not a bzip2 stream"}
				}
				return io.EOF
			}
			h, err := z.bitsAt(z.pos, 32)
			if err != nil {
				return err
			}
			if h>>8 != 'B'<<16|'Z'<<8|'h' || byte(h) < '1' || byte(h) > '9' {
				if z.streams == 0 {
					return &CorruptError{Offset: z.pos / 8, What: "not a bzip2 stream (no BZh header)"}
				}
				return &CorruptError{Offset: z.pos / 8, What: "data after the end of the bzip2 stream"}
			}
			z.level = int(byte(h)-'0') * 100000
			z.pos += 32
			z.inStream, z.sCRC = true, 0
			z.streams++
			continue
		}
		m, err := z.bitsAt(z.pos, 48)
		if err != nil {
			return err
		}
		switch m {
		case blockMagic:
			j, err := z.blockAt(z.pos)
			if err != nil {
				return err
			}
			if len(j.blk.pre) > z.level {
				return &CorruptError{Offset: z.pos / 8, What: fmt.Sprintf("block of %d bytes in a stream of %d-byte blocks", len(j.blk.pre), z.level)}
			}
			z.sCRC = (z.sCRC<<1 | z.sCRC>>31) ^ j.blk.crc
			z.pos = j.blk.end
			z.cur, z.idx, z.rle, j.used = j, 0, rle1{}, true
			z.release()
			return nil
		case eosMagic:
			crc, err := z.bitsAt(z.pos+48, 32)
			if err != nil {
				return err
			}
			if uint32(crc) != z.sCRC {
				return &CorruptError{Offset: z.pos / 8, What: fmt.Sprintf("stream CRC mismatch (stored %08x, computed %08x)", crc, z.sCRC)}
			}
			z.pos = (z.pos + 80 + 7) &^ 7
			z.inStream = false
		default:
			return &CorruptError{Offset: z.pos / 8, What: "no block or end-of-stream magic where one must be"}
		}
	}
}

// blockAt returns the decoded block that starts at bit pos, skipping pieces
// cut at false magics before it, and re-decoding with the following pieces
// when the block runs past its own.
func (z *Reader) blockAt(pos int64) (*job, error) {
	k := 0
	for {
		for k < len(z.win) && z.win[k].start < pos {
			k++
		}
		if k < len(z.win) {
			break
		}
		if ok, err := z.receive(); err != nil {
			return nil, err
		} else if !ok {
			return nil, &CorruptError{Offset: pos / 8, What: "block magic without a block"}
		}
	}
	j := z.win[k]
	if j.start != pos {
		return nil, &CorruptError{Offset: pos / 8, What: "block magic the scanner did not see"}
	}
	select {
	case <-j.done:
	case <-z.quit:
		return nil, errClosed
	}
	if j.err == nil || !errors.Is(j.err, errShort) {
		return j, z.located(j, j.err)
	}
	// A false magic cut this block short: join the following pieces and
	// decode again here (rare: a 48-bit pattern in compressed data).
	data := j.data
	limit := j.limit
	for m := k + 1; errors.Is(j.err, errShort); m++ {
		for m >= len(z.win) {
			if ok, err := z.receive(); err != nil {
				return nil, err
			} else if !ok {
				return nil, fmt.Errorf("bzip2 stream truncated in the block at byte %d: %w", pos/8, io.ErrUnexpectedEOF)
			}
		}
		nx := z.win[m]
		if nx.fatal != nil {
			return nil, nx.fatal
		}
		data = append(data[:len(data)-1:len(data)-1], nx.data...)
		limit = nx.limit
		if len(data) > maxChunk {
			return nil, &CorruptError{Offset: pos / 8, What: "block longer than any valid one"}
		}
		if z.own == nil {
			z.own = newDecoder()
		}
		j.blk, j.err = z.decodeJob(z.own, data, pos-j.off*8+48, limit-j.off*8)
		if j.err == nil {
			j.blk.end += j.off * 8
		}
	}
	return j, z.located(j, j.err)
}

func (z *Reader) located(j *job, err error) error {
	if errors.Is(err, errShort) {
		return fmt.Errorf("bzip2 stream truncated in the block at byte %d: %w", j.start/8, io.ErrUnexpectedEOF)
	}
	var ce *CorruptError
	if errors.As(err, &ce) && ce.Offset < 0 {
		ce.Offset = j.start / 8
	}
	return err
}

// receive appends the next piece to the window; false at the end.
func (z *Reader) receive() (bool, error) {
	if z.drained {
		return false, nil
	}
	var j *job
	var ok bool
	select {
	case j, ok = <-z.order:
	case <-z.quit:
		return false, errClosed
	}
	if !ok {
		z.drained = true
		return false, nil
	}
	if j.fatal != nil {
		return false, j.fatal
	}
	z.win = append(z.win, j)
	return true, nil
}

// byteAt returns the stream's byte at absolute offset off.
func (z *Reader) byteAt(off int64) (byte, bool, error) {
	for {
		for i := len(z.win) - 1; i >= 0; i-- {
			j := z.win[i]
			if off >= j.off && off < j.off+int64(len(j.data)) {
				return j.data[off-j.off], true, nil
			}
			if off >= j.off {
				break
			}
		}
		if ok, err := z.receive(); !ok || err != nil {
			return 0, false, err
		}
	}
}

// bitsAt reads n <= 56 bits at absolute bit position pos.
func (z *Reader) bitsAt(pos int64, n uint) (uint64, error) {
	var v uint64
	for k := uint(0); k < n; {
		b, ok, err := z.byteAt((pos + int64(k)) / 8)
		if err != nil {
			return 0, err
		}
		if !ok {
			return 0, fmt.Errorf("bzip2 stream truncated at byte %d: %w", (pos+int64(k))/8, io.ErrUnexpectedEOF)
		}
		sh := uint((pos + int64(k)) % 8)
		take := min(8-sh, n-k)
		v = v<<take | uint64(b<<sh>>(8-take))
		k += take
	}
	return v, nil
}

// release drops pieces that end before the parse position; their buffers go
// back once no worker uses them.
func (z *Reader) release() {
	k := 0
	for k < len(z.win)-1 && z.win[k].off+int64(len(z.win[k].data)) <= z.pos/8 {
		k++
	}
	for _, j := range z.win[:k] {
		select {
		case <-j.done: // no worker uses it any more
			if j.start >= 0 && j.err == nil && !j.used {
				z.putPre(j.blk.pre) // a false magic's piece that decoded anyway
			}
			if cap(j.data) >= 1<<20 {
				z.putChunk(j.data)
			}
		default:
		}
	}
	z.win = append(z.win[:0], z.win[k:]...)
}
