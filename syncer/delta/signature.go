package delta

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/zeebo/xxh3"
	"golang.org/x/crypto/blake2b"
	"golang.org/x/crypto/md4"
)

// Signature is a parsed, validated librsync signature: one weak rollsum and
// one strong sum per block of the basis, plus a hash index on the weak sums
// that keeps every block (colliding weak sums chain instead of overwriting).
type Signature struct {
	magic     uint32
	blockLen  uint32
	strongLen uint32
	weak      []uint32
	strong    []byte // len(weak)*strongLen bytes

	// Chained hash index: head[h] is the lowest block whose weak sum hashes
	// to h, next[i] the following block in the same bucket, -1 ends a chain;
	// tail[h] is the last one, so blocks that arrive later append in order.
	head    []int32
	tail    []int32
	next    []int32
	shift   uint32
	indexed int // blocks in the index

	// A streamed signature (ReadSignatureStream) grows while the delta is
	// made: src brings more bytes, rest holds a partial entry, and done
	// says that no more blocks come.
	src      *Stream
	rest     []byte
	done     bool
	expected int64 // basis bytes the signature is announced to cover
}

// BlockLen is the block length the signature was made with.
func (s *Signature) BlockLen() uint32 { return s.blockLen }

// StrongLen is the number of strong-sum bytes kept per block.
func (s *Signature) StrongLen() uint32 { return s.strongLen }

// Blocks is the number of basis blocks in the signature.
func (s *Signature) Blocks() int { return len(s.weak) }

// WriteSignature writes the signature of basis (basisSize bytes, used only to
// pick the block length) to w: rollsum weak sums and StrongLen bytes of
// SHA-256 strong sums (magicSHA256Sig, an ocf-csync extension of the librsync
// format: SHA-256 runs about three times as fast as BLAKE2b on CPUs with SHA
// instructions), block length BlockLen(basisSize). It streams: memory use
// does not grow with the basis. WriteRdiffSignature writes what rdiff does.
func WriteSignature(basis io.Reader, basisSize int64, w io.Writer) error {
	return writeSignatureMagic(basis, BlockLen(basisSize), w, magicSHA256Sig)
}

// WriteRdiffSignature is WriteSignature in rdiff's format: its output equals
// `rdiff -b BlockLen(basisSize) -S 8 -H blake2 -R rollsum signature`.
func WriteRdiffSignature(basis io.Reader, basisSize int64, w io.Writer) error {
	return writeSignature(basis, BlockLen(basisSize), w)
}

func writeSignature(basis io.Reader, blockLen uint32, w io.Writer) error {
	return writeSignatureMagic(basis, blockLen, w, magicBlake2Sig)
}

