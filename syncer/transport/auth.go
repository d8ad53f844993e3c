package transport

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// RecommendedKeyOptions restricts a sync key in authorized_keys to the helper.
const RecommendedKeyOptions = `command="/usr/sbin/ocf-csync serve",restrict`

// AuthError: the key file cannot be used, or the peer accepted none of our
// keys. It matches ErrAuth.
type AuthError struct {
	Peer         string
	Addr         string
	Port         int
	User         string
	IdentityFile string // key file tried ("" if none)
	Agent        bool   // ssh-agent keys were offered too
	// PublicKey is the authorized_keys line to install on the peer, when
	// the key file could be read.
	PublicKey string
	// LoadFailed: the key file itself could not be used (missing, bad
	// permissions, passphrase); nothing was sent to the peer with it.
	LoadFailed bool
	Err        error
}

func (e *AuthError) Error() string {
	target := fmt.Sprintf("%s@%s (peer %s)", e.User, hostPort(e.Addr, e.Port), e.Peer)
	if e.LoadFailed {
		msg := fmt.Sprintf("cannot use SSH key file %q for %s: %v", e.IdentityFile, target, e.Err)
		var pm *ssh.PassphraseMissingError
		switch {
		case e.IdentityFile == "":
			msg = fmt.Sprintf("no SSH key for %s: no identity file is configured and no usable ssh-agent (SSH_AUTH_SOCK)", target)
			msg += "; configure a key file, e.g. one made with: ssh-keygen -t ed25519 -N '' -f /etc/ocf-csync/id_ed25519"
		case errors.As(e.Err, &pm):
			msg += "; the key has a passphrase, which cannot be typed under a cluster manager: use a root-only (0600) key without passphrase, or load it into ssh-agent"
		case errors.Is(e.Err, os.ErrNotExist):
			msg += fmt.Sprintf("; create it with: ssh-keygen -t ed25519 -N '' -f %s", e.IdentityFile)
		}
		return msg
	}
	tried := "key file " + e.IdentityFile
	switch {
	case e.IdentityFile == "":
		tried = "the ssh-agent keys"
	case e.Agent:
		tried = "the ssh-agent keys and key file " + e.IdentityFile
	}
	msg := fmt.Sprintf("ssh authentication as %s failed: the peer accepted none of %s", target, tried)
	if e.Err != nil {
		msg += " (" + e.Err.Error() + ")"
	}
	home := "~" + e.User
	if e.PublicKey != "" {
		msg += fmt.Sprintf("; install the public key on %s in %s/.ssh/authorized_keys as:\n  %s %s",
			e.Peer, home, RecommendedKeyOptions, e.PublicKey)
	} else {
		msg += fmt.Sprintf("; install the matching public key on %s in %s/.ssh/authorized_keys, prefixed with %s",
			e.Peer, home, RecommendedKeyOptions)
	}
	return msg
}

func (e *AuthError) Unwrap() error { return e.Err }

func (e *AuthError) Is(target error) bool { return target == ErrAuth }

// authSetup holds the signers for one Dial.
type authSetup struct {
	signers  []ssh.Signer
	agent    bool
	agentNet net.Conn
	pubLine  string // authorized_keys form of the key file's public key
}

func (a *authSetup) close() {
	if a.agentNet != nil {
		a.agentNet.Close()
	}
}

// loadAuth prepares the signers: ssh-agent keys first when SSH_AUTH_SOCK is
// set and the agent answers with at least one key, then the key file. A key
// file that cannot be read is fatal only when there is no agent.
func loadAuth(p Peer, log *slog.Logger) (*authSetup, error) {
	a := &authSetup{}
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		c, err := net.DialTimeout("unix", sock, time.Second)
		if err != nil {
			log.Debug("ssh-agent not usable", "sock", sock, "err", err)
		} else {
			signers, err := agent.NewClient(c).Signers()
			if err != nil || len(signers) == 0 {
				log.Debug("ssh-agent has no usable keys", "sock", sock, "err", err)
				c.Close()
			} else {
				a.agent, a.agentNet, a.signers = true, c, signers
			}
		}
	}
	fileErr := func(err error) *AuthError {
		return &AuthError{Peer: p.Name, Addr: p.Addr, Port: p.Port, User: p.User,
			IdentityFile: p.IdentityFile, LoadFailed: true, Err: err}
	}
	if p.IdentityFile == "" {
		if a.agent {
			return a, nil
		}
		return nil, fileErr(errors.New("no key"))
	}
	signer, err := loadKeyFile(p.IdentityFile, log)
	if err != nil {
		if a.agent {
			log.Warn("SSH key file not usable, using ssh-agent keys only", "file", p.IdentityFile, "err", err)
			return a, nil
		}
		return nil, fileErr(err)
	}
	a.pubLine = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	// The agent may already hold this key; offering it twice wastes one of
	// sshd's MaxAuthTries.
	blob := signer.PublicKey().Marshal()
	for _, s := range a.signers {
		if bytes.Equal(s.PublicKey().Marshal(), blob) {
			return a, nil
		}
	}
	a.signers = append(a.signers, signer)
	return a, nil
}

func loadKeyFile(file string, log *slog.Logger) (ssh.Signer, error) {
	st, err := os.Stat(file)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		// OpenSSH refuses such keys; we only warn, the file is still ours.
		log.Warn("SSH key file is readable by others; chmod 600 it", "file", file, "mode", st.Mode().Perm().String())
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	s, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		var pm *ssh.PassphraseMissingError
		if errors.As(err, &pm) {
			return nil, err
		}
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	return s, nil
}
