package delta

import (
	"bufio"
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	librsync "github.com/balena-os/librsync-go"
)

// benchFiles writes a random basis of size bytes and a copy with one byte
// changed mid-file. DELTA_BENCH_SIZE (bytes) overrides the 256 MiB default,
// e.g. for a one-off 1 GiB measurement; DELTA_BENCH_DIR names a directory
// holding ready-made files "basis" and "new" (to compare with rdiff on the
// same data).
func benchFiles(b *testing.B) (basisP, newP string, size int64) {
	b.Helper()
	if dir := os.Getenv("DELTA_BENCH_DIR"); dir != "" {
		basisP, newP = filepath.Join(dir, "basis"), filepath.Join(dir, "new")
		st, err := os.Stat(basisP)
		if err != nil {
			b.Fatalf("DELTA_BENCH_DIR: %v", err)
		}
		return basisP, newP, st.Size()
	}
	size = 256 << 20
	if s := os.Getenv("DELTA_BENCH_SIZE"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			b.Fatalf("DELTA_BENCH_SIZE=%q: %v", s, err)
		}
		size = n
	}
	dir := b.TempDir()
	basisP = filepath.Join(dir, "basis")
	newP = filepath.Join(dir, "new")
	f, err := os.Create(basisP)
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewChaCha8([32]byte{42}))
	chunk := make([]byte, 1<<20)
	for left := size; left > 0; left -= int64(len(chunk)) {
		n := min(int64(len(chunk)), left)
		for i := 0; i+8 <= int(n); i += 8 {
			v := r.Uint64()
			for j := 0; j < 8; j++ {
				chunk[i+j] = byte(v >> (8 * j))
			}
		}
		if _, err := f.Write(chunk[:n]); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	data, err := os.ReadFile(basisP)
	if err != nil {
		b.Fatal(err)
	}
	data[size/2] ^= 0xff
	if err := os.WriteFile(newP, data, 0o600); err != nil {
		b.Fatal(err)
	}
	return basisP, newP, size
}

func open(b *testing.B, p string) *os.File {
	b.Helper()
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	return f
}

// BenchmarkOneByteChanged: a file (256 MiB by default) with one byte changed
// mid-file. Reports bytes/op throughput per step and the delta size, and
// compares the librsync-go matcher on the same signature. DELTA_BENCH_BLOCK
// overrides BlockLen, to show weak-sum collision losses with many blocks.
func BenchmarkOneByteChanged(b *testing.B) {
	basisP, newP, size := benchFiles(b)
	blockLen := BlockLen(size)
	if s := os.Getenv("DELTA_BENCH_BLOCK"); s != "" {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			b.Fatalf("DELTA_BENCH_BLOCK=%q: %v", s, err)
		}
		blockLen = uint32(n)
	}
	var sig bytes.Buffer
	b.Run("signature", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			sig.Reset()
			if err := writeSignature(bufio.NewReaderSize(open(b, basisP), 1<<20), blockLen, &sig); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(sig.Len()), "sig-bytes")
	})
	parsed, err := ReadSignature(bytes.NewReader(sig.Bytes()), int64(sig.Len()))
	if err != nil {
		b.Fatal(err)
	}
	var d bytes.Buffer
	b.Run("delta", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			d.Reset()
			if err := WriteDelta(parsed, open(b, newP), &d); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(d.Len()), "delta-bytes")
	})
	b.Run("delta-librsync-go", func(b *testing.B) {
		lsig, err := librsync.ReadSignature(bufio.NewReader(bytes.NewReader(sig.Bytes())))
		if err != nil {
			b.Fatal(err)
		}
		var ld bytes.Buffer
		b.SetBytes(size)
		for b.Loop() {
			ld.Reset()
			if err := librsync.Delta(lsig, open(b, newP), &ld); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(ld.Len()), "delta-bytes")
	})
	b.Run("patch", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			if err := Patch(open(b, basisP), bytes.NewReader(d.Bytes()), io.Discard); err != nil {
				b.Fatal(err)
			}
		}
	})
}
