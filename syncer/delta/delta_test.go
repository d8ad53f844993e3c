package delta

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"testing"
)

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 1}))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

func concat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// roundTrip runs signature, delta and patch in memory and returns the delta.
func roundTrip(t testing.TB, basis, newFile []byte, blockLen uint32) []byte {
	t.Helper()
	var sigBuf bytes.Buffer
	if err := writeSignature(bytes.NewReader(basis), blockLen, &sigBuf); err != nil {
		t.Fatalf("writeSignature: %v", err)
	}
	sig, err := ReadSignature(bytes.NewReader(sigBuf.Bytes()), int64(sigBuf.Len()))
	if err != nil {
		t.Fatalf("ReadSignature: %v", err)
	}
	if want := (len(basis) + int(blockLen) - 1) / int(blockLen); sig.Blocks() != want {
		t.Fatalf("signature has %d blocks, want %d", sig.Blocks(), want)
	}
	var d bytes.Buffer
	if err := WriteDelta(sig, bytes.NewReader(newFile), &d); err != nil {
		t.Fatalf("WriteDelta: %v", err)
	}
	var out bytes.Buffer
	if err := Patch(bytes.NewReader(basis), bytes.NewReader(d.Bytes()), &out); err != nil {
		t.Fatalf("Patch: %v", err)
	}
	if !bytes.Equal(out.Bytes(), newFile) {
		t.Fatalf("patched output differs: got %d bytes, want %d", out.Len(), len(newFile))
	}
	return d.Bytes()
}

type rtCase struct {
	name     string
	basis    []byte
	newFile  []byte
	blockLen uint32
	maxDelta int // upper bound on the delta size
}

func roundTripCases() []rtCase {
	const mib = 1 << 20
	base := randBytes(1, mib)
	bl := BlockLen(int64(len(base))) // √1 MiB = 1 KiB, clamped to 2 KiB
	oneByte := bytes.Clone(base)
	oneByte[mib/2+17] ^= 0x5a
	odd := randBytes(2, 3*mib+777) // not a multiple of the block length
	oddBl := BlockLen(int64(len(odd)))
	exact := randBytes(3, 64*int(bl))
	zeros := make([]byte, 2*mib)
	short := randBytes(4, 1000)
	return []rtCase{
		{"empty basis", nil, randBytes(5, 100<<10), bl, 100<<10 + 64},
		{"empty new file", base, nil, bl, 8},
		{"both empty", nil, nil, bl, 8},
		// A short block only matches at the end of the new file, as in rsync.
		{"basis shorter than one block, appended to", short, concat(short, randBytes(6, 3000)), bl, 4000 + 64},
		{"basis shorter than one block, prepended to", short, concat(randBytes(6, 3000), short), bl, 3000 + 64},
		{"basis shorter than one block, unchanged", short, short, bl, 16},
		{"identical", base, base, bl, 16},
		{"identical, odd length", odd, odd, oddBl, 16},
		{"identical zeros", zeros, zeros, bl, 16},
		{"1 byte changed mid-file", base, oneByte, bl, int(bl) + 64},
		{"1 byte changed, odd length", odd, func() []byte { b := bytes.Clone(odd); b[len(b)/2] ^= 1; return b }(), oddBl, int(oddBl) + 64},
		{"insertion at 10%", base, concat(base[:mib/10], randBytes(7, 100), base[mib/10:]), bl, int(bl) + 200},
		{"deletion", base, concat(base[:mib/2], base[mib/2+5000:]), bl, int(bl) + 64},
		{"append", base, concat(base, randBytes(8, 10000)), bl, 10000 + 64},
		{"prepend", base, concat(randBytes(9, 333), base), bl, 333 + 64},
		{"truncate mid-block", base, base[:mib/2+100], bl, 100 + 64},
		{"totally different", base, randBytes(10, mib), bl, mib + mib/100},
		{"exact multiple of block length", exact, exact, bl, 16},
		{"exact multiple, last block changed", exact, func() []byte { b := bytes.Clone(exact); b[len(b)-1] ^= 1; return b }(), bl, int(bl) + 64},
		{"blocks reordered", base, concat(base[mib/2:], base[:mib/2]), bl, 32},
		{"tail junk after last block", exact, concat(exact, randBytes(11, 10)), bl, 64},
		{"512-byte blocks", base, oneByte, minSigBlockLen, minSigBlockLen + 64},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range roundTripCases() {
		t.Run(tc.name, func(t *testing.T) {
			d := roundTrip(t, tc.basis, tc.newFile, tc.blockLen)
			if len(d) > tc.maxDelta {
				t.Errorf("delta is %d bytes, want at most %d", len(d), tc.maxDelta)
			}
		})
	}
}

func TestBlockLen(t *testing.T) {
	for _, tc := range []struct {
		size int64
		want uint32
	}{
		{0, MinBlockLen},
		{1, MinBlockLen},
		{64 << 10, MinBlockLen},
		{16 << 20, 4 << 10},
		{1 << 30, 32 << 10},
		{2 << 30, 45 << 10}, // √2 GiB = 46341 B = 45.25 KiB
		{3 << 30, 55 << 10}, // 56756 B = 55.4 KiB
		{100 << 30, MaxBlockLen},
		{1 << 50, MaxBlockLen},
	} {
		got := BlockLen(tc.size)
		if got != tc.want {
			t.Errorf("BlockLen(%d) = %d, want %d", tc.size, got, tc.want)
		}
		if got%1024 != 0 || got < MinBlockLen || got > MaxBlockLen {
			t.Errorf("BlockLen(%d) = %d is not a KiB multiple in range", tc.size, got)
		}
	}
}

func TestUseDelta(t *testing.T) {
	for _, tc := range []struct {
		size, basis int64
		want        bool
	}{
		{WholeFileThreshold - 1, 1 << 20, false},
		{WholeFileThreshold, 1 << 20, true},
		{1 << 30, 0, false},
		{1 << 30, -1, false},
		{1 << 30, 10, true},
	} {
		if got := UseDelta(tc.size, tc.basis); got != tc.want {
			t.Errorf("UseDelta(%d, %d) = %v, want %v", tc.size, tc.basis, got, tc.want)
		}
	}
}

// WriteSignature picks the block length from the basis size.
func TestWriteSignatureHeader(t *testing.T) {
	basis := randBytes(12, 5<<20)
	var buf bytes.Buffer
	if err := WriteSignature(bytes.NewReader(basis), int64(len(basis)), &buf); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if m := binary.BigEndian.Uint32(b); m != magicSHA256Sig {
		t.Errorf("magic %#x, want %#x", m, magicSHA256Sig)
	}
	if bl := binary.BigEndian.Uint32(b[4:]); bl != BlockLen(int64(len(basis))) {
		t.Errorf("block length %d, want %d", bl, BlockLen(int64(len(basis))))
	}
	if sl := binary.BigEndian.Uint32(b[8:]); sl != StrongLen {
		t.Errorf("strong length %d, want %d", sl, StrongLen)
	}
	bl := int(BlockLen(int64(len(basis))))
	if want := 12 + (len(basis)+bl-1)/bl*(4+StrongLen); len(b) != want {
		t.Errorf("signature is %d bytes, want %d", len(b), want)
	}
}

// Patch must stop at END so the delta can share a stream with other data.
func TestPatchDoesNotOverRead(t *testing.T) {
	basis := randBytes(13, 200<<10)
	newFile := concat(basis[:1000], []byte("changed"), basis[1000:])
	var sigBuf, d bytes.Buffer
	if err := writeSignature(bytes.NewReader(basis), 2048, &sigBuf); err != nil {
		t.Fatal(err)
	}
	sig, err := ReadSignature(&sigBuf, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteDelta(sig, bytes.NewReader(newFile), &d); err != nil {
		t.Fatal(err)
	}
	trailer := []byte("next message")
	stream := bytes.NewReader(concat(d.Bytes(), trailer))
	var out bytes.Buffer
	if err := Patch(bytes.NewReader(basis), stream, &out); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), newFile) {
		t.Fatal("patched output differs")
	}
	rest := make([]byte, 100)
	n, _ := stream.Read(rest)
	if !bytes.Equal(rest[:n], trailer) {
		t.Errorf("after Patch the stream holds %q, want %q", rest[:n], trailer)
	}
}

