package transport

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/pkg/sftp"
)

// StagingName is the directory ocf-csync makes (mode 0700) inside a target
// directory of an SFTP host for its temp files. SFTP v3 cannot give a new
// file its mode at OPEN through pkg/sftp, so a temp file in the target
// directory itself would be readable by local users (0666 & umask) until
// the FSETSTAT that follows; an fd opened in that window would read the
// content later. Lookups through a 0700 directory are checked at each
// lookup, so the content never shows. It is removed at the end of a run;
// one left by a killed sender is cleared on the next.
const StagingName = ".ocf-csync-tmp"

// SFTP is an SFTP session on a host that has sshd but no ocf-csync. Its
// methods are safe for concurrent use; requests pipeline on one channel.
type SFTP struct {
	c        *sftp.Client
	conn     *Conn // nil when the session runs over a pipe (tests)
	peer     string
	hardlink bool
	fsync    bool

	mu      sync.Mutex
	staging map[string]*staging // target dir → its staging dir
}

type staging struct {
	ready chan struct{}
	err   error
}

// sftpOptions: concurrent writes roughly triple throughput (go-libraries
// §3.2); a failed write can leave the temp file longer than written, and a
// temp file is thrown away on any error.
var sftpOptions = []sftp.ClientOption{sftp.UseConcurrentWrites(true), sftp.MaxConcurrentRequestsPerFile(64)}

// SFTP opens the sftp subsystem on the connection. The server must offer
// posix-rename@openssh.com (OpenSSH does): plain SFTP rename fails over an
// existing file, which would make replacing a file non-atomic.
func (c *Conn) SFTP() (*SFTP, error) {
	cl, err := sftp.NewClient(c.client, sftpOptions...)
	if err != nil {
		if lost := c.lostErr(); lost != nil {
			return nil, lost
		}
		return nil, fmt.Errorf("start the sftp subsystem on peer %s (%s): %w; check 'Subsystem sftp' in its sshd_config, and that the authorized_keys line of this key forces no other command (use command=\"internal-sftp\")",
			c.peer.Name, hostPort(c.peer.Addr, c.peer.Port), err)
	}
	s, err := NewSFTP(cl, c.peer.Name)
	if err != nil {
		cl.Close()
		return nil, err
	}
	s.conn = c
	return s, nil
}

// NewSFTP wraps an SFTP client (e.g. over a pipe) for host peer.
func NewSFTP(cl *sftp.Client, peer string) (*SFTP, error) {
	if _, ok := cl.HasExtension("posix-rename@openssh.com"); !ok {
		return nil, fmt.Errorf("the SFTP server of peer %s lacks posix-rename@openssh.com, which atomic replacement needs; use OpenSSH's sftp-server or internal-sftp", peer)
	}
	s := &SFTP{c: cl, peer: peer, staging: map[string]*staging{}}
	_, s.hardlink = cl.HasExtension("hardlink@openssh.com")
	_, s.fsync = cl.HasExtension("fsync@openssh.com")
	return s, nil
}

// Peer is the host name the session goes to.
func (s *SFTP) Peer() string { return s.peer }

// CanHardlink reports whether the server offers hardlink@openssh.com.
func (s *SFTP) CanHardlink() bool { return s.hardlink }

// Close ends the session and, when it owns one, the SSH connection.
func (s *SFTP) Close() error {
	err := s.c.Close()
	if s.conn != nil {
		s.conn.Close()
	}
	return err
}

// Counters are the bytes sent and received on the SSH connection.
func (s *SFTP) Counters() (sent, received int64) {
	if s.conn == nil {
		return 0, 0
	}
	return s.conn.Stats()
}

// RemoteStat is what LSTAT tells about a path on the target. SFTP v3
// carries mtimes in whole seconds.
type RemoteStat struct {
	Exists   bool
	Mode     fs.FileMode // type and permission bits (setuid, setgid, sticky included)
	Size     int64
	MtimeSec int64
	UID, GID uint32
}

// IsDir, IsSymlink and IsRegular test the type.
func (r RemoteStat) IsDir() bool     { return r.Exists && r.Mode.IsDir() }
func (r RemoteStat) IsSymlink() bool { return r.Exists && r.Mode&fs.ModeSymlink != 0 }
func (r RemoteStat) IsRegular() bool { return r.Exists && r.Mode.IsRegular() }

