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
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

const sshdPath = "/usr/sbin/sshd"

// startSSHD runs the system OpenSSH sshd on 127.0.0.1 with a temporary host
// key and an authorized_keys file holding clientKey behind authOptions.
func startSSHD(t *testing.T, clientKey ssh.PublicKey, authOptions string) (port int, hostKey ssh.PublicKey) {
	t.Helper()
	if _, err := os.Stat(sshdPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI: %v", sshdPath, err)
		}
		t.Skipf("OpenSSH server not installed (%s missing)", sshdPath)
	}
	if os.Geteuid() != 0 {
		t.Skip("the sshd test logs in as root and needs to run as root")
	}
	// sshd's privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	_, hostPriv, hostPub := ed25519GenerateForTest(t)
	block, err := ssh.MarshalPrivateKey(hostPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	hostKeyFile := filepath.Join(dir, "ssh_host_ed25519_key")
	if err := os.WriteFile(hostKeyFile, pemEncode(block), 0o600); err != nil {
		t.Fatal(err)
	}
	ak := authOptions + " " + string(ssh.MarshalAuthorizedKey(clientKey))
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), []byte(ak), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg := fmt.Sprintf(`ListenAddress 127.0.0.1:%d
HostKey %s
PidFile %s
AuthorizedKeysFile %s
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
LogLevel VERBOSE
Subsystem sftp internal-sftp
`, port, hostKeyFile, filepath.Join(dir, "sshd.pid"), filepath.Join(dir, "authorized_keys"))
	cfgFile := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	cmd := exec.Command(sshdPath, "-D", "-e", "-f", cfgFile)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("sshd log:\n%s", log.String())
		}
	})
	// Wait until it listens.
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			break
		}
		if i == 100 {
			t.Fatalf("sshd did not listen on port %d: %v\n%s", port, err, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return port, hostPub
}

func TestOpenSSH(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "")
	dir := t.TempDir()
	keyFile, pub := writeClientKey(t, dir)
	port, hostKey := startSSHD(t, pub, "restrict")
	kh := filepath.Join(dir, "known_hosts")

	// The trust-host path against a real sshd: ed25519 is fetched.
	got, err := FetchHostKey(context.Background(), "127.0.0.1", port, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if ssh.FingerprintSHA256(got) != ssh.FingerprintSHA256(hostKey) {
		t.Fatalf("FetchHostKey = %s, want %s", ssh.FingerprintSHA256(got), ssh.FingerprintSHA256(hostKey))
	}
	// 500 ms: three missed periods (1.5 s) on a loaded 2-core machine are a
	// stall of sshd, not a lost peer; 100 ms failed the 2 MiB round trip.
	p := Peer{Name: "real", Addr: "127.0.0.1", Port: port, IdentityFile: keyFile, KnownHostsFile: kh,
		Keepalive: 500 * time.Millisecond, ConnectTimeout: 5 * time.Second}
	if _, err := dialT(t, p); !errors.Is(err, ErrHostKey) {
		t.Fatalf("Dial with empty known_hosts = %v, want ErrHostKey", err)
	}
	if err := AppendKnownHost(kh, "127.0.0.1", port, got); err != nil {
		t.Fatal(err)
	}
	c, err := dialT(t, p)
	if err != nil {
		t.Fatal(err)
	}

	data := make([]byte, 2<<20)
	rand.Read(data)
	s, err := c.Exec(context.Background(), "cat")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		s.Stdin.Write(data)
		s.Stdin.Close()
	}()
	out, err := io.ReadAll(s.Stdout)
	if err != nil || !bytes.Equal(out, data) {
		t.Fatalf("cat round trip: %d bytes, err %v; want %d identical bytes", len(out), err, len(data))
	}
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}

	// OpenSSH answers keepalive@openssh.com: several periods pass and the
	// connection still works.
	time.Sleep(4 * p.Keepalive)
	s, err = c.Exec(context.Background(), "echo hello; echo problem >&2; exit 7")
	if err != nil {
		t.Fatalf("exec after keepalives: %v", err)
	}
	s.Stdin.Close()
	out, _ = io.ReadAll(s.Stdout)
	err = s.Wait()
	var xe *ExitError
	if !errors.As(err, &xe) || xe.Status != 7 || string(out) != "hello\n" || !strings.Contains(s.Stderr(), "problem") {
		t.Errorf("got status %v, stdout %q, stderr %q; want 7, hello, problem", err, out, s.Stderr())
	}
	if sent, recv := c.Stats(); sent < int64(len(data)) || recv < int64(len(data)) {
		t.Errorf("Stats() = %d, %d; want both >= %d", sent, recv, len(data))
	}

	// A key sshd does not know.
	otherKey, _ := writeClientKey(t, t.TempDir())
	p.IdentityFile = otherKey
	if _, err := dialT(t, p); !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), otherKey) {
		t.Errorf("Dial with an unknown client key = %v, want ErrAuth naming %s", err, otherKey)
	}
}
