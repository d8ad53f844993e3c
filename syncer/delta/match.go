package delta

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// Matcher bounds. A crafted signature can put many blocks on one weak sum;
// capping the chain walk keeps the cost per byte constant (the rsync 3.5.0
// quadratic-CPU fix), and the false-alarm budget caps how often a weak hit
// with a wrong strong sum may cost a full-block hash.
const (
	maxChainSteps  = 256 // buckets entries visited per position
	maxCandidates  = 64  // equal-weak blocks compared per position
	falseAlarmBase = 1024
	falseAlarmPer  = 8 // extra false alarms allowed per block of input
)

// WriteDelta reads newFile and writes to w a librsync delta that rebuilds it
// from the basis described by sig. The stream ends with an END command, so it
// can be followed by other data on a shared stream.
func WriteDelta(sig *Signature, newFile io.Reader, w io.Writer) error {
	e := &emitter{w: bufio.NewWriterSize(w, 64<<10)}
	e.out, _ = w.(flusher)
	var magic [4]byte
	binary.BigEndian.PutUint32(magic[:], magicDelta)
	if _, err := e.w.Write(magic[:]); err != nil {
		return fmt.Errorf("write delta: %w", err)
	}

	bl := int(sig.blockLen)
	bufSize := max(256<<10, 4*bl+64<<10)
	buf := make([]byte, bufSize)
	var (
		base     int64 // absolute offset of buf[0] in newFile
		p, lit   int   // window start; start of pending literal bytes
		end      int   // valid bytes in buf
		eof      bool
		have     bool // s1, s2 hold the sum of buf[p:p+bl]
		s1, s2   uint16
		prev     int32 = -1 // last matched block, preferred successor first
		alarms   int64
		strong   [32]byte
		blockLen = uint16(bl) // rolls mod 2^16 like librsync
	)
	find := func(win []byte, weak uint32) int32 {
		return sig.find(win, weak, prev, &strong, &alarms, falseAlarmBase+falseAlarmPer*((base+int64(p))/int64(bl)))
	}
	// A streamed signature is used as it arrives, always a good way ahead
	// of the position in the new file (aheadOf).
	ahead := sig.aheadOf()
	if err := sig.need(int64(bufSize) + ahead); err != nil {
		return err
	}
	for len(sig.weak) > 0 {
		if !eof && end-p <= bl {
			// Keep at least one byte beyond the window so it can roll.
			if err := e.literal(buf[lit:p]); err != nil {
				return err
			}
			n := copy(buf, buf[p:end])
			base += int64(p)
			p, lit, end = 0, 0, n
			m, err := io.ReadFull(newFile, buf[end:])
			end += m
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				eof = true
			} else if err != nil {
				return fmt.Errorf("read new file for delta: %w", err)
			}
			if err := sig.need(base + int64(end) + ahead); err != nil {
				return err
			}
			continue
		}
		if end-p < bl {
			break
		}
		if !have {
			// Right after a match the basis's next block is the likely
			// one: its strong sum alone decides, without a rollsum.
			if nb := prev + 1; prev >= 0 && int(nb) < len(sig.weak) &&
				sig.equalStrong(nb, sig.strongSum(buf[p:p+bl], &strong)) {
				if err := e.literal(buf[lit:p]); err != nil {
					return err
				}
				if err := e.copy(int64(nb)*int64(bl), int64(bl)); err != nil {
					return err
				}
				prev = nb
				p += bl
				lit = p
				continue
			}
			s1, s2 = rollsum(buf[p : p+bl])
			have = true
		}
		weak := uint32(s2)<<16 | uint32(s1)
		blk := int32(-1)
		if sig.head[sig.bucket(weak)] >= 0 { // also holds block prev+1 if its weak sum matches
			blk = find(buf[p:p+bl], weak)
		}
		if blk >= 0 {
			if err := e.literal(buf[lit:p]); err != nil {
				return err
			}
			if err := e.copy(int64(blk)*int64(bl), int64(bl)); err != nil {
				return err
			}
			prev = blk
			p += bl
			lit = p
			have = false
			continue
		}
		if p+bl == end {
			break // at EOF with a full window: the tail search shrinks it
		}
		out, in := uint16(buf[p]), uint16(buf[p+bl])
		s1 += in - out
		s2 += s1 - blockLen*(out+rollOffset)
		p++
	}

	if len(sig.weak) == 0 {
		// Empty basis: everything is literal.
		for {
			n, err := io.ReadFull(newFile, buf)
			if lerr := e.literal(buf[:n]); lerr != nil {
				return lerr
			}
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			}
			if err != nil {
				return fmt.Errorf("read new file for delta: %w", err)
			}
		}
	} else {
		// Tail shorter than a block: it can only match the basis's short
		// last block, so try every suffix (cheap: weak lookups only).
		if err := sig.need(-1); err != nil {
			return err
		}
		q := p
		if have && end-q == bl {
			// This full window was already tried: start one byte in.
			out := uint16(buf[q])
			s1 -= out + rollOffset
			s2 -= blockLen * (out + rollOffset)
			q++
		} else {
			s1, s2 = rollsum(buf[q:end])
		}
		for q < end {
			if blk := find(buf[q:end], uint32(s2)<<16|uint32(s1)); blk >= 0 {
				if err := e.literal(buf[lit:q]); err != nil {
					return err
				}
				if err := e.copy(int64(blk)*int64(bl), int64(end-q)); err != nil {
					return err
				}
				lit = end
				break
			}
			out := uint16(buf[q])
			s1 -= out + rollOffset
			s2 -= uint16(end-q) * (out + rollOffset)
			q++
		}
		if err := e.literal(buf[lit:end]); err != nil {
			return err
		}
	}
	if err := e.flushCopy(); err != nil {
		return err
	}
	if err := e.w.WriteByte(opEnd); err != nil {
		return fmt.Errorf("write delta: %w", err)
	}
	if err := e.w.Flush(); err != nil {
		return fmt.Errorf("write delta: %w", err)
	}
	return nil
}

