package ra

// The daemon's control socket (DESIGN §5): the daemon owns the state
// database, so a command run while it runs (status, mark, force, resolve,
// unblock, sync, a local serve, ...) does not wait for the database lock:
// it hands its command line to the daemon, which runs it with its own
// store and sends back the output and the exit code, byte for byte what a
// foreground run prints.
//
// Protocol, on a unix stream socket only root can open (0600 in the 0700
// state dir; the peer's uid is checked too):
//   - the client sends one JSON line (Request), then, for a command that
//     reads stdin (serve), its stdin until it half-closes;
//   - the daemon sends frames: one byte kind ('o' stdout, 'e' stderr,
//     'x' exit code in decimal), a 4-byte big-endian length, the bytes.
// The daemon closes after the 'x' frame.

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"ocf-csync/syncer/state"
)

// ControlSocket is the socket's name in the state dir.
const ControlSocket = "control.sock"

// ControlPath is the control socket of a state dir.
func ControlPath(stateDir string) string { return filepath.Join(stateDir, ControlSocket) }

// Request is one command line for the daemon to run.
type Request struct {
	Args    []string `json:"args"`    // the whole command line, args[0] the program
	Environ []string `json:"environ"` // the client's environment
	Dir     string   `json:"dir"`     // the client's working directory
	Stdin   bool     `json:"stdin"`   // the client streams its stdin after the line
}

// Handler runs a forwarded command line in the daemon and returns its exit
// code. cmd provides it (it is the CLI itself, run with s as its store).
type Handler func(ctx context.Context, s *Served, r Request, stdin io.Reader, stdout, stderr io.Writer) int

// Served is what a command run inside the daemon gets from it.
type Served struct {
	d      *daemon
	mu     sync.Mutex
	unlock func()
}

// Store lends the daemon's store. With exclusive (a command that writes),
// the call waits until no cycle runs, and cycles wait for the command
// until its request ends.
func (s *Served) Store(exclusive bool) *state.Store {
	s.mu.Lock()
	defer s.mu.Unlock()
	if exclusive && s.unlock == nil {
		s.d.mu.Lock()
		s.unlock = s.d.mu.Unlock
	}
	return s.d.st.Borrow()
}

// release ends the request's hold on the daemon.
func (s *Served) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unlock != nil {
		s.unlock()
		s.unlock = nil
	}
}

// Health is the daemon's current self-report.
func (s *Served) Health() (Health, error) { return ReadHealth(s.d.o.StatusFile) }

// Stopping closes when the daemon's loop ends: a serve it runs then ends
// its session between batches, so the daemon can close its store.
func (s *Served) Stopping() <-chan struct{} { return s.d.stopped }

// Local is the daemon's view of its config.
func (s *Served) Local() *Local { return s.d.l }

// Sync asks the daemon for a cycle that starts after this call (it queues
// behind a cycle in progress) and waits for it. c's Progress and Warn
// writers get the cycle's lines.
func (s *Served) Sync(ctx context.Context, c Cycle) (CycleOutcome, error) {
	r := cycleRequest{c: c, done: make(chan cycleDone, 1)}
	select {
	case s.d.requests <- r:
	case <-ctx.Done():
		return CycleOutcome{}, ctx.Err()
	case <-s.d.stopped:
		return CycleOutcome{}, errors.New("the daemon is stopping; run the command again once it stopped")
	}
	select {
	case done := <-r.done:
		return done.out, done.err
	case <-ctx.Done():
		return CycleOutcome{}, ctx.Err()
	}
}

type cycleRequest struct {
	c    Cycle
	done chan cycleDone
}

type cycleDone struct {
	out CycleOutcome
	err error
}

// listen opens the control socket (replacing a stale one).
func (d *daemon) listen() (net.Listener, error) {
	path := ControlPath(d.l.StateDir)
	if err := os.MkdirAll(d.l.StateDir, 0o700); err != nil {
		return nil, err
	}
	// A socket left by a daemon that died is in the way; this daemon holds
	// the store, so no other daemon of this state dir runs.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale control socket %s: %w", path, err)
	}
	old := unix.Umask(0o177)
	ln, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	return ln, nil
}

// serve accepts requests until ln closes.
func (d *daemon) serveControl(ctx context.Context, ln net.Listener) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			d.handle(ctx, conn.(*net.UnixConn))
		}()
	}
}

