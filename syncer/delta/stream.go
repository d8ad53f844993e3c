package delta

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"sync"
)

// A Stream carries a signature that is still arriving: one goroutine Feeds
// it as its frames come in, while WriteDelta matches against the blocks
// that are there. Feed never blocks (the caller bounds the total, as the
// sender does with the signature's size limit), so the goroutine reading
// the connection never waits for the matcher.
type Stream struct {
	mu     sync.Mutex
	cond   sync.Cond
	chunks [][]byte
	ended  bool
	err    error
	closed bool // the consumer is gone: later bytes are dropped
}

// NewStream returns an empty Stream.
func NewStream() *Stream {
	s := &Stream{}
	s.cond.L = &s.mu
	return s
}

// Feed adds a copy of p.
func (s *Stream) Feed(p []byte) {
	if len(p) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.ended {
		return
	}
	s.chunks = append(s.chunks, append([]byte(nil), p...))
	s.cond.Broadcast()
}

// End says the signature is complete (err nil) or will never be (err set:
// the delta being made fails with it).
func (s *Stream) End(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		s.ended, s.err = true, err
	}
	s.cond.Broadcast()
}

// Close says the consumer needs no more bytes.
func (s *Stream) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed, s.chunks = true, nil
}

// next returns the bytes fed so far (waiting for some if wait), or io.EOF
// at the end.
func (s *Stream) next(wait bool) ([][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for wait && len(s.chunks) == 0 && !s.ended {
		s.cond.Wait()
	}
	if len(s.chunks) > 0 {
		c := s.chunks
		s.chunks = nil
		return c, nil
	}
	if s.ended {
		if s.err != nil {
			return nil, s.err
		}
		return nil, io.EOF
	}
	return nil, nil
}

// ReadSignatureStream waits for the header of the signature arriving on
// src and returns a Signature that WriteDelta completes from src as it
// needs blocks. basisSize is the size of the basis the signature is
// announced for (how far ahead the matcher may want blocks); the caller
// bounds the bytes src may bring.
func ReadSignatureStream(src *Stream, basisSize int64) (*Signature, error) {
	var hdr []byte
	for len(hdr) < 12 {
		chunks, err := src.next(true)
		if err == io.EOF {
			return nil, fmt.Errorf("read signature header: truncated (%w)", io.ErrUnexpectedEOF)
		}
		if err != nil {
			return nil, fmt.Errorf("read signature header: %w", err)
		}
		for _, c := range chunks {
			hdr = append(hdr, c...)
		}
	}
	s, err := parseHeader(hdr[:12])
	if err != nil {
		return nil, err
	}
	s.src, s.expected = src, max(basisSize, 0)
	// Room for the blocks announced, up to a bound: a peer that announces
	// a big basis and sends little makes the sender allocate little.
	blocks := int64(0)
	if basisSize > 0 {
		blocks = min((basisSize-1)/int64(s.blockLen)+1, 1<<20)
	}
	s.weak = make([]uint32, 0, blocks)
	s.strong = make([]byte, 0, blocks*int64(s.strongLen))
	s.reindex(int(blocks))
	s.add(hdr[12:])
	return s, nil
}

// add parses whole entries from p (and a partial one left before).
func (s *Signature) add(p []byte) {
	entLen := int(4 + s.strongLen)
	if len(s.rest) > 0 {
		k := min(entLen-len(s.rest), len(p))
		s.rest = append(s.rest, p[:k]...)
		p = p[k:]
		if len(s.rest) < entLen {
			return
		}
		s.addEntry(s.rest)
		s.rest = s.rest[:0]
	}
	for len(p) >= entLen {
		s.addEntry(p[:entLen])
		p = p[entLen:]
	}
	s.rest = append(s.rest, p...)
}

func (s *Signature) addEntry(e []byte) {
	if len(s.weak) >= math.MaxInt32-1 {
		s.done = true // more than an int32 index holds: the rest is ignored
		return
	}
	s.weak = append(s.weak, binary.BigEndian.Uint32(e))
	s.strong = append(s.strong, e[4:]...)
}

// errSigEnded is no error: a streamed signature was read to its end.
var errSigEnded = errors.New("signature complete")

// need makes the blocks covering the first cover bytes of the basis
// available (all of them for cover < 0), or as many as the signature has.
// Bytes that arrived meanwhile are taken in any case. A signature that ends
// inside an entry loses that entry: the delta only gets less compact.
func (s *Signature) need(cover int64) error {
	if s.src == nil {
		return nil
	}
	for !s.done {
		have := int64(len(s.weak)) * int64(s.blockLen)
		wait := cover < 0 || have < cover
		chunks, err := s.src.next(wait)
		if err == io.EOF {
			s.done, s.rest = true, nil
			break
		}
		if err != nil {
			return fmt.Errorf("signature: %w", err)
		}
		for _, c := range chunks {
			s.add(c)
		}
		if len(chunks) == 0 && !wait {
			break
		}
	}
	s.extendIndex()
	return nil
}

// aheadOf is how far beyond the new file's position the matcher wants the
// signature to reach: blocks moved forward by more than that (a chunk cut
// from the start of a file) are found only if their signature is already
// there, so it is generous.
func (s *Signature) aheadOf() int64 {
	return max(16<<20, s.expected/8)
}

// SignatureOptions tune WriteSignatureAt.
type SignatureOptions struct {
	// Fast writes XXH3-64 strong sums instead of SHA-256 ones; only a peer
	// that said it reads them may get them.
	Fast bool
	// Workers hash blocks in parallel (0: GOMAXPROCS).
	Workers int
	// Flush, if set, is called after the blocks of every flushEvery bytes
	// of the basis, so they go out while the rest is computed.
	Flush func() error
}

// A worker hashes the blocks of segBytes of the basis at a time; Flush
// comes after every flushEvery bytes (each costs a frame and an SSH packet
// on the wire: 128 for a 1 GiB basis).
const (
	segBytes   = 4 << 20
	flushEvery = 8 << 20
)

// segBlocks is how many blocks of bl bytes make a segment.
func segBlocks(bl int64) int64 { return max(1, segBytes/bl) }

// WriteSignatureAt is WriteSignature for a basis read with ReadAt, hashed by
// several goroutines and written in order as it goes. A basis that turns
// out shorter than basisSize (truncated meanwhile) ends the signature at the
// first short block.
func WriteSignatureAt(basis io.ReaderAt, basisSize int64, w io.Writer, o SignatureOptions) error {
	magic := uint32(magicSHA256Sig)
	if o.Fast {
		magic = magicXXH3Sig
	}
	bl := int64(BlockLen(basisSize))
	var hdr [12]byte
	binary.BigEndian.PutUint32(hdr[0:], magic)
	binary.BigEndian.PutUint32(hdr[4:], uint32(bl))
	binary.BigEndian.PutUint32(hdr[8:], StrongLen)
	if _, err := w.Write(hdr[:]); err != nil {
		return fmt.Errorf("write signature header: %w", err)
	}
	segLen := bl * segBlocks(bl)
	segs := int64(0)
	if basisSize > 0 {
		segs = (basisSize-1)/segLen + 1
	}
	workers := o.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = int(max(1, min(int64(workers), segs)))

	type result struct {
		ent   []byte
		short bool // the segment ended early: the basis ended there
		err   error
	}
	stop := make(chan struct{})
	outs := make([]chan result, workers)
	var wg sync.WaitGroup
	for k := range workers {
		outs[k] = make(chan result, 2)
		wg.Go(func() {
			buf := make([]byte, segLen)
			var sum [32]byte
			// Worker k hashes segments k, k+workers, ...: the writer
			// takes them round-robin, in order.
			for seg := int64(k); seg < segs; seg += int64(workers) {
				off := seg * segLen
				want := min(int64(len(buf)), basisSize-off)
				n, err := basis.ReadAt(buf[:want], off)
				var r result
				if err != nil && err != io.EOF {
					r.err = fmt.Errorf("read basis for signature at %d: %w", off, err)
				}
				r.short = int64(n) < want
				r.ent = make([]byte, 0, (int64(n)+bl-1)/bl*(4+StrongLen))
				for p := int64(0); p < int64(n); p += bl {
					b := buf[p:min(p+bl, int64(n))]
					s1, s2 := rollsum(b)
					r.ent = binary.BigEndian.AppendUint32(r.ent, uint32(s2)<<16|uint32(s1))
					strongOf(magic, b, &sum)
					r.ent = append(r.ent, sum[:StrongLen]...)
				}
				select {
				case outs[k] <- r:
				case <-stop:
					return
				}
				if r.err != nil || r.short {
					return
				}
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	var unflushed int64
	for seg := int64(0); seg < segs; seg++ {
		r := <-outs[seg%int64(workers)]
		if r.err != nil {
			return r.err
		}
		if _, err := w.Write(r.ent); err != nil {
			return fmt.Errorf("write signature: %w", err)
		}
		if r.short {
			break
		}
		if unflushed += segLen; o.Flush != nil && (unflushed >= flushEvery || seg == segs-1) {
			unflushed = 0
			if err := o.Flush(); err != nil {
				return fmt.Errorf("write signature: %w", err)
			}
		}
	}
	return nil
}
