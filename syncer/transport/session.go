package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
)

const (
	// stderrKeep bounds the remote stderr kept per session.
	stderrKeep = 64 << 10
	// stderrInError is how much of it an error message quotes.
	stderrInError = 4 << 10
)

// Session is one remote command on an exec channel. Stdout is the command's
// stdout only; its stderr is kept apart (see Stderr).
type Session struct {
	Stdin  io.WriteCloser
	Stdout io.Reader

	conn    *Conn
	sess    *ssh.Session
	command string
	ctx     context.Context
	stderr  *ringBuffer
	stopCtx func() bool

	waitOnce sync.Once
	waitErr  error
}

// ExitError: the remote command ran and failed.
type ExitError struct {
	Peer    string
	Addr    string
	Port    int
	Command string
	Status  int    // exit status; -1 when killed by a signal
	Signal  string // e.g. "KILL", when killed by a signal
	Stderr  string // last ~4 KiB of the remote stderr
}

func (e *ExitError) Error() string {
	how := fmt.Sprintf("exited with status %d", e.Status)
	if e.Signal != "" {
		how = "was killed by signal " + e.Signal
	}
	msg := fmt.Sprintf("remote command %q on peer %s (%s) %s", e.Command, e.Peer, hostPort(e.Addr, e.Port), how)
	if e.Stderr != "" {
		msg += "; its stderr:\n" + e.Stderr
	} else {
		msg += " and wrote nothing to stderr"
	}
	return msg
}

// Exec starts command on a new exec channel; sshd runs it through the remote
// user's shell (a forced command in authorized_keys replaces it). When ctx
// is done the session is closed, which ends the remote command's channel.
func (c *Conn) Exec(ctx context.Context, command string) (*Session, error) {
	if err := c.lostErr(); err != nil {
		return nil, err
	}
	select {
	case <-c.done:
		return nil, fmt.Errorf("exec %q on peer %s: connection is closed", command, c.peer.Name)
	default:
	}
	// Opening a channel waits for the server's answer; do not let a hung
	// server hold the caller past ctx.
	type opened struct {
		s   *ssh.Session
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		s, err := c.client.NewSession()
		ch <- opened{s, err}
	}()
	var sess *ssh.Session
	select {
	case o := <-ch:
		if o.err != nil {
			return nil, c.execErr(command, "open session", o.err)
		}
		sess = o.s
	case <-ctx.Done():
		go func() {
			if o := <-ch; o.s != nil {
				o.s.Close()
			}
		}()
		return nil, fmt.Errorf("exec %q on peer %s: %w", command, c.peer.Name, ctx.Err())
	}

	s := &Session{conn: c, sess: sess, command: command, ctx: ctx, stderr: newRingBuffer(stderrKeep)}
	stdin, err := sess.StdinPipe()
	if err != nil {
		sess.Close()
		return nil, c.execErr(command, "stdin", err)
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		sess.Close()
		return nil, c.execErr(command, "stdout", err)
	}
	sess.Stderr = s.stderr
	if err := sess.Start(command); err != nil {
		sess.Close()
		return nil, c.execErr(command, "start", err)
	}
	s.Stdin = &stdinWriter{w: stdin, s: s}
	s.Stdout = &stdoutReader{r: stdout, s: s}
	s.stopCtx = context.AfterFunc(ctx, func() { sess.Close() })
	c.log.Debug("exec", "command", command)
	return s, nil
}

func (c *Conn) execErr(command, step string, err error) error {
	if lost := c.lostErr(); lost != nil {
		return lost
	}
	var oce *ssh.OpenChannelError
	if errors.As(err, &oce) {
		return fmt.Errorf("exec %q on peer %s (%s): the server refused a new session (%w); too many sessions at once? sshd allows MaxSessions (default 10) per connection",
			command, c.peer.Name, hostPort(c.peer.Addr, c.peer.Port), err)
	}
	return fmt.Errorf("exec %q on peer %s (%s): %s: %w", command, c.peer.Name, hostPort(c.peer.Addr, c.peer.Port), step, err)
}

