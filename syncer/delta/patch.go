package delta

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// RangeWriter is an output that can take a range of the basis file itself,
// without the bytes passing through this process (copy_file_range, or a
// shared extent with FICLONERANGE). Patch uses it for COPY commands when
// the basis is an *os.File.
type RangeWriter interface {
	WriteRange(src *os.File, off, n int64) error
}

// Patch applies a librsync delta to basis and writes the result to out. It
// reads delta exactly up to its END command and no further, so the delta may
// sit on a shared stream; pass a buffered reader, since command headers are
// read a few bytes at a time. A delta that copies beyond the end of basis, has
// a LITERAL longer than MaxLiteral, is truncated or uses an unknown command is
// refused with an error; out may then hold a partial result.
func Patch(basis io.ReadSeeker, delta io.Reader, out io.Writer) error {
	return PatchLimit(basis, delta, out, -1)
}

// PatchLimit is Patch that also refuses to write more than maxOut bytes
// (maxOut < 0: no limit). The receiver knows the announced size of the new
// file, so a delta that copies the basis over and over cannot fill its disk.
func PatchLimit(basis io.ReadSeeker, delta io.Reader, out io.Writer, maxOut int64) error {
	basisSize, err := basis.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("patch: size the basis: %w", err)
	}
	var hdr [17]byte
	if err := readDelta(delta, hdr[:4], "magic"); err != nil {
		return err
	}
	if m := binary.BigEndian.Uint32(hdr[:4]); m != magicDelta {
		return fmt.Errorf("patch: bad delta magic %#08x, want %#08x", m, magicDelta)
	}
	buf := make([]byte, 64<<10)
	var written int64
	bf, _ := basis.(*os.File)
	rw, _ := out.(RangeWriter)
	grow := func(n int64) error {
		if maxOut >= 0 && n > maxOut-written {
			return fmt.Errorf("patch: delta produces more than the expected %d bytes", maxOut)
		}
		written += n
		return nil
	}
	for cmd := 0; ; cmd++ {
		if err := readDelta(delta, hdr[:1], "command"); err != nil {
			return err
		}
		op := hdr[0]
		switch {
		case op == opEnd:
			return nil

		case op < opCopyN1N1:
			var n int64
			if op < opLiteralN1 {
				n = int64(op)
			} else if n, err = readParam(delta, hdr[1:], 1<<(op-opLiteralN1), "literal length"); err != nil {
				return err
			}
			if n > MaxLiteral {
				return fmt.Errorf("patch: command %d is a %d-byte literal, more than the %d-byte limit", cmd, n, MaxLiteral)
			}
			if err := grow(n); err != nil {
				return err
			}
			c, err := io.CopyBuffer(out, io.LimitReader(delta, n), buf)
			if err != nil {
				return fmt.Errorf("patch: literal of command %d: %w", cmd, err)
			}
			if c != n {
				return fmt.Errorf("patch: delta truncated inside a %d-byte literal (%w)", n, io.ErrUnexpectedEOF)
			}

		case op <= opCopyN8N8:
			i := op - opCopyN1N1
			pos, err := readParam(delta, hdr[1:], 1<<(i/4), "copy offset")
			if err != nil {
				return err
			}
			n, err := readParam(delta, hdr[1:], 1<<(i%4), "copy length")
			if err != nil {
				return err
			}
			if pos > basisSize || n > basisSize-pos {
				return fmt.Errorf("patch: command %d copies bytes %d..%d but the basis has only %d bytes (delta made against another file?)", cmd, pos, pos+n, basisSize)
			}
			if err := grow(n); err != nil {
				return err
			}
			if bf != nil && rw != nil {
				if err := rw.WriteRange(bf, pos, n); err != nil {
					return fmt.Errorf("patch: copy %d bytes at %d from basis: %w", n, pos, err)
				}
				continue
			}
			if _, err := basis.Seek(pos, io.SeekStart); err != nil {
				return fmt.Errorf("patch: seek basis to %d: %w", pos, err)
			}
			c, err := io.CopyBuffer(out, io.LimitReader(basis, n), buf)
			if err != nil {
				return fmt.Errorf("patch: copy %d bytes at %d from basis: %w", n, pos, err)
			}
			if c != n {
				return fmt.Errorf("patch: basis ended at %d while copying %d bytes at %d (did it change?)", pos+c, n, pos)
			}

		default:
			return fmt.Errorf("patch: unknown delta command %#02x (command %d)", op, cmd)
		}
	}
}

func readDelta(r io.Reader, b []byte, what string) error {
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("patch: delta truncated before its END, reading %s (%w)", what, io.ErrUnexpectedEOF)
		}
		return fmt.Errorf("patch: read delta %s: %w", what, err)
	}
	return nil
}

// readParam reads an n-byte big-endian unsigned parameter.
func readParam(r io.Reader, scratch []byte, n int, what string) (int64, error) {
	b := scratch[:n]
	if err := readDelta(r, b, what); err != nil {
		return 0, err
	}
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	if v > 1<<62 {
		return 0, fmt.Errorf("patch: %s %d is out of range", what, v)
	}
	return int64(v), nil
}
