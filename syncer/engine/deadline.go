package engine

import (
	"errors"
	"io"
	"os"
	"sync"
	"time"
)

// errDeadline is what I/O past a session deadline returns (wrapped in a
// message saying which deadline).
var errDeadline = errors.New("session deadline")

type deadlineError struct{ msg string }

func (e *deadlineError) Error() string { return e.msg }
func (e *deadlineError) Unwrap() error { return errDeadline }

// deadlines end reads and writes of a session that wait too long: until a
// fixed time (the handshake) or, per call, longer than an idle period (the
// session). Only time spent blocked in Read or Write counts, so a receiver
// busy applying is never cut off. A pollable *os.File (a pipe or socket
// from sshd) gets real deadlines; a reader without them that is an
// io.Closer (an io.Pipe in tests) is closed when a read's time is up.
type deadlines struct {
	mu      sync.Mutex
	fixed   time.Time     // absolute deadline, if set
	idleFor time.Duration // else: per-call idle deadline, if > 0
	msg     string
	stopped bool
	fired   bool
}

// absolute makes every call fail after t.
func (d *deadlines) absolute(t time.Time, msg string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.fixed, d.idleFor, d.msg = t, 0, msg
}

// idle makes a call fail once it has waited for idle.
func (d *deadlines) idle(idle time.Duration, msg string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.fixed, d.idleFor, d.msg = time.Time{}, idle, msg
}

// stop disarms the deadlines (the session ended).
func (d *deadlines) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopped = true
}

// until is the deadline of a call starting now (zero: none).
func (d *deadlines) until() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return time.Time{}
	}
	if !d.fixed.IsZero() {
		return d.fixed
	}
	if d.idleFor > 0 {
		return time.Now().Add(d.idleFor)
	}
	return time.Time{}
}

// failed turns the error of a call that ran into its deadline into one
// that says which.
func (d *deadlines) failed(err error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil && (d.fired || errors.Is(err, os.ErrDeadlineExceeded)) {
		d.fired = true
		return &deadlineError{d.msg}
	}
	return err
}

type deadlineReader struct {
	d  *deadlines
	r  io.Reader
	sd interface{ SetReadDeadline(time.Time) error } // nil: the timer closes r

	mu      sync.Mutex
	timer   *time.Timer
	waiting time.Time // deadline of the read in progress (zero: none)
}

func (d *deadlines) reader(r io.Reader) *deadlineReader {
	dr := &deadlineReader{d: d, r: r}
	if f, ok := r.(*os.File); ok && f.SetReadDeadline(time.Time{}) == nil {
		dr.sd = f
	}
	return dr
}

func (r *deadlineReader) Read(p []byte) (int, error) {
	until := r.d.until()
	switch {
	case r.sd != nil:
		_ = r.sd.SetReadDeadline(until)
	case !until.IsZero():
		if c, ok := r.r.(io.Closer); ok {
			r.mu.Lock()
			r.waiting = until
			if r.timer == nil {
				r.timer = time.AfterFunc(time.Until(until), func() { r.expire(c) })
			} else {
				r.timer.Reset(time.Until(until))
			}
			r.mu.Unlock()
		}
	}
	n, err := r.r.Read(p)
	if r.timer != nil {
		r.mu.Lock()
		r.waiting = time.Time{}
		r.timer.Stop()
		r.mu.Unlock()
	}
	return n, r.d.failed(err)
}

// expire closes the reader if a read still waits past its deadline.
func (r *deadlineReader) expire(c io.Closer) {
	r.mu.Lock()
	late := !r.waiting.IsZero() && !time.Now().Before(r.waiting)
	r.mu.Unlock()
	if !late {
		return
	}
	r.d.mu.Lock()
	r.d.fired = true
	r.d.mu.Unlock()
	c.Close()
}

type deadlineWriter struct {
	d  *deadlines
	w  io.Writer
	sd interface{ SetWriteDeadline(time.Time) error } // nil: no deadline
}

func (d *deadlines) writer(w io.Writer) io.Writer {
	if f, ok := w.(*os.File); ok && f.SetWriteDeadline(time.Time{}) == nil {
		return &deadlineWriter{d: d, w: w, sd: f}
	}
	return w
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	_ = w.sd.SetWriteDeadline(w.d.until())
	n, err := w.w.Write(p)
	return n, w.d.failed(err)
}
