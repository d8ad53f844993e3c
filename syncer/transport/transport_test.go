package transport

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// testEnv is a fake server, a client key and a known_hosts file that
// already trusts the server.
type testEnv struct {
	srv        *fakeServer
	dir        string
	keyFile    string
	knownHosts string
}

func newTestEnv(t *testing.T, trusted bool, hostKeys ...ssh.Signer) *testEnv {
	t.Helper()
	t.Setenv("SSH_AUTH_SOCK", "") // the developer's agent must not change results
	dir := t.TempDir()
	keyFile, pub := writeClientKey(t, dir)
	srv := startFakeServer(t, pub, hostKeys...)
	e := &testEnv{srv: srv, dir: dir, keyFile: keyFile, knownHosts: filepath.Join(dir, "ssh", "known_hosts")}
	if trusted {
		if err := AppendKnownHost(e.knownHosts, "127.0.0.1", srv.port, srv.hostKeys[0].PublicKey()); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *testEnv) peer() Peer {
	return Peer{
		Name: "node2", Addr: "127.0.0.1", Port: e.srv.port,
		IdentityFile: e.keyFile, KnownHostsFile: e.knownHosts,
		ConnectTimeout: 5 * time.Second,
	}
}

func dialT(t *testing.T, p Peer) (*Conn, error) {
	t.Helper()
	c, err := Dial(context.Background(), p, testLogger(t))
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func TestExecRoundTrip(t *testing.T) {
	e := newTestEnv(t, true)
	p := e.peer()
	p.Keepalive = 100 * time.Millisecond // answered keepalives must not hurt
	c, err := dialT(t, p)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	data := make([]byte, 4<<20+123)
	rand.Read(data)
	s, err := c.Exec(ctx, "cat")
	if err != nil {
		t.Fatal(err)
	}
	werr := make(chan error, 1)
	go func() {
		_, err := s.Stdin.Write(data)
		if cerr := s.Stdin.Close(); err == nil {
			err = cerr
		}
		werr <- err
	}()
	got, err := io.ReadAll(s.Stdout)
	if err != nil {
		t.Fatalf("read stdout: %v", err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("write stdin: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("round trip: got %d bytes, want %d, equal=false", len(got), len(data))
	}
	if err := s.Wait(); err != nil {
		t.Fatalf("wait: %v", err)
	}
	sent, recv := c.Stats()
	if sent < int64(len(data)) || recv < int64(len(data)) {
		t.Errorf("Stats() = %d sent, %d received; want both >= %d", sent, recv, len(data))
	}

	// Several keepalive periods pass; the connection stays up.
	time.Sleep(10 * p.Keepalive)
	s, err = c.Exec(ctx, "echo out; echo err >&2; exit 3")
	if err != nil {
		t.Fatalf("exec after keepalives: %v", err)
	}
	s.Stdin.Close()
	out, err := io.ReadAll(s.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Wait()
	if string(out) != "out\n" {
		t.Errorf("stdout = %q, want %q (stderr must not be mixed in)", out, "out\n")
	}
	if s.Stderr() != "err\n" {
		t.Errorf("Stderr() = %q, want %q", s.Stderr(), "err\n")
	}
	var xe *ExitError
	if !errors.As(err, &xe) || xe.Status != 3 {
		t.Fatalf("Wait() = %v, want *ExitError with status 3", err)
	}
	for _, want := range []string{"status 3", "err", "node2", "127.0.0.1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close after Wait: %v", err)
	}
}

func TestStderrBounded(t *testing.T) {
	e := newTestEnv(t, true)
	c, err := dialT(t, e.peer())
	if err != nil {
		t.Fatal(err)
	}
	// 200 KiB of stderr: more than is kept, and it must not block the command.
	s, err := c.Exec(context.Background(), `head -c 204800 /dev/zero | tr '\0' x >&2; echo LAST >&2; exit 1`)
	if err != nil {
		t.Fatal(err)
	}
	s.Stdin.Close()
	io.Copy(io.Discard, s.Stdout)
	err = s.Wait()
	if got := len(s.Stderr()); got != stderrKeep {
		t.Errorf("len(Stderr()) = %d, want %d", got, stderrKeep)
	}
	if !strings.HasSuffix(s.Stderr(), "LAST\n") {
		t.Errorf("Stderr() does not end with the last line")
	}
	if err == nil || len(err.Error()) > stderrInError+500 || !strings.Contains(err.Error(), "LAST") {
		t.Errorf("Wait() error should quote only the stderr tail, got %d bytes: %.200q", len(fmt.Sprint(err)), err)
	}
}

func TestUnknownHostKey(t *testing.T) {
	e := newTestEnv(t, false)
	_, err := dialT(t, e.peer())
	var he *HostKeyError
	if !errors.As(err, &he) || !errors.Is(err, ErrHostKey) {
		t.Fatalf("Dial() = %v, want *HostKeyError matching ErrHostKey", err)
	}
	wantFP := ssh.FingerprintSHA256(e.srv.hostKeys[0].PublicKey())
	if he.Mismatch || he.Fingerprint != wantFP || he.KeyType != ssh.KeyAlgoED25519 {
		t.Errorf("HostKeyError = %+v, want unknown ed25519 key %s", he, wantFP)
	}
	wantCmd := "ocf-csync trust-host --peer node2 --fingerprint " + wantFP
	if he.TrustCommand != wantCmd {
		t.Errorf("TrustCommand = %q, want %q", he.TrustCommand, wantCmd)
	}
	for _, want := range []string{"node2", fmt.Sprintf("127.0.0.1:%d", e.srv.port), e.knownHosts, wantFP, wantCmd} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if errors.Is(err, ErrAuth) || errors.Is(err, ErrUnreachable) {
		t.Errorf("host key error also matches another sentinel")
	}
	if n, a := e.srv.channelOpens.Load(), e.srv.authAttempts.Load(); n != 0 || a != 0 {
		t.Errorf("server saw %d channel opens and %d auth attempts, want none", n, a)
	}
	if _, err := os.Stat(e.knownHosts); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("strict mode created %s (err %v)", e.knownHosts, err)
	}

	// The trust-host path: fetch, compare, append; then strict Dial works.
	key, err := FetchHostKey(context.Background(), "127.0.0.1", e.srv.port, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := ssh.FingerprintSHA256(key); got != wantFP {
		t.Fatalf("FetchHostKey fingerprint %s, want %s", got, wantFP)
	}
	if err := AppendKnownHost(e.knownHosts, "127.0.0.1", e.srv.port, key); err != nil {
		t.Fatal(err)
	}
	if _, err := dialT(t, e.peer()); err != nil {
		t.Fatalf("Dial after trusting: %v", err)
	}
}

func TestChangedHostKey(t *testing.T) {
	e := newTestEnv(t, false)
	// A comment and an unrelated host first, so the line number is not 1.
	os.MkdirAll(filepath.Dir(e.knownHosts), 0o700)
	other := newEd25519Signer(t).PublicKey()
	content := "# cluster keys\n" + "10.9.9.9 " + string(ssh.MarshalAuthorizedKey(other))
	if err := os.WriteFile(e.knownHosts, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := AppendKnownHost(e.knownHosts, "127.0.0.1", e.srv.port, newEd25519Signer(t).PublicKey()); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(e.knownHosts)

	for _, acceptNew := range []bool{false, true} {
		p := e.peer()
		p.AcceptNew = acceptNew
		_, err := dialT(t, p)
		var he *HostKeyError
		if !errors.As(err, &he) || !errors.Is(err, ErrHostKey) {
			t.Fatalf("AcceptNew=%v: Dial() = %v, want *HostKeyError", acceptNew, err)
		}
		if !he.Mismatch || len(he.KnownLines) != 1 || he.KnownLines[0] != 3 {
			t.Errorf("AcceptNew=%v: Mismatch=%v KnownLines=%v, want true [3]", acceptNew, he.Mismatch, he.KnownLines)
		}
		for _, want := range []string{"CHANGED", "man-in-the-middle", "line 3", e.knownHosts, he.Fingerprint} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
	}
	after, _ := os.ReadFile(e.knownHosts)
	if !bytes.Equal(before, after) {
		t.Errorf("known_hosts changed after a refused changed key:\n%s", after)
	}
	if n := e.srv.channelOpens.Load(); n != 0 {
		t.Errorf("server saw %d channel opens, want 0", n)
	}
}

// golang/go#29286: the server prefers ed25519 but only its ECDSA key is
// known; Dial must offer only the known type instead of calling it changed.
func TestKnownKeyOfLessPreferredType(t *testing.T) {
	ed, ec := newEd25519Signer(t), newECDSASigner(t)
	e := newTestEnv(t, false, ed, ec)
	if err := AppendKnownHost(e.knownHosts, "127.0.0.1", e.srv.port, ec.PublicKey()); err != nil {
		t.Fatal(err)
	}
	if _, err := dialT(t, e.peer()); err != nil {
		t.Fatalf("Dial with only the ECDSA key known: %v", err)
	}
}

func TestKnownTypeNoLongerOffered(t *testing.T) {
	e := newTestEnv(t, false) // server has ed25519 only
	if err := AppendKnownHost(e.knownHosts, "127.0.0.1", e.srv.port, newECDSASigner(t).PublicKey()); err != nil {
		t.Fatal(err)
	}
	_, err := dialT(t, e.peer())
	var he *HostKeyError
	if !errors.As(err, &he) || !he.Mismatch {
		t.Fatalf("Dial() = %v, want a mismatch *HostKeyError", err)
	}
	if want := ssh.FingerprintSHA256(e.srv.hostKeys[0].PublicKey()); he.Fingerprint != want {
		t.Errorf("Fingerprint = %q, want the offered key %s", he.Fingerprint, want)
	}
	if !strings.Contains(err.Error(), "CHANGED") {
		t.Errorf("error %q does not say CHANGED", err)
	}
}

func TestAcceptNew(t *testing.T) {
	e := newTestEnv(t, false)
	p := e.peer()
	p.AcceptNew = true
	c, err := dialT(t, p)
	if err != nil {
		t.Fatalf("Dial with AcceptNew: %v", err)
	}
	c.Close()
	st, err := os.Stat(e.knownHosts)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("known_hosts mode %v, want 0600", st.Mode().Perm())
	}
	if dst, _ := os.Stat(filepath.Dir(e.knownHosts)); dst.Mode().Perm() != 0o700 {
		t.Errorf("known_hosts dir mode %v, want 0700", dst.Mode().Perm())
	}
	b, _ := os.ReadFile(e.knownHosts)
	want := fmt.Sprintf("[127.0.0.1]:%d ssh-ed25519 ", e.srv.port)
	if !strings.HasPrefix(string(b), want) || strings.Count(string(b), "\n") != 1 {
		t.Errorf("known_hosts = %q, want one line starting %q", b, want)
	}
	// Strict now, and nothing appended a second time.
	p.AcceptNew = false
	if _, err := dialT(t, p); err != nil {
		t.Fatalf("strict Dial after accept-new: %v", err)
	}
	if b2, _ := os.ReadFile(e.knownHosts); !bytes.Equal(b, b2) {
		t.Errorf("known_hosts changed on the second connection")
	}
}

func TestAppendKnownHostAddsMissingNewline(t *testing.T) {
	file := filepath.Join(t.TempDir(), "kh")
	os.WriteFile(file, []byte("# no newline at end"), 0o600)
	k := newEd25519Signer(t).PublicKey()
	if err := AppendKnownHost(file, "node1", 22, k); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(file)
	want := "# no newline at end\nnode1 " + string(ssh.MarshalAuthorizedKey(k))
	if string(b) != want {
		t.Errorf("file = %q, want %q", b, want)
	}
}

func TestAuthFailure(t *testing.T) {
	e := newTestEnv(t, true)
	e.srv.setAuthorized(newEd25519Signer(t).PublicKey()) // someone else's key
	_, err := dialT(t, e.peer())
	var ae *AuthError
	if !errors.As(err, &ae) || !errors.Is(err, ErrAuth) {
		t.Fatalf("Dial() = %v, want *AuthError matching ErrAuth", err)
	}
	for _, want := range []string{e.keyFile, fmt.Sprintf("root@127.0.0.1:%d", e.srv.port), "node2",
		"authorized_keys", RecommendedKeyOptions + " ssh-ed25519 AAAA"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if errors.Is(err, ErrUnreachable) || errors.Is(err, ErrHostKey) {
		t.Errorf("auth error also matches another sentinel")
	}
}

func TestKeyFileProblems(t *testing.T) {
	e := newTestEnv(t, true)
	enc := filepath.Join(e.dir, "encrypted")
	_, priv, _ := ed25519GenerateForTest(t)
	block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(enc, pemEncode(block), 0o600)
	tests := []struct {
		name, file, want string
	}{
		{"missing", filepath.Join(e.dir, "nope"), "ssh-keygen -t ed25519"},
		{"passphrase", enc, "passphrase"},
		{"none", "", "no identity file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := e.peer()
			p.IdentityFile = tc.file
			_, err := dialT(t, p)
			var ae *AuthError
			if !errors.As(err, &ae) || !ae.LoadFailed || !errors.Is(err, ErrAuth) {
				t.Fatalf("Dial() = %v, want *AuthError with LoadFailed", err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.file) {
				t.Errorf("error %q does not mention %q and the file", err, tc.want)
			}
		})
	}
	if n := e.srv.authAttempts.Load(); n != 0 {
		t.Errorf("server saw %d auth attempts for unusable key files", n)
	}
}

func TestAgentFirst(t *testing.T) {
	e := newTestEnv(t, true)
	// The agent holds the authorized key; the key file does not exist.
	_, priv, pub := ed25519GenerateForTest(t)
	e.srv.setAuthorized(pub)
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: priv}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(e.dir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { agent.ServeAgent(keyring, c); c.Close() }()
		}
	}()
	t.Setenv("SSH_AUTH_SOCK", sock)
	p := e.peer()
	p.IdentityFile = filepath.Join(e.dir, "missing-key")
	c, err := dialT(t, p)
	if err != nil {
		t.Fatalf("Dial with agent: %v", err)
	}
	s, err := c.Exec(context.Background(), "true")
	if err != nil {
		t.Fatal(err)
	}
	s.Stdin.Close()
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestHandshakeDeadline(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "")
	dir := t.TempDir()
	keyFile, _ := writeClientKey(t, dir)
	// Accepts TCP, never speaks.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range held {
			c.Close()
		}
	})
	timeout := 500 * time.Millisecond
	p := Peer{Name: "silent", Addr: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port,
		IdentityFile: keyFile, KnownHostsFile: filepath.Join(dir, "kh"), ConnectTimeout: timeout}
	start := time.Now()
	_, err = dialT(t, p)
	took := time.Since(start)
	var de *DialError
	if !errors.As(err, &de) || !errors.Is(err, ErrUnreachable) || de.Op != "handshake" {
		t.Fatalf("Dial() = %v, want handshake *DialError matching ErrUnreachable", err)
	}
	if !strings.Contains(err.Error(), "timed out") || !strings.Contains(err.Error(), "silent") {
		t.Errorf("error %q does not say timed out for peer silent", err)
	}
	if took > 10*timeout {
		t.Errorf("Dial returned after %v, timeout was %v", took, timeout)
	}
}

