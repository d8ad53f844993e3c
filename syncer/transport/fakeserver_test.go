package transport

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// fakeServer is an in-process SSH server on 127.0.0.1 built on x/crypto's
// server API. exec requests run "/bin/sh -c command".
type fakeServer struct {
	t          testing.TB
	ln         net.Listener
	port       int
	hostKeys   []ssh.Signer
	authorized atomic.Pointer[[]byte] // marshalled accepted client key

	authAttempts  atomic.Int32
	channelOpens  atomic.Int32
	ignoreGlobals atomic.Bool // never answer global requests (keepalives)

	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

func newEd25519Signer(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newECDSASigner(t testing.TB) ssh.Signer {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// writeClientKey creates an ed25519 key file (0600) and returns its path and
// the public key.
func writeClientKey(t testing.TB, dir string) (string, ssh.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "test")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return file, sp
}

func startFakeServer(t testing.TB, clientKey ssh.PublicKey, hostKeys ...ssh.Signer) *fakeServer {
	t.Helper()
	if len(hostKeys) == 0 {
		hostKeys = []ssh.Signer{newEd25519Signer(t)}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{t: t, ln: ln, port: ln.Addr().(*net.TCPAddr).Port, hostKeys: hostKeys}
	s.setAuthorized(clientKey)
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.stop)
	return s
}

func (s *fakeServer) setAuthorized(k ssh.PublicKey) {
	b := k.Marshal()
	s.authorized.Store(&b)
}

func (s *fakeServer) stop() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *fakeServer) config() *ssh.ServerConfig {
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			s.authAttempts.Add(1)
			if bytes.Equal(key.Marshal(), *s.authorized.Load()) {
				return nil, nil
			}
			return nil, errors.New("key not authorized")
		},
	}
	for _, k := range s.hostKeys {
		cfg.AddHostKey(k)
	}
	return cfg
}

func (s *fakeServer) serve() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, nc)
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(nc)
		}()
	}
}

func (s *fakeServer) handle(nc net.Conn) {
	defer nc.Close()
	conn, chans, reqs, err := ssh.NewServerConn(nc, s.config())
	if err != nil {
		return
	}
	defer conn.Close()
	go func() {
		for r := range reqs {
			if s.ignoreGlobals.Load() {
				continue // a hung peer: the request is never answered
			}
			if r.WantReply {
				r.Reply(r.Type == "keepalive@openssh.com", nil)
			}
		}
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for nch := range chans {
		s.channelOpens.Add(1)
		if nch.ChannelType() != "session" {
			nch.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, creqs, err := nch.Accept()
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			serveSession(ch, creqs)
		}()
	}
}

func serveSession(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for r := range reqs {
		if r.Type != "exec" || len(r.Payload) < 4 {
			if r.WantReply {
				r.Reply(false, nil)
			}
			continue
		}
		n := binary.BigEndian.Uint32(r.Payload)
		command := string(r.Payload[4 : 4+n])
		r.Reply(true, nil)
		gone := make(chan struct{})
		go func() {
			for range reqs {
			}
			close(gone) // the client closed the channel
		}()
		status := runCommand(ch, command, gone)
		ch.CloseWrite()
		ch.SendRequest("exit-status", false, binary.BigEndian.AppendUint32(nil, uint32(status)))
		return
	}
}

func runCommand(ch ssh.Channel, command string, gone <-chan struct{}) int {
	cmd := exec.Command("/bin/sh", "-c", command)
	// Own process group, so that closing the channel kills children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 255
	}
	cmd.Stdout = ch
	cmd.Stderr = ch.Stderr()
	if err := cmd.Start(); err != nil {
		return 127
	}
	// Not waited for: the client may never close its stdin.
	go func() {
		io.Copy(stdin, ch)
		stdin.Close()
	}()
	exited := make(chan struct{})
	defer close(exited)
	go func() {
		select {
		case <-gone:
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		case <-exited:
		}
	}()
	if err := cmd.Wait(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		return 255
	}
	return 0
}

// testLogger sends slog output to t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(b, "\n")))
	return len(b), nil
}

func ed25519GenerateForTest(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey, ssh.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv, sp
}

func pemEncode(b *pem.Block) []byte { return pem.EncodeToMemory(b) }