func remoteStat(fi fs.FileInfo) RemoteStat {
	r := RemoteStat{Exists: true, Mode: fi.Mode(), Size: fi.Size(), MtimeSec: fi.ModTime().Unix()}
	if st, ok := fi.Sys().(*sftp.FileStat); ok {
		r.UID, r.GID = st.UID, st.GID
	}
	return r
}

// Lstat never follows a final symlink. A missing path is no error: Exists
// is false.
func (s *SFTP) Lstat(p string) (RemoteStat, error) {
	fi, err := s.c.Lstat(p)
	if errors.Is(err, os.ErrNotExist) {
		return RemoteStat{}, nil
	}
	if err != nil {
		return RemoteStat{}, s.opErr("lstat", p, err)
	}
	return remoteStat(fi), nil
}

// ReadDir lists a directory with each entry's LSTAT attributes.
func (s *SFTP) ReadDir(dir string) (map[string]RemoteStat, error) {
	fis, err := s.c.ReadDir(dir)
	if err != nil {
		return nil, s.opErr("read directory", dir, err)
	}
	out := make(map[string]RemoteStat, len(fis))
	for _, fi := range fis {
		out[fi.Name()] = remoteStat(fi)
	}
	return out, nil
}

// Readlink returns a symlink's target.
func (s *SFTP) Readlink(p string) (string, error) {
	t, err := s.c.ReadLink(p)
	if err != nil {
		return "", s.opErr("readlink", p, err)
	}
	return t, nil
}

// Attrs are what SetAttrs and Put give an object. SFTP SETSTAT follows
// symlinks: never use them on one.
type Attrs struct {
	SetOwner bool
	UID, GID uint32
	SetMode  bool
	Mode     fs.FileMode // permission bits incl. setuid/setgid/sticky (fs.ModeSetuid …)
	SetMtime bool
	MtimeSec int64
}

// SetAttrs sets owner, then mode (chown clears setuid bits), then times.
func (s *SFTP) SetAttrs(p string, a Attrs) error {
	if a.SetOwner {
		if err := s.c.Chown(p, int(a.UID), int(a.GID)); err != nil {
			return s.opErr("chown", p, err)
		}
	}
	if a.SetMode {
		if err := s.c.Chmod(p, a.Mode); err != nil {
			return s.opErr("chmod", p, err)
		}
	}
	if a.SetMtime {
		t := time.Unix(a.MtimeSec, 0)
		if err := s.c.Chtimes(p, t, t); err != nil {
			return s.opErr("set mtime of", p, err)
		}
	}
	return nil
}

// Mkdir creates one directory (its parent must exist).
func (s *SFTP) Mkdir(p string) error {
	if err := s.c.Mkdir(p); err != nil {
		return s.opErr("mkdir", p, err)
	}
	return nil
}

// Remove unlinks a file or symlink (a symlink itself, never its target).
func (s *SFTP) Remove(p string) error {
	if err := s.removeFile(p); err != nil {
		return s.opErr("remove", p, err)
	}
	return nil
}

// removeFile refuses a directory: pkg/sftp's Remove falls back to RMDIR
// on some errors, and a directory is never removed as a file.
func (s *SFTP) removeFile(p string) error {
	f, err := s.c.Lstat(p)
	if err != nil {
		return err
	}
	if f.IsDir() {
		return syscall.EISDIR
	}
	return s.c.Remove(p)
}

// Rmdir removes an empty directory; it never removes anything inside.
func (s *SFTP) Rmdir(p string) error {
	if err := s.c.RemoveDirectory(p); err != nil {
		return s.opErr("remove directory", p, err)
	}
	return nil
}

// Rename replaces newp by oldp atomically (posix-rename@openssh.com).
func (s *SFTP) Rename(oldp, newp string) error {
	if err := s.c.PosixRename(oldp, newp); err != nil {
		return s.fail("rename "+oldp+" to "+newp, err)
	}
	return nil
}

// Link makes newp another name of oldp (hardlink@openssh.com).
func (s *SFTP) Link(oldp, newp string) error {
	if !s.hardlink {
		return fmt.Errorf("hardlink %s on %s: the server lacks hardlink@openssh.com", newp, s.peer)
	}
	if err := s.c.Link(oldp, newp); err != nil {
		return s.fail("hardlink "+newp+" to "+oldp, err)
	}
	return nil
}

// Open opens a remote file for reading.
func (s *SFTP) Open(p string) (io.ReadCloser, error) {
	f, err := s.c.Open(p)
	if err != nil {
		return nil, s.opErr("open", p, err)
	}
	return f, nil
}

