package transport

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// preferredHostKeyAlgos is offered when nothing is known about a host (first
// contact, trust-host): ed25519 first, so that the key we report and the key
// trust-host fetches are the same one.
var preferredHostKeyAlgos = []string{
	ssh.KeyAlgoED25519,
	ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
	ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
}

// HostKeyError: the peer's host key is not in the known_hosts file, differs
// from the one recorded there, or is revoked. It matches ErrHostKey.
type HostKeyError struct {
	Peer           string
	Addr           string
	Port           int
	Fingerprint    string // SHA256:… of the key the peer presented ("" if none was offered)
	KeyType        string // e.g. ssh-ed25519
	Mismatch       bool   // a different key is recorded for this host: possible man-in-the-middle
	Revoked        bool   // the key is marked @revoked
	KnownHostsFile string
	KnownLines     []int // lines of KnownHostsFile that hold the recorded (other) keys
	KnownTypes     []string
	TrustCommand   string // command that trusts the presented key after checking its fingerprint
}

func (e *HostKeyError) Error() string {
	where := fmt.Sprintf("peer %s (%s)", e.Peer, hostPort(e.Addr, e.Port))
	switch {
	case e.Revoked:
		return fmt.Sprintf("host key of %s is marked @revoked in %s: %s %s; refusing to connect. If the host was reinstalled, remove the @revoked line and run: %s",
			where, e.KnownHostsFile, shortType(e.KeyType), e.Fingerprint, e.TrustCommand)
	case e.Mismatch && e.Fingerprint == "":
		return fmt.Sprintf("host key of %s has CHANGED: %s records %s key(s) (%s) but the host offers none of these types. This can be a man-in-the-middle attack, or the host was reinstalled. Verify the new key out of band, remove %s and run: ocf-csync trust-host --peer %s",
			where, e.KnownHostsFile, strings.Join(e.KnownTypes, ", "), linesText(e.KnownLines), linesText(e.KnownLines), ShellQuote(e.Peer))
	case e.Mismatch:
		return fmt.Sprintf("WARNING: host key of %s has CHANGED: it presents %s %s, but %s records a different key (%s). This can be a man-in-the-middle attack, or the host was reinstalled. Verify the new fingerprint out of band (on %s: ssh-keygen -lf /etc/ssh/ssh_host_%s_key.pub), then remove %s of %s (or run: ssh-keygen -f %s -R %s) and run: %s",
			where, shortType(e.KeyType), e.Fingerprint, e.KnownHostsFile, linesText(e.KnownLines),
			e.Peer, shortType(e.KeyType), linesText(e.KnownLines), e.KnownHostsFile,
			ShellQuote(e.KnownHostsFile), ShellQuote(knownhosts.Normalize(hostPort(e.Addr, e.Port))), e.TrustCommand)
	default:
		return fmt.Sprintf("host key of %s is not in %s: %s %s; if that is the right key (on %s: ssh-keygen -lf /etc/ssh/ssh_host_%s_key.pub), run: %s",
			where, e.KnownHostsFile, shortType(e.KeyType), e.Fingerprint, e.Peer, shortType(e.KeyType), e.TrustCommand)
	}
}

func (e *HostKeyError) Is(target error) bool { return target == ErrHostKey }

// TrustCommand is the command a user runs to trust a peer's host key after
// checking it: the CLI fetches the key, compares it with fingerprint and
// appends it to the known_hosts file.
func TrustCommand(peer, fingerprint string) string {
	return "ocf-csync trust-host --peer " + ShellQuote(peer) + " --fingerprint " + fingerprint
}

// shortType maps "ssh-ed25519" to "ed25519", "ecdsa-sha2-nistp256" to
// "ecdsa", as in OpenSSH's file names and messages.
func shortType(t string) string {
	switch {
	case strings.HasPrefix(t, "ssh-"):
		return strings.TrimPrefix(t, "ssh-")
	case strings.HasPrefix(t, "ecdsa-"):
		return "ecdsa"
	}
	return t
}

