package apply

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ocf-csync/syncer/state"
)

type rangeWriter interface {
	WriteRange(src *os.File, off, n int64) error
}

// A file written from ranges of its old version (the delta's COPYs) and
// literal bytes has the content and hash expected, hashed on the writer's
// goroutine or on one of its own, and whether the file system shares
// extents or not; a range past the end of the basis fails the write and
// keeps the old file.
func TestWriteRange(t *testing.T) {
	old := make([]byte, asyncHashMin+3<<20+123)
	rand.NewChaCha8([32]byte{5}).Read(old)
	// Aligned and unaligned ranges, literal bytes in between.
	type part struct {
		off, n int64
		lit    string
	}
	all := []part{{0, 1 << 20, ""}, {-1, 0, "literal"}, {1 << 20, 4096, ""}, {12345, 70000, ""}, {3 << 20, 123, ""},
		{-1, 0, "end"}, {0, asyncHashMin + 3<<20, ""}}
	for _, parts := range [][]part{all[:3], all} {
		var want []byte
		for _, p := range parts {
			if p.off < 0 {
				want = append(want, p.lit...)
			} else {
				want = append(want, old[p.off:p.off+p.n]...)
			}
		}
		t.Run(fmt.Sprint(len(want)), func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "f")
			if err := os.WriteFile(p, old, 0o644); err != nil {
				t.Fatal(err)
			}
			tg := New(Options{})
			basis, err := tg.OpenBasis(p)
			if err != nil {
				t.Fatal(err)
			}
			defer basis.Close()
			rec := state.FileRecord{Kind: state.KindReg, Mode: 0o644, Size: int64(len(want)), MtimeNs: mtime, Hash: sha256.Sum256(want)}
			err = tg.WriteFile(p, rec, func(w io.Writer) error {
				rw, ok := w.(rangeWriter)
				if !ok {
					t.Fatal("the writer WriteFile passes takes no ranges")
				}
				for _, part := range parts {
					if part.off < 0 {
						if _, err := io.WriteString(w, part.lit); err != nil {
							return err
						}
					} else if err := rw.WriteRange(basis, part.off, part.n); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(p); !bytes.Equal(got, want) {
				t.Fatalf("content differs (%d bytes, want %d)", len(got), len(want))
			}

			// Past the end of the basis: refused, old version kept.
			before, _ := os.ReadFile(p)
			b2, err := tg.OpenBasis(p)
			if err != nil {
				t.Fatal(err)
			}
			defer b2.Close()
			err = tg.WriteFile(p, rec, func(w io.Writer) error {
				return w.(rangeWriter).WriteRange(b2, int64(len(before))-10, 20)
			})
			if err == nil || !strings.Contains(err.Error(), "basis ended") {
				t.Errorf("range past the basis end: %v", err)
			}
			if after, _ := os.ReadFile(p); !bytes.Equal(after, before) {
				t.Error("the old file changed")
			}
			if l := temps(t, dir); len(l) != 0 {
				t.Errorf("temp files left: %v", l)
			}
		})
	}
}