// handle runs one request.
func (d *daemon) handle(ctx context.Context, conn *net.UnixConn) {
	log := d.l.logger()
	out := &frameWriter{w: conn}
	fail := func(msg string) {
		fmt.Fprintf(out.stream('e'), "ocf-csync: %s\n", msg)
		out.exit(1)
	}
	if uid, err := peerUID(conn); err != nil || (uid != 0 && uid != os.Getuid()) {
		log.Warn("control socket: refused a client", "uid", uid, "err", err)
		fail("only root may talk to the ocf-csync daemon")
		return
	}
	br := bufio.NewReader(conn)
	line, err := br.ReadBytes('\n')
	if err != nil {
		return
	}
	var r Request
	if err := json.Unmarshal(line, &r); err != nil || len(r.Args) == 0 {
		fail("malformed request on the control socket")
		return
	}
	var stdin io.Reader = eofReader{}
	if r.Stdin {
		stdin = br
	}
	// The client going away cancels what it asked for.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if !r.Stdin {
		go func() {
			var b [1]byte
			if _, err := br.Read(b[:]); err != nil {
				cancel()
			}
		}()
	}
	s := &Served{d: d}
	defer s.release()
	code := d.o.Handler(rctx, s, r, stdin, out.stream('o'), out.stream('e'))
	s.release()
	out.exit(code)
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

func peerUID(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return -1, err
	}
	if serr != nil {
		return -1, serr
	}
	return int(cred.Uid), nil
}

// frameWriter writes the daemon's frames; streams may be written from
// several goroutines (a cycle's progress lines).
type frameWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (f *frameWriter) frame(kind byte, p []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var hdr [5]byte
	hdr[0] = kind
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(p)))
	if _, err := f.w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := f.w.Write(p)
	return err
}

func (f *frameWriter) stream(kind byte) io.Writer { return streamWriter{f, kind} }

func (f *frameWriter) exit(code int) { _ = f.frame('x', []byte(strconv.Itoa(code))) }

type streamWriter struct {
	f    *frameWriter
	kind byte
}

func (s streamWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		n := min(len(p), 1<<20)
		if err := s.f.frame(s.kind, p[:n]); err != nil {
			return 0, err
		}
		p = p[n:]
	}
	return total, nil
}

// ErrNoDaemon means no daemon answers on the control socket: the caller
// runs the command itself.
var ErrNoDaemon = errors.New("no ocf-csync daemon answers on the control socket")

// DaemonAnswers reports whether a daemon listens on the control socket of
// stateDir.
func DaemonAnswers(stateDir string) bool {
	c, err := net.DialTimeout("unix", ControlPath(stateDir), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Forward runs r in the daemon of stateDir: it streams stdin (if
// r.Stdin), copies the daemon's stdout and stderr, and returns the exit
// code. ErrNoDaemon (nothing written anywhere) means: run it here.
func Forward(ctx context.Context, stateDir string, r Request, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	path := ControlPath(stateDir)
	if _, err := os.Lstat(path); err != nil {
		return 0, ErrNoDaemon
	}
	var dl net.Dialer
	c, err := dl.DialContext(ctx, "unix", path)
	if err != nil {
		return 0, fmt.Errorf("%w (%v)", ErrNoDaemon, err)
	}
	conn := c.(*net.UnixConn)
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	line, _ := json.Marshal(r)
	if _, err := conn.Write(append(line, '\n')); err != nil {
		return 0, fmt.Errorf("%w (%v)", ErrNoDaemon, err)
	}
	if r.Stdin {
		go func() {
			_, _ = io.Copy(conn, stdin)
			_ = conn.CloseWrite()
		}()
	}
	br := bufio.NewReader(conn)
	started := false
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			if !started {
				return 0, fmt.Errorf("%w (it closed the connection: %v)", ErrNoDaemon, err)
			}
			return 0, fmt.Errorf("the ocf-csync daemon ended the command without an exit code: %w", err)
		}
		started = true
		p := make([]byte, binary.BigEndian.Uint32(hdr[1:]))
		if _, err := io.ReadFull(br, p); err != nil {
			return 0, fmt.Errorf("read from the ocf-csync daemon: %w", err)
		}
		switch hdr[0] {
		case 'o':
			_, _ = stdout.Write(p)
		case 'e':
			_, _ = stderr.Write(p)
		case 'x':
			code, err := strconv.Atoi(string(p))
			if err != nil {
				return 0, fmt.Errorf("the ocf-csync daemon sent a bad exit code %q", p)
			}
			return code, nil
		default:
			return 0, fmt.Errorf("the ocf-csync daemon sent an unknown frame %q", hdr[0])
		}
	}
}
