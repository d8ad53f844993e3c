// Package delta implements rsync-style delta transfer in the librsync
// ("rdiff") wire format: the receiver sends a signature of its copy, the
// sender answers with a delta against it, and the receiver patches.
//
// The format is the one of github.com/balena-os/librsync-go and of the C
// librsync with the rsync-compatible rollsum (rdiff -R rollsum), so Debian's
// rdiff can read and write every stream produced or consumed here. The
// matcher, the signature parser and the patcher are our own: librsync-go keeps
// only one block per weak checksum (matches are lost on big files), does not
// bound-check peer-controlled lengths and ignores I/O errors in Patch.
package delta

import (
	"math"
)

// WholeFileThreshold is the size below which a file is sent whole: a delta
// saves nothing there and costs a round trip.
const WholeFileThreshold = 64 << 10

// Block length limits. Blocks stay below 64 KiB because with the Adler-style
// rollsum power-of-two blocks of 64 KiB or more give runs of zeros a weak sum
// of 0 (librsync issue #11).
const (
	MinBlockLen = 2 << 10
	MaxBlockLen = 60 << 10
)

// Limits enforced on peer input.
const (
	// minSigBlockLen and maxSigBlockLen bound the block length accepted in a
	// signature header (rdiff's own signatures fall in this range).
	minSigBlockLen = 512
	maxSigBlockLen = 1 << 20
	// MaxLiteral is the largest LITERAL command Patch accepts. Our deltas
	// emit at most 4 blocks + 64 KiB (256 KiB minimum), rdiff 32 KiB,
	// librsync-go 16 MiB.
	MaxLiteral = 16 << 20
)

// Magic numbers of the librsync format.
const (
	magicDelta     = 0x72730236
	magicMD4Sig    = 0x72730136 // rollsum + MD4 (deprecated, still readable)
	magicBlake2Sig = 0x72730137 // rollsum + BLAKE2b-256
	magicSHA256Sig = 0x72730138 // rollsum + SHA-256: an ocf-csync extension
	magicXXH3Sig   = 0x72730139 // rollsum + XXH3-64: an ocf-csync extension (negotiated)
	magicRkMD4     = 0x72730146 // RabinKarp + MD4: not supported
	magicRkBlake2  = 0x72730147 // RabinKarp + BLAKE2: not supported
)

// StrongLen is the strong-sum length we write: the first 8 bytes of the
// BLAKE2b-256 digest (rdiff -S 8 -H blake2). The signature is most of the
// wire cost of a delta (a 1 GiB file has 32k blocks); a false block match is
// caught by the whole-file sha256 check, which falls back to a whole copy.
const StrongLen = 8

// UseDelta reports whether a file of size bytes should go as a delta against
// a receiver copy of basisSize bytes (basisSize < 0: no copy). Small files and
// missing or empty bases go whole.
func UseDelta(size, basisSize int64) bool {
	return size >= WholeFileThreshold && basisSize > 0
}

// BlockLen returns the signature block length for a basis of size bytes:
// about √size rounded to 1 KiB, clamped to [MinBlockLen, MaxBlockLen].
func BlockLen(size int64) uint32 {
	if size <= 0 {
		return MinBlockLen
	}
	kib := math.Round(math.Sqrt(float64(size)) / 1024)
	b := int64(kib) * 1024
	if b < MinBlockLen {
		return MinBlockLen
	}
	if b > MaxBlockLen {
		return MaxBlockLen
	}
	return uint32(b)
}