func linesText(lines []int) string {
	if len(lines) == 0 {
		return "the old entry"
	}
	s := make([]string, len(lines))
	for i, l := range lines {
		s[i] = strconv.Itoa(l)
	}
	if len(s) == 1 {
		return "line " + s[0]
	}
	return "lines " + strings.Join(s, ", ")
}

// ShellQuote quotes s for a POSIX shell when it holds anything unusual.
func ShellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.:@/+=", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// probeKey never appears in a known_hosts file; checking it returns the keys
// recorded for a host (knownhosts.KeyError.Want).
var probeKey = func() ssh.PublicKey {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return k
}()

// hostKeyPolicy checks host keys for one peer and remembers why it refused.
type hostKeyPolicy struct {
	peer     Peer
	db       ssh.HostKeyCallback
	known    []knownhosts.KnownKey
	algos    []string
	rejected *HostKeyError // set by the callback when it refuses
	accepted ssh.PublicKey // set when AcceptNew appended a key
}

// newHostKeyPolicy reads the peer's known_hosts file (a missing file counts
// as empty) and works out which host key algorithms to offer: only those of
// the recorded keys (golang/go#29286: otherwise the server's preferred type
// wins and a known host looks "changed").
func newHostKeyPolicy(p Peer) (*hostKeyPolicy, error) {
	if p.KnownHostsFile == "" {
		return nil, fmt.Errorf("peer %s (%s): no known_hosts file configured; strict host key checking needs one: %w",
			p.Name, hostPort(p.Addr, p.Port), ErrHostKey)
	}
	var files []string
	if _, err := os.Stat(p.KnownHostsFile); err == nil {
		files = append(files, p.KnownHostsFile)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("peer %s: read known hosts file %s: %w: %w", p.Name, p.KnownHostsFile, ErrHostKey, err)
	}
	db, err := knownhosts.New(files...)
	if err != nil {
		return nil, fmt.Errorf("peer %s: read known hosts file %s (fix or remove the malformed line): %w: %w", p.Name, p.KnownHostsFile, ErrHostKey, err)
	}
	hp := &hostKeyPolicy{peer: p, db: db}
	remote := &net.TCPAddr{IP: net.IPv4zero, Port: p.Port}
	var ke *knownhosts.KeyError
	if err := db(hostPort(p.Addr, p.Port), remote, probeKey); errors.As(err, &ke) {
		hp.known = ke.Want
	}
	if len(hp.known) == 0 {
		hp.algos = preferredHostKeyAlgos
		return hp, nil
	}
	seen := map[string]bool{}
	for _, k := range hp.known {
		for _, a := range algosForKeyType(k.Key.Type()) {
			if !seen[a] {
				seen[a] = true
				hp.algos = append(hp.algos, a)
			}
		}
	}
	return hp, nil
}

func algosForKeyType(t string) []string {
	if t == ssh.KeyAlgoRSA {
		// SHA-1 signatures are disabled in OpenSSH; use the SHA-2 variants.
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
	}
	return []string{t}
}

func (hp *hostKeyPolicy) knownLines() (lines []int, types []string) {
	seen := map[string]bool{}
	for _, k := range hp.known {
		if k.Filename == hp.peer.KnownHostsFile {
			lines = append(lines, k.Line)
		}
		if t := k.Key.Type(); !seen[t] {
			seen[t] = true
			types = append(types, t)
		}
	}
	return lines, types
}

// callback is the ssh.HostKeyCallback. It refuses unknown keys unless
// AcceptNew is set, and always refuses changed or revoked keys.
func (hp *hostKeyPolicy) callback(hostname string, remote net.Addr, key ssh.PublicKey) error {
	err := hp.db(hostname, remote, key)
	if err == nil {
		return nil
	}
	p := hp.peer
	fp := ssh.FingerprintSHA256(key)
	he := &HostKeyError{
		Peer: p.Name, Addr: p.Addr, Port: p.Port,
		Fingerprint: fp, KeyType: key.Type(),
		KnownHostsFile: p.KnownHostsFile,
		TrustCommand:   TrustCommand(p.Name, fp),
	}
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	switch {
	case errors.As(err, &re):
		he.Revoked = true
		he.KnownLines = []int{re.Revoked.Line}
	case errors.As(err, &ke) && len(ke.Want) > 0:
		he.Mismatch = true
		hp.known = ke.Want
		he.KnownLines, he.KnownTypes = hp.knownLines()
	case errors.As(err, &ke):
		if p.AcceptNew {
			if aerr := AppendKnownHost(p.KnownHostsFile, p.Addr, p.Port, key); aerr != nil {
				return fmt.Errorf("peer %s: accept new host key %s: %w", p.Name, fp, aerr)
			}
			hp.accepted = key
			return nil
		}
	default:
		return err
	}
	hp.rejected = he
	return he
}

