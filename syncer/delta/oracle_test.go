package delta

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	librsync "github.com/balena-os/librsync-go"
)

// rdiffPath returns the C librsync command-line tool, or skips (fails when
// CI=true) if it is not installed.
func rdiffPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("rdiff")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("rdiff is required in CI (Debian package rdiff): %v", err)
		}
		t.Skipf("rdiff not installed (apt-get install rdiff), skipping the C librsync oracle: %v", err)
	}
	return p
}

func runRdiff(t *testing.T, rdiff string, args ...string) {
	t.Helper()
	out, err := exec.Command(rdiff, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("rdiff %v: %v\n%s", args, err, out)
	}
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRdiffInterop checks, for every round-trip case, that
//   - our signature equals rdiff's byte for byte,
//   - rdiff builds a delta from our signature that our Patch applies,
//   - rdiff patch applies our delta.
func TestRdiffInterop(t *testing.T) {
	rdiff := rdiffPath(t)
	for _, tc := range roundTripCases() {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			basisP := writeFile(t, dir, "basis", tc.basis)
			newP := writeFile(t, dir, "new", tc.newFile)

			var ours bytes.Buffer
			if err := writeSignature(bytes.NewReader(tc.basis), tc.blockLen, &ours); err != nil {
				t.Fatal(err)
			}
			theirSigP := filepath.Join(dir, "sig.rdiff")
			runRdiff(t, rdiff, "-b", strconv.Itoa(int(tc.blockLen)), "-S", strconv.Itoa(StrongLen), "-H", "blake2", "-R", "rollsum",
				"signature", basisP, theirSigP)
			if theirs := readFile(t, theirSigP); !bytes.Equal(ours.Bytes(), theirs) {
				t.Fatalf("signature differs from rdiff's: ours %d bytes, rdiff %d bytes", ours.Len(), len(theirs))
			}

			// rdiff delta from our signature, applied by our Patch.
			ourSigP := writeFile(t, dir, "sig.ours", ours.Bytes())
			theirDeltaP := filepath.Join(dir, "delta.rdiff")
			runRdiff(t, rdiff, "delta", ourSigP, newP, theirDeltaP)
			var out bytes.Buffer
			if err := Patch(bytes.NewReader(tc.basis), bytes.NewReader(readFile(t, theirDeltaP)), &out); err != nil {
				t.Fatalf("Patch of rdiff's delta: %v", err)
			}
			if !bytes.Equal(out.Bytes(), tc.newFile) {
				t.Fatal("Patch of rdiff's delta gives different output")
			}

			// Our delta, applied by rdiff patch.
			sig, err := ReadSignature(bytes.NewReader(ours.Bytes()), int64(ours.Len()))
			if err != nil {
				t.Fatal(err)
			}
			var d bytes.Buffer
			if err := WriteDelta(sig, bytes.NewReader(tc.newFile), &d); err != nil {
				t.Fatal(err)
			}
			ourDeltaP := writeFile(t, dir, "delta.ours", d.Bytes())
			outP := filepath.Join(dir, "out")
			runRdiff(t, rdiff, "patch", basisP, ourDeltaP, outP)
			if !bytes.Equal(readFile(t, outP), tc.newFile) {
				t.Fatal("rdiff patch of our delta gives different output")
			}
			t.Logf("delta: ours %d bytes, rdiff %d bytes", d.Len(), len(readFile(t, theirDeltaP)))
		})
	}
}

// TestLibrsyncGoInterop uses github.com/balena-os/librsync-go as a second,
// in-process oracle: same signature bytes, and deltas cross-apply.
func TestLibrsyncGoInterop(t *testing.T) {
	for _, tc := range roundTripCases() {
		t.Run(tc.name, func(t *testing.T) {
			var ours, theirs bytes.Buffer
			if err := writeSignature(bytes.NewReader(tc.basis), tc.blockLen, &ours); err != nil {
				t.Fatal(err)
			}
			if _, err := librsync.Signature(bytes.NewReader(tc.basis), &theirs, tc.blockLen, StrongLen, librsync.BLAKE2_SIG_MAGIC); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ours.Bytes(), theirs.Bytes()) {
				t.Fatalf("signature differs from librsync-go's: ours %d bytes, theirs %d", ours.Len(), theirs.Len())
			}

			lsig, err := librsync.ReadSignature(bytes.NewReader(ours.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			var ld bytes.Buffer
			if err := librsync.Delta(lsig, bytes.NewReader(tc.newFile), &ld); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := Patch(bytes.NewReader(tc.basis), bytes.NewReader(ld.Bytes()), &out); err != nil {
				t.Fatalf("Patch of librsync-go's delta: %v", err)
			}
			if !bytes.Equal(out.Bytes(), tc.newFile) {
				t.Fatal("Patch of librsync-go's delta gives different output")
			}

			sig, err := ReadSignature(bytes.NewReader(ours.Bytes()), int64(ours.Len()))
			if err != nil {
				t.Fatal(err)
			}
			var d bytes.Buffer
			if err := WriteDelta(sig, bytes.NewReader(tc.newFile), &d); err != nil {
				t.Fatal(err)
			}
			out.Reset()
			if err := librsync.Patch(bytes.NewReader(tc.basis), bytes.NewReader(d.Bytes()), &out); err != nil {
				t.Fatalf("librsync-go Patch of our delta: %v", err)
			}
			if !bytes.Equal(out.Bytes(), tc.newFile) {
				t.Fatal("librsync-go Patch of our delta gives different output")
			}
		})
	}
}

// The unrolled rollsum equals librsync-go's byte-at-a-time one, including
// lengths whose n(n+1)/2 overflows 32 bits.
func TestRollsumMatchesLibrsyncGo(t *testing.T) {
	data := randBytes(40, 1<<20+13)
	for _, n := range []int{0, 1, 7, 8, 9, 15, 16, 17, 100, 2048, 65536, 65537, 92682, 1 << 20, 1<<20 + 13} {
		s1, s2 := rollsum(data[:n])
		if got, want := uint32(s2)<<16|uint32(s1), librsync.WeakChecksum(data[:n]); got != want {
			t.Errorf("rollsum of %d bytes = %#08x, librsync-go says %#08x", n, got, want)
		}
	}
}