// tempName is a fresh name inside a staging dir: random, so that names of
// any length fit.
func tempName() string {
	var b [8]byte
	rand.Read(b[:])
	return "t" + hex.EncodeToString(b[:])
}

// Staging returns the staging directory of dir, creating it (mode 0700)
// on first use in this session. A leftover one from a killed run is
// cleared first.
func (s *SFTP) Staging(dir string) (string, error) {
	p := path.Join(dir, StagingName)
	s.mu.Lock()
	st, ok := s.staging[dir]
	if !ok {
		st = &staging{ready: make(chan struct{})}
		s.staging[dir] = st
	}
	s.mu.Unlock()
	if ok {
		<-st.ready
		return p, st.err
	}
	st.err = s.makeStaging(p)
	close(st.ready)
	return p, st.err
}

func (s *SFTP) makeStaging(p string) error {
	err := s.c.Mkdir(p)
	if err != nil {
		if cerr := s.clearStaging(p); cerr != nil {
			return fmt.Errorf("create staging directory %s on %s: %w (and clearing a leftover one: %v)", p, s.peer, err, cerr)
		}
		if err = s.c.Mkdir(p); err != nil {
			return s.opErr("create staging directory", p, err)
		}
	}
	if err := s.c.Chmod(p, 0o700); err != nil {
		return s.opErr("chmod staging directory", p, err)
	}
	fi, err := s.c.Lstat(p)
	if err != nil {
		return s.opErr("lstat staging directory", p, err)
	}
	if !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		return fmt.Errorf("staging directory %s on %s is %s after mkdir and chmod 0700: someone swapped it; nothing written there", p, s.peer, fi.Mode())
	}
	return nil
}