// cause replaces a bare EOF or "closed" error by the reason the session
// really ended (context, lost connection), when there is one.
func (s *Session) cause(err error) error {
	if s.ctx.Err() != nil {
		return fmt.Errorf("remote command %q on peer %s: %w", s.command, s.conn.peer.Name, s.ctx.Err())
	}
	if lost := s.conn.lostErr(); lost != nil {
		return lost
	}
	if s.conn.isClosed() {
		return fmt.Errorf("remote command %q on peer %s: the connection was closed locally", s.command, s.conn.peer.Name)
	}
	return err
}

// Wait waits for the remote command to exit. A non-zero exit gives an
// *ExitError quoting the tail of the remote stderr.
func (s *Session) Wait() error {
	s.waitOnce.Do(func() {
		err := s.sess.Wait()
		if s.stopCtx != nil {
			s.stopCtx()
		}
		s.waitErr = s.waitResult(err)
	})
	return s.waitErr
}

func (s *Session) waitResult(err error) error {
	if err == nil {
		return nil
	}
	p := s.conn.peer
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		xe := &ExitError{Peer: p.Name, Addr: p.Addr, Port: p.Port, Command: s.command,
			Status: ee.ExitStatus(), Signal: ee.Signal(), Stderr: s.stderrTail()}
		if xe.Signal != "" {
			xe.Status = -1
		}
		return xe
	}
	if c := s.cause(nil); c != nil {
		return c
	}
	msg := fmt.Sprintf("remote command %q on peer %s (%s) ended without an exit status (the connection or the remote side broke): %v",
		s.command, p.Name, hostPort(p.Addr, p.Port), err)
	if tail := s.stderrTail(); tail != "" {
		msg += "; its stderr:\n" + tail
	}
	return errors.New(msg)
}

func (s *Session) stderrTail() string {
	t := s.stderr.String()
	if len(t) > stderrInError {
		t = "…" + t[len(t)-stderrInError:]
	}
	return strings.TrimRight(t, "\n")
}

// Stderr returns the remote stderr received so far (the last 64 KiB).
func (s *Session) Stderr() string { return s.stderr.String() }

// Close closes the channel; the remote command sees its stdin and stdout
// go away. Safe to call more than once and after Wait.
func (s *Session) Close() error {
	if s.stopCtx != nil {
		s.stopCtx()
	}
	err := s.sess.Close()
	if err == nil || errors.Is(err, io.EOF) {
		return nil
	}
	return fmt.Errorf("close session %q on peer %s: %w", s.command, s.conn.peer.Name, err)
}

// stdoutReader turns the bare EOF a lost connection produces into the
// reason, so that a protocol reader does not mistake it for a clean end.
type stdoutReader struct {
	r io.Reader
	s *Session
}

func (r *stdoutReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	if err != nil {
		err = r.s.cause(err)
	}
	return n, err
}

type stdinWriter struct {
	w io.WriteCloser
	s *Session
}

func (w *stdinWriter) Write(b []byte) (int, error) {
	n, err := w.w.Write(b)
	if err != nil {
		err = w.s.cause(err)
	}
	return n, err
}

func (w *stdinWriter) Close() error { return w.w.Close() }

// ringBuffer keeps the last size bytes written to it.
type ringBuffer struct {
	mu      sync.Mutex
	buf     []byte
	size    int
	dropped int64
}

func newRingBuffer(size int) *ringBuffer { return &ringBuffer{size: size} }

func (r *ringBuffer) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(b)
	if len(b) >= r.size {
		r.dropped += int64(len(r.buf) + len(b) - r.size)
		r.buf = append(r.buf[:0], b[len(b)-r.size:]...)
		return n, nil
	}
	if over := len(r.buf) + len(b) - r.size; over > 0 {
		r.dropped += int64(over)
		r.buf = append(r.buf[:0], r.buf[over:]...)
	}
	r.buf = append(r.buf, b...)
	return n, nil
}

func (r *ringBuffer) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return string(r.buf)
}