// find returns the basis block whose content equals win, or -1. The block
// after prev is tried first so that unchanged runs coalesce into one COPY.
func (s *Signature) find(win []byte, weak uint32, prev int32, strong *[32]byte, alarms *int64, budget int64) int32 {
	var sum []byte
	strongOf := func() []byte {
		if sum == nil {
			if *alarms > budget {
				return nil
			}
			sum = s.strongSum(win, strong)
		}
		return sum
	}
	hit := false
	if nb := prev + 1; prev >= 0 && int(nb) < len(s.weak) && s.weak[nb] == weak {
		hit = true
		if ss := strongOf(); ss != nil && s.equalStrong(nb, ss) {
			return nb
		}
	}
	cands := 0
	steps := 0
	for i := s.head[s.bucket(weak)]; i >= 0 && steps < maxChainSteps && cands < maxCandidates; i = s.next[i] {
		steps++
		if s.weak[i] != weak {
			continue
		}
		hit = true
		cands++
		ss := strongOf()
		if ss == nil {
			return -1
		}
		if s.equalStrong(i, ss) {
			return i
		}
	}
	if hit && sum != nil {
		*alarms++
	}
	return -1
}

// Delta opcodes (librsync prototab.h).
const (
	opEnd       = 0x00
	opLiteral1  = 0x01 // 0x01..0x40: literal of that many bytes
	opLiteralN1 = 0x41 // 0x41..0x44: literal, length in 1/2/4/8 bytes
	opCopyN1N1  = 0x45 // 0x45..0x54: copy, offset and length in 1/2/4/8 bytes
	opCopyN8N8  = 0x54
)

// emitter writes delta commands, merging adjacent COPYs.
type emitter struct {
	w       *bufio.Writer
	out     flusher // nil: w's writer has no Flush
	copyPos int64
	copyLen int64
	scratch [17]byte
}

// flusher is a writer that can send what it buffered now.
type flusher interface{ Flush() error }

// copyChunk bounds a merged COPY: a long unchanged run goes out in pieces,
// flushed, so the receiver patches while the sender still matches.
const copyChunk = 64 << 20

func sizeCode(v int64) (code byte, n int) {
	switch {
	case v <= 0xff:
		return 0, 1
	case v <= 0xffff:
		return 1, 2
	case v <= 0xffffffff:
		return 2, 4
	default:
		return 3, 8
	}
}

func putN(b []byte, v int64, n int) {
	for i := n - 1; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
}

func (e *emitter) literal(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if err := e.flushCopy(); err != nil {
		return err
	}
	b := e.scratch[:0]
	if len(p) <= 64 {
		b = append(b, byte(opLiteral1-1+len(p)))
	} else {
		c, n := sizeCode(int64(len(p)))
		b = append(b, opLiteralN1+c)
		b = b[:1+n]
		putN(b[1:], int64(len(p)), n)
	}
	if _, err := e.w.Write(b); err != nil {
		return fmt.Errorf("write delta: %w", err)
	}
	if _, err := e.w.Write(p); err != nil {
		return fmt.Errorf("write delta: %w", err)
	}
	return nil
}

func (e *emitter) copy(pos, n int64) error {
	if e.copyLen > 0 && e.copyPos+e.copyLen == pos {
		e.copyLen += n
		if e.copyLen >= copyChunk && e.out != nil {
			if err := e.flushCopy(); err != nil {
				return err
			}
			if err := e.w.Flush(); err != nil {
				return fmt.Errorf("write delta: %w", err)
			}
			if err := e.out.Flush(); err != nil {
				return fmt.Errorf("write delta: %w", err)
			}
		}
		return nil
	}
	if err := e.flushCopy(); err != nil {
		return err
	}
	e.copyPos, e.copyLen = pos, n
	return nil
}

func (e *emitter) flushCopy() error {
	if e.copyLen == 0 {
		return nil
	}
	pc, pn := sizeCode(e.copyPos)
	lc, ln := sizeCode(e.copyLen)
	b := e.scratch[:1+pn+ln]
	b[0] = opCopyN1N1 + pc*4 + lc
	putN(b[1:], e.copyPos, pn)
	putN(b[1+pn:], e.copyLen, ln)
	e.copyLen = 0
	if _, err := e.w.Write(b); err != nil {
		return fmt.Errorf("write delta: %w", err)
	}
	return nil
}
