package transport

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSFTPOpenSSH: against OpenSSH's internal-sftp, forced for the key
// with command="internal-sftp" as init writes it for SFTP targets.
func TestSFTPOpenSSH(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "")
	dir := t.TempDir()
	keyFile, pub := writeClientKey(t, dir)
	port, hostKey := startSSHD(t, pub, `command="internal-sftp",restrict`)
	kh := filepath.Join(dir, "known_hosts")
	if err := AppendKnownHost(kh, "127.0.0.1", port, hostKey); err != nil {
		t.Fatal(err)
	}
	c, err := Dial(context.Background(), Peer{Name: "real", Addr: "127.0.0.1", Port: port, IdentityFile: keyFile,
		KnownHostsFile: kh, ConnectTimeout: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.SFTP()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.CanHardlink() {
		t.Errorf("OpenSSH offers hardlink@openssh.com, but CanHardlink is false")
	}

	// WriteFileAtomic: content, owner and mode; no staging dir left; an
	// existing file replaced.
	target := filepath.Join(dir, "data", "secret")
	os.MkdirAll(filepath.Dir(target), 0o755)
	os.WriteFile(target, []byte("old"), 0o644)
	a := Attrs{SetOwner: true, UID: 1234, GID: 5678, SetMode: true, Mode: 0o600, SetMtime: true, MtimeSec: 1_600_000_000}
	if err := s.WriteFileAtomic(target, []byte("new secret"), a); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(target, &st); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(target); string(got) != "new secret" || st.Mode&0o7777 != 0o600 || st.Uid != 1234 || st.Gid != 5678 || st.Mtim.Sec != 1_600_000_000 {
		t.Errorf("after WriteFileAtomic: %q mode %o owner %d:%d mtime %d", got, st.Mode&0o7777, st.Uid, st.Gid, st.Mtim.Sec)
	}
	if _, err := os.Lstat(filepath.Join(filepath.Dir(target), StagingName)); !os.IsNotExist(err) {
		t.Errorf("staging directory left: %v", err)
	}

	// The staging directory is 0700 while temp files are in it.
	tmp, _, err := s.Put(filepath.Dir(target), strings.NewReader("x"), Attrs{}, false)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Dir(tmp)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("staging directory mode: %v %v", fi, err)
	}
	s.Discard(tmp)

	// Lstat never follows; Remove refuses a directory.
	os.Symlink("/etc", filepath.Join(dir, "data", "link"))
	r, err := s.Lstat(filepath.Join(dir, "data", "link"))
	if err != nil || !r.IsSymlink() {
		t.Errorf("Lstat of a symlink: %+v %v", r, err)
	}
	if err := s.Remove(filepath.Dir(target)); err == nil {
		t.Errorf("Remove of a directory succeeded")
	}
	if r, _ := s.Lstat(filepath.Join(dir, "nope")); r.Exists {
		t.Errorf("Lstat of a missing path: Exists")
	}
}
