package delta

import (
	"bytes"
	"io"
	"testing"
)

// FuzzReadSignature: arbitrary signature bytes must parse or fail cleanly,
// and a parsed signature must drive WriteDelta without panicking.
func FuzzReadSignature(f *testing.F) {
	f.Add(validSig(f), []byte("some new file contents"))
	f.Add(sigHeader(magicMD4Sig, 512, 16), []byte{})
	f.Add(sigHeader(magicBlake2Sig, 512, 1), bytes.Repeat([]byte{0}, 2000))
	f.Fuzz(func(t *testing.T, sigBytes, newFile []byte) {
		sig, err := ReadSignature(bytes.NewReader(sigBytes), 1<<20)
		if err != nil {
			return
		}
		if sig.Blocks()*int(4+sig.StrongLen())+12 != len(sigBytes) {
			t.Fatalf("%d blocks of %d bytes do not add up to %d input bytes", sig.Blocks(), 4+sig.StrongLen(), len(sigBytes))
		}
		var d bytes.Buffer
		if err := WriteDelta(sig, bytes.NewReader(newFile), &d); err != nil {
			t.Fatalf("WriteDelta: %v", err)
		}
		// The basis behind this signature is unknown, so only check that
		// our delta is well-formed and in range against a zero basis of
		// the signature's extent.
		zero := io.NewSectionReader(zeroReader{}, 0, int64(sig.Blocks())*int64(sig.BlockLen()))
		if err := Patch(zero, bytes.NewReader(d.Bytes()), io.Discard); err != nil {
			t.Fatalf("our own delta does not patch: %v", err)
		}
	})
}

// FuzzPatch: arbitrary deltas against arbitrary bases fail cleanly, and
// never write more than the limit.
func FuzzPatch(f *testing.F) {
	basis := randBytes(30, 5000)
	newFile := concat(basis[:100], []byte("insert"), basis[2000:])
	var sigBuf, d bytes.Buffer
	if err := writeSignature(bytes.NewReader(basis), 512, &sigBuf); err != nil {
		f.Fatal(err)
	}
	sig, err := ReadSignature(&sigBuf, 1<<20)
	if err != nil {
		f.Fatal(err)
	}
	if err := WriteDelta(sig, bytes.NewReader(newFile), &d); err != nil {
		f.Fatal(err)
	}
	f.Add(basis, d.Bytes())
	f.Add([]byte{}, deltaOf([]byte{0x03, 'a', 'b', 'c', 0}))
	f.Add(basis[:10], deltaOf([]byte{opCopyN8N8, 0, 0, 0, 0, 0, 0, 0, 1, 0x3f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, []byte{0}))
	f.Fuzz(func(t *testing.T, basis, delta []byte) {
		const limit = 1 << 20
		var out bytes.Buffer
		err := PatchLimit(bytes.NewReader(basis), bytes.NewReader(delta), &out, limit)
		if out.Len() > limit {
			t.Fatalf("wrote %d bytes, limit %d", out.Len(), limit)
		}
		if err == nil && len(delta) < 5 {
			t.Fatalf("accepted a %d-byte delta", len(delta))
		}
	})
}

// FuzzRoundTrip: any basis and new file round-trip through 512-byte blocks.
func FuzzRoundTrip(f *testing.F) {
	f.Add(randBytes(31, 3000), randBytes(32, 100))
	f.Add(bytes.Repeat([]byte("abc"), 1000), bytes.Repeat([]byte("abc"), 999))
	f.Fuzz(func(t *testing.T, basis, newFile []byte) {
		roundTrip(t, basis, newFile, minSigBlockLen)
	})
}

type zeroReader struct{}

func (zeroReader) ReadAt(p []byte, _ int64) (int, error) {
	clear(p)
	return len(p), nil
}