// noCommonHostKeyType builds the error for a host that offers none of the
// key types recorded for it: from our side that is a changed key.
func (hp *hostKeyPolicy) noCommonHostKeyType() *HostKeyError {
	p := hp.peer
	he := &HostKeyError{Peer: p.Name, Addr: p.Addr, Port: p.Port, Mismatch: true, KnownHostsFile: p.KnownHostsFile}
	he.KnownLines, he.KnownTypes = hp.knownLines()
	return he
}

// KnownHostKeys returns the keys file records for addr:port (none when the
// file is missing or does not list the host).
func KnownHostKeys(file, addr string, port int) ([]ssh.PublicKey, error) {
	if port == 0 {
		port = DefaultPort
	}
	if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	db, err := knownhosts.New(file)
	if err != nil {
		return nil, fmt.Errorf("read known hosts file %s: %w", file, err)
	}
	var ke *knownhosts.KeyError
	if err := db(hostPort(addr, port), &net.TCPAddr{IP: net.IPv4zero, Port: port}, probeKey); !errors.As(err, &ke) {
		return nil, nil
	}
	keys := make([]ssh.PublicKey, len(ke.Want))
	for i, k := range ke.Want {
		keys[i] = k.Key
	}
	return keys, nil
}

// errGotKey aborts a handshake once FetchHostKey has the key.
var errGotKey = errors.New("host key received")

// FetchHostKey connects to addr:port, runs the SSH key exchange only far
// enough to learn the server's host key (ed25519 preferred, as Dial does for
// unknown hosts) and disconnects before authentication. trust-host uses it.
func FetchHostKey(ctx context.Context, addr string, port int, timeout time.Duration) (ssh.PublicKey, error) {
	if port == 0 {
		port = 22
	}
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	p := Peer{Name: addr, Addr: addr, Port: port}
	var got ssh.PublicKey
	cfg := &ssh.ClientConfig{
		User:              "ocf-csync-keyscan",
		HostKeyAlgorithms: preferredHostKeyAlgos,
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			got = key
			return errGotKey
		},
		ClientVersion: clientVersion,
	}
	nc, err := dialDeadline(ctx, p, timeout)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	_, _, _, err = ssh.NewClientConn(nc, hostPort(addr, port), cfg)
	if got != nil {
		return got, nil
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("fetch host key of %s: %w", hostPort(addr, port), ctx.Err())
	}
	return nil, classifyNetErr(p, "handshake", timeout, err)
}

// AppendKnownHost appends "addr key" (OpenSSH syntax, "[addr]:port" unless
// the port is 22) to file, creating it 0600 and its directory 0700.
func AppendKnownHost(file, addr string, port int, key ssh.PublicKey) error {
	if port == 0 {
		port = 22
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("create directory for known hosts file %s: %w", file, err)
	}
	f, err := os.OpenFile(file, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open known hosts file %s: %w", file, err)
	}
	defer f.Close()
	line := knownhosts.Line([]string{knownhosts.Normalize(hostPort(addr, port))}, key) + "\n"
	// Do not glue our line to a last line that lacks its newline.
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
			line = "\n" + line
		} else if err != nil && err != io.EOF {
			return fmt.Errorf("read known hosts file %s: %w", file, err)
		}
	}
	if _, err := f.WriteString(line); err != nil {
		return fmt.Errorf("append to known hosts file %s: %w", file, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync known hosts file %s: %w", file, err)
	}
	return f.Close()
}
