package proto

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

const bufSize = 64 << 10

// Conn frames messages over a byte stream. One goroutine may Send (and
// Flush) while another Recvs; each side is also safe for concurrent use on
// its own, so several goroutines may share the sending side.
type Conn struct {
	wmu sync.Mutex
	bw  *bufio.Writer
	enc encoder // scratch, reused: a local would escape through the interface call

	rmu    sync.Mutex
	br     *bufio.Reader
	rbuf   []byte // frames larger than the bufio buffer, reused
	dec    decoder
	rerr   error // sticky: a broken stream stays broken
	frames uint64
}

// NewConn buffers r and w. Nothing reaches w until Flush.
func NewConn(r io.Reader, w io.Writer) *Conn {
	return &Conn{
		br:  bufio.NewReaderSize(r, bufSize),
		bw:  bufio.NewWriterSize(w, bufSize),
		enc: encoder{b: make([]byte, 0, 512)},
	}
}

// Send encodes m into the write buffer. It does not flush: call Flush once a
// batch of messages is queued or before waiting for an answer. A message
// over a limit is refused and nothing of it is written.
func (c *Conn) Send(m Message) error {
	wm, ok := m.(wireMessage)
	if !ok {
		return fmt.Errorf("send %T: not a protocol message", m)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	e := &c.enc
	e.b = append(e.b[:0], 0, 0, 0, 0, uint8(m.Type()))
	e.err = nil
	wm.encode(e)
	if e.err != nil {
		return fmt.Errorf("send %s message: %w", m.Type(), e.err)
	}
	n := len(e.b) - headerSize
	if n > MaxFrame {
		return fmt.Errorf("send %s message: %w: %d bytes, the limit is %d", m.Type(), ErrFrameTooLarge, n, MaxFrame)
	}
	binary.BigEndian.PutUint32(e.b, uint32(n))
	if _, err := c.bw.Write(e.b); err != nil {
		return fmt.Errorf("send %s message: %w", m.Type(), err)
	}
	return nil
}

// Flush writes the buffered messages to the stream.
func (c *Conn) Flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.bw.Flush(); err != nil {
		return fmt.Errorf("flush protocol stream: %w", err)
	}
	return nil
}

// Recv reads and decodes one message. It returns io.EOF when the stream ends
// cleanly between frames. Any other error is final: the stream is out of
// step and every later Recv returns the same error.
func (c *Conn) Recv() (Message, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.rerr != nil {
		return nil, c.rerr
	}
	m, err := c.recv()
	if err != nil {
		c.rerr = err
		return nil, err
	}
	c.frames++
	return m, nil
}

func (c *Conn) recv() (Message, error) {
	hdr, err := c.br.Peek(headerSize)
	if err != nil {
		if errors.Is(err, io.EOF) && len(hdr) == 0 {
			return nil, io.EOF
		}
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read frame header: %w (%d of %d header bytes)", ErrTruncated, len(hdr), headerSize)
		}
		return nil, fmt.Errorf("read frame header: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr)
	if n > MaxFrame {
		return nil, c.oversize(hdr, n)
	}
	if n == 0 {
		return nil, fmt.Errorf("read frame: %w: empty frame without a type byte", ErrMalformed)
	}
	if _, err := c.br.Discard(headerSize); err != nil {
		return nil, fmt.Errorf("read frame header: %w", err)
	}
	// Small frames are decoded in place in the bufio buffer; decoding copies
	// what it keeps, so the buffer may be reused right after.
	var frame []byte
	if int(n) <= c.br.Size() {
		frame, err = c.br.Peek(int(n))
		if err == nil {
			defer c.br.Discard(int(n))
		}
	} else {
		if cap(c.rbuf) < int(n) {
			c.rbuf = make([]byte, n)
		}
		frame = c.rbuf[:n]
		var got int
		got, err = io.ReadFull(c.br, frame)
		frame = frame[:got]
	}
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("read %s frame: %w (%d of %d bytes)", MsgType(firstByte(frame)), ErrTruncated, len(frame), n)
		}
		return nil, fmt.Errorf("read frame: %w", err)
	}
	t := MsgType(frame[0])
	m := newMessage(t)
	if m == nil {
		return nil, fmt.Errorf("read frame: %w %d (frame %d, %d bytes)", ErrUnknownType, frame[0], c.frames+1, n)
	}
	c.dec.b = frame[1:]
	c.dec.err = nil
	m.decode(&c.dec)
	if c.dec.err == nil && len(c.dec.b) != 0 {
		c.dec.failf("%d trailing bytes", len(c.dec.b))
	}
	c.dec.b = nil
	if c.dec.err != nil {
		return nil, fmt.Errorf("decode %s message: %w", t, c.dec.err)
	}
	return m, nil
}

func firstByte(b []byte) byte {
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

// oversize explains a length prefix over the limit. The usual cause is text
// on the stream, e.g. a login banner or a shell rc file printing to stdout,
// so printable header bytes are shown.
func (c *Conn) oversize(hdr []byte, n uint32) error {
	err := fmt.Errorf("read frame: %w: %d bytes announced, the limit is %d", ErrFrameTooLarge, n, MaxFrame)
	printable := true
	for _, b := range hdr {
		if b < 0x20 || b > 0x7e {
			printable = false
		}
	}
	if printable {
		// Only what is buffered: the peer may be waiting for us.
		more, _ := c.br.Peek(min(64, c.br.Buffered()))
		err = fmt.Errorf("%w; the peer wrote text %q instead of a frame: check that the remote command is `ocf-csync serve` and that nothing else prints to its stdout", err, more)
	}
	return err
}
