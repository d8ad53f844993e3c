package delta

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// WriteSignatureAt, with any number of workers, writes the bytes
// WriteSignature does; the fast variant differs only in the strong sums.
func TestWriteSignatureAtMatchesSequential(t *testing.T) {
	for _, size := range []int{1, 2047, 2048, 64 << 10, 3<<20 + 777, 9 << 20, 17<<20 + 5} {
		basis := randBytes(uint64(size), size)
		var want bytes.Buffer
		if err := WriteSignature(bytes.NewReader(basis), int64(size), &want); err != nil {
			t.Fatal(err)
		}
		for _, workers := range []int{1, 2, 5} {
			var got bytes.Buffer
			flushes := 0
			o := SignatureOptions{Workers: workers, Flush: func() error { flushes++; return nil }}
			if err := WriteSignatureAt(bytes.NewReader(basis), int64(size), &got, o); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Errorf("size %d, %d workers: signature differs from WriteSignature's", size, workers)
			}
			// About one per flushEvery bytes, and one at the end.
			if most := size/flushEvery + 1; flushes < 1 || flushes > most || (size >= 2*flushEvery && flushes < 2) {
				t.Errorf("size %d: %d flushes, want 1 to %d", size, flushes, most)
			}
		}
		var fast bytes.Buffer
		if err := WriteSignatureAt(bytes.NewReader(basis), int64(size), &fast, SignatureOptions{Fast: true}); err != nil {
			t.Fatal(err)
		}
		if fast.Len() != want.Len() {
			t.Errorf("size %d: fast signature is %d bytes, want %d", size, fast.Len(), want.Len())
		}
		s, err := ReadSignature(bytes.NewReader(fast.Bytes()), int64(fast.Len()))
		if err != nil {
			t.Fatal(err)
		}
		if s.magic != magicXXH3Sig {
			t.Errorf("fast signature magic %#x", s.magic)
		}
	}
}

// A basis that is shorter than announced (truncated while it is read) ends
// the signature at its first short block: no block past a short one.
func TestWriteSignatureAtShortBasis(t *testing.T) {
	basis := randBytes(3, 5<<20)
	var sig bytes.Buffer
	announced := int64(9 << 20)
	if err := WriteSignatureAt(bytes.NewReader(basis), announced, &sig, SignatureOptions{Workers: 3}); err != nil {
		t.Fatal(err)
	}
	s, err := ReadSignature(&sig, int64(sig.Len()))
	if err != nil {
		t.Fatal(err)
	}
	bl := int(BlockLen(announced))
	if want := (len(basis) + bl - 1) / bl; s.Blocks() != want {
		t.Errorf("%d blocks, want %d", s.Blocks(), want)
	}
}

// feed sends sig to st in random pieces from another goroutine, slowly
// enough that the matcher really waits for blocks.
func feed(st *Stream, sig []byte, seed uint64, endErr error) {
	r := rand.New(rand.NewPCG(seed, 1))
	for len(sig) > 0 {
		n := min(len(sig), 1+r.IntN(3000))
		st.Feed(sig[:n])
		sig = sig[n:]
		if r.IntN(8) == 0 {
			time.Sleep(50 * time.Microsecond)
		}
	}
	st.End(endErr)
}

// A delta made against a signature as it streams in is the one made
// against the whole signature, and patches back to the new file.
func TestStreamedSignatureDelta(t *testing.T) {
	for _, tc := range roundTripCases() {
		t.Run(tc.name, func(t *testing.T) {
			var sig bytes.Buffer
			if err := writeSignature(bytes.NewReader(tc.basis), tc.blockLen, &sig); err != nil {
				t.Fatal(err)
			}
			whole, err := ReadSignature(bytes.NewReader(sig.Bytes()), int64(sig.Len()))
			if err != nil {
				t.Fatal(err)
			}
			var want bytes.Buffer
			if err := WriteDelta(whole, bytes.NewReader(tc.newFile), &want); err != nil {
				t.Fatal(err)
			}
			st := NewStream()
			go feed(st, sig.Bytes(), uint64(len(tc.basis)), nil)
			streamed, err := ReadSignatureStream(st, int64(len(tc.basis)))
			if err != nil {
				t.Fatal(err)
			}
			var got, out bytes.Buffer
			if err := WriteDelta(streamed, bytes.NewReader(tc.newFile), &got); err != nil {
				t.Fatal(err)
			}
			st.Close()
			if err := Patch(bytes.NewReader(tc.basis), bytes.NewReader(got.Bytes()), &out); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), tc.newFile) {
				t.Fatal("patched output differs")
			}
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Errorf("streamed delta is %d bytes, the whole signature's %d", got.Len(), want.Len())
			}
		})
	}
}