func TestConnectionRefused(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "")
	dir := t.TempDir()
	keyFile, _ := writeClientKey(t, dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	p := Peer{Name: "down", Addr: "127.0.0.1", Port: port, IdentityFile: keyFile, KnownHostsFile: filepath.Join(dir, "kh")}
	_, err = dialT(t, p)
	var de *DialError
	if !errors.As(err, &de) || !errors.Is(err, ErrUnreachable) || de.Op != "connect" {
		t.Fatalf("Dial() = %v, want connect *DialError", err)
	}
	for _, want := range []string{"down", fmt.Sprintf("127.0.0.1:%d", port), "refused", "sshd"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestDialCanceled(t *testing.T) {
	e := newTestEnv(t, true)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Dial(ctx, e.peer(), testLogger(t))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Dial(canceled) = %v, want context.Canceled", err)
	}
}

func TestKeepaliveClosesHungConnection(t *testing.T) {
	e := newTestEnv(t, true)
	p := e.peer()
	p.Keepalive = 50 * time.Millisecond
	c, err := dialT(t, p)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Exec(context.Background(), "cat")
	if err != nil {
		t.Fatal(err)
	}
	e.srv.ignoreGlobals.Store(true)
	start := time.Now()
	readErr := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(s.Stdout) // blocks: cat waits for input
		readErr <- err
	}()
	var err2 error
	select {
	case err2 = <-readErr:
	case <-time.After(200 * p.Keepalive):
		t.Fatal("a hung peer was not detected by keepalive")
	}
	took := time.Since(start)
	if !errors.Is(err2, ErrUnreachable) || !strings.Contains(err2.Error(), "keepalive") {
		t.Errorf("stdout read error = %v, want the keepalive ErrUnreachable", err2)
	}
	// Several periods pass before the connection is declared dead (a
	// request sent just before the server went deaf may count from earlier).
	if took < (keepaliveMaxMissed-1)*p.Keepalive {
		t.Errorf("closed after %v, before %d periods of %v", took, keepaliveMaxMissed, p.Keepalive)
	}
	if err := s.Wait(); !errors.Is(err, ErrUnreachable) {
		t.Errorf("Wait() = %v, want ErrUnreachable", err)
	}
	if _, err := c.Exec(context.Background(), "true"); !errors.Is(err, ErrUnreachable) {
		t.Errorf("Exec on dead connection = %v, want ErrUnreachable", err)
	}
}

