package delta

import "testing"

// rollsumBytes is the rollsum by its definition, a byte at a time.
func rollsumBytes(p []byte) (uint16, uint16) {
	var s1, s2 uint32
	for _, b := range p {
		s1 += uint32(b) + rollOffset
		s2 += s1
	}
	return uint16(s1), uint16(s2)
}

// The word-wise rollsum equals the definition for every length around its
// 32-byte steps, on random bytes and on the extremes (all 0x00, all 0xff).
func TestRollsum(t *testing.T) {
	for n := 0; n <= 200; n++ {
		for _, p := range [][]byte{randBytes(uint64(n), n), make([]byte, n), fill(n, 0xff)} {
			a1, a2 := rollsum(p)
			b1, b2 := rollsumBytes(p)
			if a1 != b1 || a2 != b2 {
				t.Fatalf("len %d: rollsum (%#x, %#x), want (%#x, %#x)", n, a1, a2, b1, b2)
			}
		}
	}
	for _, n := range []int{2048, 32768, 61440, 1 << 20} {
		for _, p := range [][]byte{randBytes(uint64(n), n), fill(n, 0xff)} {
			a1, a2 := rollsum(p)
			b1, b2 := rollsumBytes(p)
			if a1 != b1 || a2 != b2 {
				t.Fatalf("len %d: rollsum (%#x, %#x), want (%#x, %#x)", n, a1, a2, b1, b2)
			}
		}
	}
}

func fill(n int, b byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = b
	}
	return p
}

func BenchmarkRollsum(b *testing.B) {
	p := randBytes(1, 32<<10)
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		rollsum(p)
	}
}