// Content moved from far ahead (a chunk cut from the start of a big file)
// is still found: the matcher waits for the signature well beyond its
// position.
func TestStreamedSignatureFindsMovedBlocks(t *testing.T) {
	basis := randBytes(31, 24<<20)
	newFile := basis[5<<20:] // the first 5 MiB cut
	var sig bytes.Buffer
	bl := BlockLen(int64(len(basis)))
	if err := writeSignatureMagic(bytes.NewReader(basis), bl, &sig, magicXXH3Sig); err != nil {
		t.Fatal(err)
	}
	st := NewStream()
	go feed(st, sig.Bytes(), 9, nil)
	s, err := ReadSignatureStream(st, int64(len(basis)))
	if err != nil {
		t.Fatal(err)
	}
	var d, out bytes.Buffer
	if err := WriteDelta(s, bytes.NewReader(newFile), &d); err != nil {
		t.Fatal(err)
	}
	if d.Len() > 64<<10 {
		t.Errorf("delta of a file with its head cut is %d bytes: moved blocks were not found", d.Len())
	}
	if err := Patch(bytes.NewReader(basis), bytes.NewReader(d.Bytes()), &out); err != nil || !bytes.Equal(out.Bytes(), newFile) {
		t.Fatalf("patch: %v (equal %v)", err, bytes.Equal(out.Bytes(), newFile))
	}
}

// A stream that fails (the session broke) fails the delta with its error;
// one that ends inside an entry (or empty) only makes the delta less
// compact; a bad header is refused before anything is matched.
func TestStreamedSignatureEnds(t *testing.T) {
	basis := randBytes(41, 1<<20)
	newFile := bytes.Clone(basis)
	newFile[1000] ^= 1
	var sig bytes.Buffer
	if err := writeSignature(bytes.NewReader(basis), 2048, &sig); err != nil {
		t.Fatal(err)
	}

	broken := errors.New("connection lost")
	st := NewStream()
	go feed(st, sig.Bytes()[:len(sig.Bytes())/2], 1, broken)
	s, err := ReadSignatureStream(st, int64(len(basis)))
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteDelta(s, bytes.NewReader(newFile), io.Discard); !errors.Is(err, broken) {
		t.Errorf("delta against a broken stream: %v, want %v", err, broken)
	}

	st = NewStream()
	go feed(st, sig.Bytes()[:len(sig.Bytes())/2+5], 2, nil)
	if s, err = ReadSignatureStream(st, int64(len(basis))); err != nil {
		t.Fatal(err)
	}
	var d, out bytes.Buffer
	if err := WriteDelta(s, bytes.NewReader(newFile), &d); err != nil {
		t.Fatal(err)
	}
	if err := Patch(bytes.NewReader(basis), bytes.NewReader(d.Bytes()), &out); err != nil || !bytes.Equal(out.Bytes(), newFile) {
		t.Fatalf("patch against a truncated signature's delta: %v", err)
	}

	st = NewStream()
	st.Feed(sigHeader(0x12345678, 2048, 8))
	st.End(nil)
	if _, err := ReadSignatureStream(st, 1<<20); err == nil || !strings.Contains(err.Error(), "bad magic") {
		t.Errorf("bad header: %v", err)
	}
	st = NewStream()
	st.Feed(sig.Bytes()[:7])
	st.End(nil)
	if _, err := ReadSignatureStream(st, 1<<20); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated header: %v", err)
	}
}

// rangeOut records WriteRange calls and copies through memory.
type rangeOut struct {
	bytes.Buffer
	ranges int
}

func (r *rangeOut) WriteRange(src *os.File, off, n int64) error {
	r.ranges++
	_, err := io.Copy(&r.Buffer, io.NewSectionReader(src, off, n))
	return err
}

// Patch hands COPYs to an output that takes ranges of a basis file, and
// still refuses a delta that would write more than the announced size.
func TestPatchWriteRange(t *testing.T) {
	basis := randBytes(51, 1<<20)
	p := filepath.Join(t.TempDir(), "basis")
	if err := os.WriteFile(p, basis, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	newFile := concat(basis[:300<<10], []byte("inserted"), basis[300<<10:])
	d := roundTrip(t, basis, newFile, 2048)
	var out rangeOut
	if err := PatchLimit(f, bytes.NewReader(d), &out, int64(len(newFile))); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), newFile) || out.ranges == 0 {
		t.Fatalf("output equal %v after %d ranges", bytes.Equal(out.Bytes(), newFile), out.ranges)
	}
	out = rangeOut{}
	if err := PatchLimit(f, bytes.NewReader(d), &out, int64(len(newFile))-1); err == nil || !strings.Contains(err.Error(), "more than the expected") {
		t.Errorf("delta beyond the announced size: %v", err)
	}
	if out.Len() > len(newFile)-1 {
		t.Errorf("%d bytes written past the %d-byte bound", out.Len(), len(newFile)-1)
	}
}