func TestExecContextCancel(t *testing.T) {
	e := newTestEnv(t, true)
	c, err := dialT(t, e.peer())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := c.Exec(ctx, "sleep 30")
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := s.Wait(); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait after cancel = %v, want context.Canceled", err)
	}
	// The connection itself is still usable.
	s, err = c.Exec(context.Background(), "exit 0")
	if err != nil {
		t.Fatal(err)
	}
	s.Stdin.Close()
	if err := s.Wait(); err != nil {
		t.Errorf("second session: %v", err)
	}
}

func TestRingBuffer(t *testing.T) {
	tests := []struct {
		writes []string
		want   string
	}{
		{[]string{"ab", "cd"}, "abcd"},
		{[]string{"abc", "def"}, "cdef"},
		{[]string{"abcdefgh"}, "efgh"},
		{[]string{"a", "bcdefg", "h"}, "efgh"},
		{nil, ""},
	}
	for _, tc := range tests {
		r := newRingBuffer(4)
		for _, w := range tc.writes {
			r.Write([]byte(w))
		}
		if got := r.String(); got != tc.want {
			t.Errorf("writes %q: got %q, want %q", tc.writes, got, tc.want)
		}
	}
}

func TestTrustCommandQuotes(t *testing.T) {
	tests := []struct{ peer, want string }{
		{"node-1.example", "ocf-csync trust-host --peer node-1.example --fingerprint SHA256:x"},
		{"a b", "ocf-csync trust-host --peer 'a b' --fingerprint SHA256:x"},
		{"it's", `ocf-csync trust-host --peer 'it'\''s' --fingerprint SHA256:x`},
	}
	for _, tc := range tests {
		if got := TrustCommand(tc.peer, "SHA256:x"); got != tc.want {
			t.Errorf("TrustCommand(%q) = %q, want %q", tc.peer, got, tc.want)
		}
	}
}