// A signature where every block shares one weak sum (the equal-weak-sum
// chain attack) must still give a correct delta; the capped chain walk and
// false-alarm budget keep it linear.
func TestEqualWeakSumChain(t *testing.T) {
	const blocks = 20000
	bl := uint32(2048)
	zeros := make([]byte, bl)
	s1, s2 := rollsum(zeros)
	var sig bytes.Buffer
	var hdr [12]byte
	binary.BigEndian.PutUint32(hdr[0:], magicBlake2Sig)
	binary.BigEndian.PutUint32(hdr[4:], bl)
	binary.BigEndian.PutUint32(hdr[8:], StrongLen)
	sig.Write(hdr[:])
	junk := randBytes(14, blocks*StrongLen)
	for i := 0; i < blocks; i++ {
		binary.Write(&sig, binary.BigEndian, uint32(s2)<<16|uint32(s1))
		sig.Write(junk[i*StrongLen : (i+1)*StrongLen])
	}
	parsed, err := ReadSignature(&sig, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	newFile := make([]byte, 8<<20) // every window hits the crafted weak sum
	var d bytes.Buffer
	if err := WriteDelta(parsed, bytes.NewReader(newFile), &d); err != nil {
		t.Fatal(err)
	}
	// The crafted blocks match nothing, so the delta is all literal and
	// patches against any basis that is long enough for no COPY at all.
	var out bytes.Buffer
	if err := Patch(bytes.NewReader(nil), bytes.NewReader(d.Bytes()), &out); err != nil {
		t.Fatalf("Patch: %v", err)
	}
	if !bytes.Equal(out.Bytes(), newFile) {
		t.Fatal("patched output differs")
	}
}

// The SHA-256 signature (the default) and rdiff's BLAKE2 one give the same
// delta, and both patch back to the new file.
func TestSHA256AndBlake2SignaturesAgree(t *testing.T) {
	basis := randBytes(21, 3<<20)
	newer := append([]byte(nil), basis...)
	newer[len(newer)/2] ^= 0xff
	var deltas [2][]byte
	for i, write := range []func(io.Reader, int64, io.Writer) error{WriteSignature, WriteRdiffSignature} {
		var sig, d, out bytes.Buffer
		if err := write(bytes.NewReader(basis), int64(len(basis)), &sig); err != nil {
			t.Fatal(err)
		}
		s, err := ReadSignature(&sig, int64(sig.Len()))
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteDelta(s, bytes.NewReader(newer), &d); err != nil {
			t.Fatal(err)
		}
		deltas[i] = d.Bytes()
		if err := Patch(bytes.NewReader(basis), bytes.NewReader(d.Bytes()), &out); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), newer) {
			t.Fatalf("signature %d: patched output differs", i)
		}
	}
	if !bytes.Equal(deltas[0], deltas[1]) {
		t.Errorf("deltas differ: %d bytes with SHA-256, %d with BLAKE2", len(deltas[0]), len(deltas[1]))
	}
}