func writeSignatureMagic(basis io.Reader, blockLen uint32, w io.Writer, magic uint32) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	var hdr [12]byte
	binary.BigEndian.PutUint32(hdr[0:], magic)
	binary.BigEndian.PutUint32(hdr[4:], blockLen)
	binary.BigEndian.PutUint32(hdr[8:], StrongLen)
	if _, err := bw.Write(hdr[:]); err != nil {
		return fmt.Errorf("write signature header: %w", err)
	}
	block := make([]byte, blockLen)
	var ent [4 + StrongLen]byte
	for {
		n, err := io.ReadFull(basis, block)
		if n > 0 {
			s1, s2 := rollsum(block[:n])
			binary.BigEndian.PutUint32(ent[:4], uint32(s2)<<16|uint32(s1))
			var sum [32]byte
			strongOf(magic, block[:n], &sum)
			copy(ent[4:], sum[:])
			if _, werr := bw.Write(ent[:]); werr != nil {
				return fmt.Errorf("write signature: %w", werr)
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read basis for signature: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write signature: %w", err)
	}
	return nil
}

// MaxSignatureSize is the size of the largest signature ReadSignature
// accepts for a basis of basisSize bytes: the shortest block length and the
// longest strong sum a header may declare. A peer that sends more is not
// describing a basis of that size.
func MaxSignatureSize(basisSize int64) int64 {
	const hdr, perBlock = 12, 4 + 32
	if basisSize <= 0 {
		return hdr
	}
	blocks := (basisSize-1)/minSigBlockLen + 1
	if blocks > (math.MaxInt64-hdr)/perBlock {
		return math.MaxInt64
	}
	return hdr + blocks*perBlock
}

// ReadSignature parses a signature from r, reading to EOF (frame it on a
// shared stream, e.g. with io.LimitReader). The 12-byte header is validated
// before anything is allocated, and a signature longer than limit bytes is
// refused.
func ReadSignature(r io.Reader, limit int64) (*Signature, error) {
	var hdr [12]byte
	if limit < int64(len(hdr)) {
		return nil, fmt.Errorf("read signature: limit %d is smaller than the 12-byte header", limit)
	}
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("read signature header: truncated (%w)", io.ErrUnexpectedEOF)
		}
		return nil, fmt.Errorf("read signature header: %w", err)
	}
	s, err := parseHeader(hdr[:])
	if err != nil {
		return nil, err
	}

	entLen := int64(4 + s.strongLen)
	body := limit - int64(len(hdr))
	br := bufio.NewReaderSize(io.LimitReader(r, body+1), 64<<10)
	ent := make([]byte, entLen)
	var read int64
	for {
		n, err := io.ReadFull(br, ent)
		read += int64(n)
		if read > body {
			return nil, fmt.Errorf("read signature: longer than the %d-byte limit", limit)
		}
		if err == io.EOF {
			break
		}
		if err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("read signature: truncated in block %d (%d of %d bytes)", len(s.weak), n, entLen)
		}
		if err != nil {
			return nil, fmt.Errorf("read signature block %d: %w", len(s.weak), err)
		}
		s.weak = append(s.weak, binary.BigEndian.Uint32(ent))
		s.strong = append(s.strong, ent[4:]...)
	}
	if len(s.weak) > math.MaxInt32 {
		return nil, fmt.Errorf("read signature: %d blocks is too many", len(s.weak))
	}
	s.done = true
	s.reindex(len(s.weak))
	return s, nil
}

// parseHeader validates a 12-byte signature header.
func parseHeader(hdr []byte) (*Signature, error) {
	s := &Signature{
		magic:     binary.BigEndian.Uint32(hdr[0:]),
		blockLen:  binary.BigEndian.Uint32(hdr[4:]),
		strongLen: binary.BigEndian.Uint32(hdr[8:]),
	}
	maxStrong := uint32(0)
	switch s.magic {
	case magicBlake2Sig:
		maxStrong = blake2b.Size256
	case magicSHA256Sig:
		maxStrong = sha256.Size
	case magicXXH3Sig:
		maxStrong = 8
	case magicMD4Sig:
		maxStrong = md4.Size
	case magicRkMD4, magicRkBlake2:
		return nil, fmt.Errorf("read signature: magic %#08x uses the RabinKarp rollsum, which is not supported; generate it with `rdiff -R rollsum`", s.magic)
	default:
		return nil, fmt.Errorf("read signature: bad magic %#08x (not a librsync rollsum signature)", s.magic)
	}
	if s.blockLen < minSigBlockLen || s.blockLen > maxSigBlockLen {
		return nil, fmt.Errorf("read signature: block length %d outside [%d, %d]", s.blockLen, minSigBlockLen, maxSigBlockLen)
	}
	if s.strongLen < 1 || s.strongLen > maxStrong {
		return nil, fmt.Errorf("read signature: strong sum length %d outside [1, %d]", s.strongLen, maxStrong)
	}
	return s, nil
}

// reindex builds the chained hash table over the weak sums for a table
// sized for at least n blocks. Chains list blocks in ascending order, which
// makes the match choice deterministic.
func (s *Signature) reindex(n int) {
	n = max(n, len(s.weak))
	bits := uint32(4)
	for bits < 32 && 1<<bits < 4*n { // sparse: most misses stop at an empty bucket
		bits++
	}
	s.shift = 32 - bits
	s.head = make([]int32, 1<<bits)
	s.tail = make([]int32, 1<<bits)
	for i := range s.head {
		s.head[i] = -1
	}
	s.next = s.next[:0]
	s.indexed = 0
	s.extendIndex()
}

