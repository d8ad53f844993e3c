// Package setup makes a new cluster ready from one node: the cluster's SSH
// identity, the group keys, the state directory, the known_hosts file
// (host keys only after their fingerprints are confirmed), the
// authorized_keys lines on every node (Init), and copies of the config
// and keys on the peers (PushConfig). Files are never overwritten
// without being asked; a second run changes nothing and says so.
package setup

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
)

// keyChars is csync2's key alphabet; with exactly 64 characters, the low 6
// bits of a random byte pick one uniformly.
const keyChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._"

// WriteGroupKey writes a new group key to path: 64 characters of
// [A-Za-z0-9._] and a newline, mode 0600, as csync2 -k. It never
// overwrites an existing file.
func WriteGroupKey(path string) error {
	var raw [64]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	key := make([]byte, 0, 65)
	for _, b := range raw {
		key = append(key, keyChars[b&63])
	}
	key = append(key, '\n')
	return writeNew(path, key, 0o600, "key file %s exists; keygen never overwrites a key (remove it first if you really mean to replace it, then copy the new one to every node)")
}

// writeNew creates path with data and mode, fsynced; it fails if path
// exists (existsMsg, with the path for %s, says so).
func writeNew(path string, data []byte, mode os.FileMode, existsMsg string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf(existsMsg, path)
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// newIdentity makes an ed25519 key pair: the OpenSSH private key file
// content and the authorized_keys form of the public key.
func newIdentity(comment string) (private []byte, public string, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", fmt.Errorf("generate ed25519 key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, "", fmt.Errorf("encode private key: %w", err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, "", err
	}
	return pem.EncodeToMemory(block), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " " + comment, nil
}

// identityPublic reads the public half of the private key file: from
// file.pub when it matches, else derived (with a default comment).
func identityPublic(file string) (ssh.PublicKey, string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, "", fmt.Errorf("read SSH identity: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(data)
	if err != nil {
		return nil, "", fmt.Errorf("SSH identity %s: %w (it must be a private key without passphrase)", file, err)
	}
	pub := signer.PublicKey()
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))) + " ocf-csync"
	if pd, err := os.ReadFile(file + ".pub"); err == nil {
		if k, comment, _, _, err := ssh.ParseAuthorizedKey(pd); err == nil && string(k.Marshal()) == string(pub.Marshal()) && comment != "" {
			line = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))) + " " + comment
		}
	}
	return pub, line, nil
}

// mkdirPrivate makes dir (and its parents) 0700 when missing; it reports
// whether it made it.
func mkdirPrivate(dir string) (bool, error) {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return false, fmt.Errorf("%s exists and is not a directory", dir)
		}
		return false, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("create directory %s: %w", dir, err)
	}
	return true, nil
}

// absPath makes p absolute for messages and remote copies.
func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
