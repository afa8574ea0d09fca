package bz2

// bzip2's CRC is CRC-32 with polynomial 0x04c11db7, fed most significant bit
// first (not the reflected form hash/crc32 implements).
var crcTable = func() (t [8][256]uint32) {
	for i := range 256 {
		c := uint32(i) << 24
		for range 8 {
			if c&0x80000000 != 0 {
				c = c<<1 ^ 0x04c11db7
			} else {
				c <<= 1
			}
		}
		t[0][i] = c
	}
	// Slicing by 8: t[k][i] is the CRC of byte i followed by k zero bytes.
	for i := range 256 {
		for k := 1; k < 8; k++ {
			p := t[k-1][i]
			t[k][i] = p<<8 ^ t[0][p>>24]
		}
	}
	return t
}()

// crcUpdate adds p to a running CRC (initial value ^0, complemented at the end).
func crcUpdate(crc uint32, p []byte) uint32 {
	for len(p) >= 8 {
		hi := crc ^ (uint32(p[0])<<24 | uint32(p[1])<<16 | uint32(p[2])<<8 | uint32(p[3]))
		crc = crcTable[7][hi>>24] ^ crcTable[6][hi>>16&0xff] ^ crcTable[5][hi>>8&0xff] ^ crcTable[4][hi&0xff] ^
			crcTable[3][p[4]] ^ crcTable[2][p[5]] ^ crcTable[1][p[6]] ^ crcTable[0][p[7]]
		p = p[8:]
	}
	for _, b := range p {
		crc = crc<<8 ^ crcTable[0][byte(crc>>24)^b]
	}
	return crc
}

// crcRepeat adds n copies of b.
func crcRepeat(crc uint32, b byte, n int) uint32 {
	for ; n > 0; n-- {
		crc = crc<<8 ^ crcTable[0][byte(crc>>24)^b]
	}
	return crc
}