// clearStaging removes a leftover staging dir and the temp files in it;
// a symlink there is unlinked, never followed.
func (s *SFTP) clearStaging(p string) error {
	fi, err := s.c.Lstat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return s.c.Remove(p)
	}
	fis, err := s.c.ReadDir(p)
	if err != nil {
		return err
	}
	for _, e := range fis {
		if e.IsDir() {
			return fmt.Errorf("it holds a directory %s: remove it by hand", e.Name())
		}
		if err := s.c.Remove(path.Join(p, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return s.c.RemoveDirectory(p)
}

// ClearLeftover removes a staging directory a killed run left in dir.
func (s *SFTP) ClearLeftover(dir string) error {
	p := path.Join(dir, StagingName)
	if err := s.clearStaging(p); err != nil {
		return s.opErr("clear leftover staging directory", p, err)
	}
	return nil
}

// DropStaging removes every staging dir this session made (they are empty
// once every temp file was renamed or removed). It returns the target
// directories whose staging dir was removed: their mtimes moved.
func (s *SFTP) DropStaging() ([]string, error) {
	s.mu.Lock()
	dirs := make([]string, 0, len(s.staging))
	for d, st := range s.staging {
		<-st.ready
		if st.err == nil {
			dirs = append(dirs, d)
		}
	}
	s.staging = map[string]*staging{}
	s.mu.Unlock()
	var errs []error
	var done []string
	for _, d := range dirs {
		p := path.Join(d, StagingName)
		if err := s.clearStaging(p); err != nil {
			errs = append(errs, s.opErr("remove staging directory", p, err))
			continue
		}
		done = append(done, d)
	}
	sort.Strings(done)
	return done, errors.Join(errs...)
}

// Put writes src into a new temp file in dir's staging directory, sets
// attrs on it (owner first, mtime last) and returns its path; the caller
// renames it into place or calls Discard. When the server offers
// fsync@openssh.com and sync is set, the data is flushed before return.
func (s *SFTP) Put(dir string, src io.Reader, a Attrs, sync bool) (tmp string, n int64, err error) {
	sd, err := s.Staging(dir)
	if err != nil {
		return "", 0, err
	}
	tmp = path.Join(sd, tempName())
	f, err := s.c.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return "", 0, s.opErr("create temp file", tmp, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			s.c.Remove(tmp)
			tmp = ""
		}
	}()
	if n, err = f.ReadFrom(src); err != nil {
		return "", n, s.opErr("write", tmp, err)
	}
	if a.SetOwner {
		if err = f.Chown(int(a.UID), int(a.GID)); err != nil {
			return "", n, s.opErr("chown", tmp, err)
		}
	}
	if a.SetMode {
		if err = f.Chmod(a.Mode); err != nil {
			return "", n, s.opErr("chmod", tmp, err)
		}
	}
	if sync && s.fsync {
		if err = f.Sync(); err != nil {
			return "", n, s.opErr("fsync", tmp, err)
		}
	}
	if err = f.Close(); err != nil {
		return "", n, s.opErr("close", tmp, err)
	}
	if a.SetMtime {
		t := time.Unix(a.MtimeSec, 0)
		if err = s.c.Chtimes(tmp, t, t); err != nil {
			return "", n, s.opErr("set mtime of", tmp, err)
		}
	}
	return tmp, n, nil
}

// PutSymlink creates a symlink to target in dir's staging directory and
// returns its path, to be renamed into place.
func (s *SFTP) PutSymlink(dir, target string) (string, error) {
	sd, err := s.Staging(dir)
	if err != nil {
		return "", err
	}
	tmp := path.Join(sd, tempName())
	if err := s.c.Symlink(target, tmp); err != nil {
		return "", s.opErr("create symlink", tmp, err)
	}
	return tmp, nil
}

// PutLink makes a new name of existing in dir's staging directory and
// returns its path, to be renamed into place.
func (s *SFTP) PutLink(dir, existing string) (string, error) {
	sd, err := s.Staging(dir)
	if err != nil {
		return "", err
	}
	tmp := path.Join(sd, tempName())
	return tmp, s.Link(existing, tmp)
}

// Discard removes a temp file that will not be renamed.
func (s *SFTP) Discard(tmp string) {
	if tmp != "" {
		s.c.Remove(tmp)
	}
}

// WriteFileAtomic replaces p by data with attrs: through a staging dir in
// p's directory and posix-rename, so readers see the old file or the new
// one, and the content is never readable by others before its mode is
// set. The data is fsynced first when the server allows.
func (s *SFTP) WriteFileAtomic(p string, data []byte, a Attrs) error {
	dir := path.Dir(p)
	tmp, _, err := s.Put(dir, bytes.NewReader(data), a, true)
	if err == nil {
		if err = s.Rename(tmp, p); err != nil {
			s.Discard(tmp)
		}
	}
	if derr := s.dropStaging(dir); err == nil {
		err = derr
	}
	return err
}

// dropStaging removes dir's staging directory, if this session made one.
func (s *SFTP) dropStaging(dir string) error {
	s.mu.Lock()
	_, ok := s.staging[dir]
	delete(s.staging, dir)
	s.mu.Unlock()
	if !ok {
		return nil
	}
	p := path.Join(dir, StagingName)
	if err := s.clearStaging(p); err != nil {
		return s.opErr("remove staging directory", p, err)
	}
	return nil
}

// ReadFile reads a whole remote file of at most max bytes.
func (s *SFTP) ReadFile(p string, max int64) ([]byte, error) {
	f, err := s.c.Open(p)
	if err != nil {
		return nil, s.opErr("open", p, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, s.opErr("read", p, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("read %s on %s: larger than %d bytes", p, s.peer, max)
	}
	return data, nil
}

// RealPath asks the server to resolve p (e.g. "." is the login's home).
func (s *SFTP) RealPath(p string) (string, error) {
	r, err := s.c.RealPath(p)
	if err != nil {
		return "", s.opErr("resolve", p, err)
	}
	return r, nil
}

func (s *SFTP) opErr(op, p string, err error) error { return s.fail(op+" "+p, err) }

// fail wraps err with what was done; a lost session or connection
// matches ErrUnreachable, so callers stop instead of failing item by item.
func (s *SFTP) fail(what string, err error) error {
	if s.conn != nil {
		if lost := s.conn.lostErr(); lost != nil {
			return lost
		}
	}
	if errors.Is(err, sftp.ErrSSHFxConnectionLost) {
		addr, port := s.peer, DefaultPort
		if s.conn != nil {
			addr, port = s.conn.peer.Addr, s.conn.peer.Port
		}
		return &DialError{Peer: s.peer, Addr: addr, Port: port, Op: "connection", Reason: "SFTP session lost during " + what, Err: err,
			Hint: "check sshd's log on " + s.peer + "; the sync will retry"}
	}
	return fmt.Errorf("%s on %s: %w", what, s.peer, err)
}

// IsPermission reports whether err is the server's permission denial.
func IsPermission(err error) bool { return errors.Is(err, os.ErrPermission) }