// extendIndex adds the blocks that arrived since the last call; a table
// grown too dense for them is rebuilt twice as large.
func (s *Signature) extendIndex() {
	if 2*len(s.weak) > len(s.head) {
		s.reindex(2 * len(s.weak))
		return
	}
	for i := s.indexed; i < len(s.weak); i++ {
		h := s.bucket(s.weak[i])
		s.next = append(s.next, -1)
		if t := s.head[h]; t < 0 {
			s.head[h] = int32(i)
		} else {
			s.next[s.tail[h]] = int32(i)
		}
		s.tail[h] = int32(i)
	}
	s.indexed = len(s.weak)
}

func (s *Signature) bucket(weak uint32) uint32 {
	return (weak * 0x9E3779B1) >> s.shift
}

func (s *Signature) strongOf(i int32) []byte {
	o := int(i) * int(s.strongLen)
	return s.strong[o : o+int(s.strongLen)]
}

// strongSum returns the strong sum of data truncated to the signature's
// strong length.
func (s *Signature) strongSum(data []byte, dst *[32]byte) []byte {
	strongOf(s.magic, data, dst)
	return dst[:s.strongLen]
}

// strongOf writes the strong sum of data for a signature of magic to dst.
func strongOf(magic uint32, data []byte, dst *[32]byte) {
	switch magic {
	case magicXXH3Sig:
		binary.BigEndian.PutUint64(dst[:8], xxh3.Hash(data))
	case magicSHA256Sig:
		*dst = sha256.Sum256(data)
	case magicMD4Sig:
		h := md4.New()
		h.Write(data)
		h.Sum(dst[:0])
	default:
		*dst = blake2b.Sum256(data)
	}
}

// equalStrong compares a candidate block's stored strong sum.
func (s *Signature) equalStrong(i int32, sum []byte) bool {
	return bytes.Equal(s.strongOf(i), sum)
}

// rollsum is librsync's rsync-style weak checksum (RS_ROLLSUM): s1 is the sum
// of (byte+31), s2 the sum of the running s1, both mod 2^16. It takes 32
// bytes a step, their sums and weighted sums computed in 16-bit lanes of
// 64-bit words (SWAR): 1.7–1.8× the speed of a byte-wise loop unrolled by
// 8, and the rollsum is most of the receiver's signature CPU.
func rollsum(p []byte) (uint16, uint16) {
	const (
		lo   = 0x00ff00ff00ff00ff // even bytes into 16-bit lanes
		ones = 0x0001000100010001 // multiplying sums the lanes into the top one
		we   = 0x0008000600040002 // weights 8, 6, 4, 2 of bytes 0, 2, 4, 6
		wo   = 0x0007000500030001 // weights 7, 5, 3, 1 of bytes 1, 3, 5, 7
	)
	n := uint64(len(p))
	var s1, s2 uint64
	for len(p) >= 32 {
		x0 := binary.LittleEndian.Uint64(p)
		x1 := binary.LittleEndian.Uint64(p[8:])
		x2 := binary.LittleEndian.Uint64(p[16:])
		x3 := binary.LittleEndian.Uint64(p[24:])
		e0, o0 := x0&lo, (x0>>8)&lo
		e1, o1 := x1&lo, (x1>>8)&lo
		e2, o2 := x2&lo, (x2>>8)&lo
		e3, o3 := x3&lo, (x3>>8)&lo
		// Byte sums of each word, and sums weighted 8..1 (no lane overflows:
		// at most 4*510 and 255*20).
		sum0, sum1 := ((e0+o0)*ones)>>48, ((e1+o1)*ones)>>48
		sum2, sum3 := ((e2+o2)*ones)>>48, ((e3+o3)*ones)>>48
		d := (e0*we)>>48 + (o0*wo)>>48 + (e1*we)>>48 + (o1*wo)>>48 +
			(e2*we)>>48 + (o2*wo)>>48 + (e3*we)>>48 + (o3*wo)>>48
		s2 += 32*s1 + 24*sum0 + 16*sum1 + 8*sum2 + d
		s1 += sum0 + sum1 + sum2 + sum3
		p = p[32:]
	}
	for _, b := range p {
		s1 += uint64(b)
		s2 += s1
	}
	s2 += rollOffset * (n * (n + 1) / 2)
	s1 += rollOffset * n
	return uint16(s1), uint16(s2)
}

const rollOffset = 31
