// Package apply performs the receiver's file system operations: atomic
// writes, metadata, object types, deletions, backups and path confinement.
//
// Every operation opens the parent directory by walking from "/" with
// O_NOFOLLOW|O_DIRECTORY and then works relative to that directory handle,
// so a symlinked directory component is refused rather than followed, and a
// final symlink is never followed. Writes go to a temp file next to the
// target, are fsynced and renamed into place: a crash leaves the old object
// or the new one, never a mix.
package apply

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"ocf-csync/syncer/scan"
	"ocf-csync/syncer/state"
)

// Options configure a Target.
type Options struct {
	Ignore state.Ignore
	// Allowed is the receiver's own include set (config); nil allows all.
	Allowed func(path string, isDir bool) bool
	// TempDir is csync2's `tempdir`. Empty (preferred) writes temp files in
	// the target's directory, so the final rename never crosses a file
	// system. A TempDir on another file system than the target is not used
	// for that target, for the same reason.
	TempDir string
	Backup  Backup
	Logger  *slog.Logger
	// DeferSync skips the per-object fsyncs (about 5-10 ms each); the caller
	// must call Target.Sync at the end of a batch, before it reports the
	// batch as applied. Writes stay atomic against a killed process (old or
	// new object, never a mix). After a power loss before Sync, a replaced
	// file may be empty or partial on file systems that do not flush data
	// before a replacing rename (ext4 with auto_da_alloc does; XFS does not).
	DeferSync bool
	// CacheDir keeps the last parent directory open between calls (see
	// dircache.go). For one writer that calls Sync after every batch.
	CacheDir bool
}

// Backup configures csync2's backup-directory and backup-generations. It is
// enabled only when Dir != "" && Generations > 1, as in csync2.
type Backup struct {
	Dir         string
	Generations int
}

func (b Backup) enabled() bool { return b.Dir != "" && b.Generations > 1 }

// Target applies changes to the local file system. It is safe for
// concurrent use on different paths.
type Target struct {
	o        Options
	log      *slog.Logger
	umask    uint32
	tempOnce sync.Once

	mu      sync.Mutex
	pending map[uint64]int // DeferSync: one open directory per file system to syncfs
	dir     *sharedDir     // CacheDir: the last parent directory
}

// New returns a Target. The process umask is read once, from /proc, because
// changing it to read it would race with other goroutines creating files.
func New(o Options) *Target {
	t := &Target{o: o, log: o.Logger, umask: readUmask()}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	return t
}

var (
	// ErrHashMismatch: the written content does not have the sender's sha256.
	ErrHashMismatch = errors.New("content hash mismatch")
	// ErrRefused: the path is outside what this node lets a peer touch.
	ErrRefused = errors.New("path refused")
	// ErrNotEmpty: a directory to delete or replace still has entries.
	ErrNotEmpty = errors.New("directory not empty")
)

// RefusedError says why a path was refused. errors.Is(err, ErrRefused) holds.
type RefusedError struct {
	Path   string
	Reason string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("refused %q: %s", e.Path, e.Reason)
}

// Is makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

func refused(path, format string, a ...any) error {
	return &RefusedError{Path: path, Reason: fmt.Sprintf(format, a...)}
}

// validate checks the syntax: absolute, clean, no NUL, not "/".
func validate(path string) error {
	switch {
	case strings.IndexByte(path, 0) >= 0:
		return refused(path, "path contains a NUL byte")
	case !strings.HasPrefix(path, "/"):
		return refused(path, "path is not absolute")
	case path == "/":
		return refused(path, "the root directory itself cannot be synced")
	}
	for _, c := range strings.Split(path[1:], "/") {
		switch c {
		case "..":
			return refused(path, "path escapes with ..")
		case ".":
			return refused(path, "path has a . component")
		case "":
			return refused(path, "path has an empty component (// or a trailing /)")
		}
	}
	return nil
}

func (t *Target) allowed(path string, isDir bool) error {
	if t.o.Allowed != nil && !t.o.Allowed(path, isDir) {
		return refused(path, "not in this node's include set")
	}
	return nil
}

// Check reports whether a peer may touch path: it must be absolute and clean,
// in the include set, and no existing directory component may be a symlink.
// Missing parents are fine (MkdirParents creates them). The error is a
// *RefusedError, or an I/O error from walking the parents.
func (t *Target) Check(path string) error {
	if err := validate(path); err != nil {
		return err
	}
	dir, base := filepath.Split(path)
	d, missing, err := t.openDir(path, filepath.Clean(dir), true)
	if err != nil {
		return err
	}
	defer d.close()
	isDir := false
	if !missing {
		var st unix.Stat_t
		if err := unix.Fstatat(d.fd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
			isDir = st.Mode&unix.S_IFMT == unix.S_IFDIR
		}
	}
	return t.allowed(path, isDir)
}

// dirHandle is an open directory (O_RDONLY, usable for fsync and *at calls).
type dirHandle struct {
	fd    int
	path  string
	share *sharedDir // borrowed from or given to Target's cache
}

func (d *dirHandle) close() {
	if d != nil && d.fd >= 0 {
		if d.share != nil {
			d.share.release()
		} else {
			unix.Close(d.fd)
		}
		d.fd = -1
	}
}

// walk opens dir (absolute, clean) without following a symlink in any
// component. orig is the path being checked, for error messages. With
// tolerateMissing a missing component stops the walk and returns the
// deepest existing directory with missing=true.
//
// One openat2(RESOLVE_NO_SYMLINKS) does it when the whole path exists: the
// kernel refuses a symlink anywhere in it, the rule walkComponents applies
// one component at a time (14 syscalls for a path 6 deep instead of 2).
// Anything else (a missing or non-directory component, a symlink, a kernel
// without openat2) takes the component walk, which says what is wrong.
func walk(orig, dir string, tolerateMissing bool) (d *dirHandle, missing bool, err error) {
	if fd, ok := openNoSymlinks(dir); ok {
		return &dirHandle{fd: fd, path: dir}, false, nil
	}
	return walkComponents(orig, dir, tolerateMissing)
}

// noOpenat2 is set once openat2 turned out to be unavailable (ENOSYS on
// kernels before 5.6, EPERM under some seccomp filters).
var noOpenat2 atomic.Bool

// openNoSymlinks opens dir for reading (so it can be fsynced) in one
// syscall that fails if any component is a symlink.
func openNoSymlinks(dir string) (int, bool) {
	if noOpenat2.Load() {
		return -1, false
	}
	fd, err := unix.Openat2(unix.AT_FDCWD, dir, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	switch err {
	case nil:
		return fd, true
	case unix.ENOSYS, unix.EPERM:
		noOpenat2.Store(true)
	}
	return -1, false
}

// walkComponents is walk one component at a time with O_NOFOLLOW.
func walkComponents(orig, dir string, tolerateMissing bool) (d *dirHandle, missing bool, err error) {
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, false, fmt.Errorf("open /: %w", err)
	}
	cur := "/"
	if dir != "/" {
		for _, c := range strings.Split(dir[1:], "/") {
			next := filepath.Join(cur, c)
			nfd, err := unix.Openat(fd, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				var st unix.Stat_t
				serr := unix.Fstatat(fd, c, &st, unix.AT_SYMLINK_NOFOLLOW)
				switch {
				case serr == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK:
					unix.Close(fd)
					return nil, false, refused(orig, "parent %s is a symlink", next)
				case err == unix.ENOENT && tolerateMissing:
					missing = true
				case err == unix.ENOENT:
					unix.Close(fd)
					return nil, false, fmt.Errorf("parent directory %s of %s does not exist: %w", next, orig, err)
				case err == unix.ENOTDIR:
					unix.Close(fd)
					return nil, false, fmt.Errorf("parent %s of %s is not a directory (a %s); delete it first: %w",
						next, orig, kindOfMode(st.Mode), err)
				default:
					unix.Close(fd)
					return nil, false, fmt.Errorf("open directory %s: %w", next, err)
				}
				break
			}
			unix.Close(fd)
			fd, cur = nfd, next
		}
	}
	// Re-open the O_PATH handle for real so it can be fsynced.
	rfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	unix.Close(fd)
	if err != nil {
		return nil, false, fmt.Errorf("open directory %s: %w", cur, err)
	}
	return &dirHandle{fd: rfd, path: cur}, missing, nil
}

// Lstat describes path without following it, through the directory cache:
// ok=false if it (or its parent) is absent. A parent that is a symlink is
// an error, as for every other method.
func (t *Target) Lstat(path string) (rec state.FileRecord, ok bool, err error) {
	d, base, err := t.parent(path)
	if errors.Is(err, unix.ENOENT) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, err
	}
	defer d.close()
	rec, _, ok, err = lstatAt(d, base)
	return rec, ok, err
}

// lstatAt describes name in d without following it; ok=false if absent.
func lstatAt(d *dirHandle, name string) (rec state.FileRecord, st unix.Stat_t, ok bool, err error) {
	if err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if err == unix.ENOENT {
			return rec, st, false, nil
		}
		return rec, st, false, fmt.Errorf("lstat %s: %w", filepath.Join(d.path, name), err)
	}
	rec = scan.FromStat(&st)
	if rec.Kind == state.KindSymlink {
		if rec.Target, err = readlinkAt(d.fd, name); err != nil {
			return rec, st, false, fmt.Errorf("readlink %s: %w", filepath.Join(d.path, name), err)
		}
	}
	return rec, st, true, nil
}

func readlinkAt(dfd int, name string) (string, error) {
	for n := 256; ; n *= 2 {
		buf := make([]byte, n)
		l, err := unix.Readlinkat(dfd, name, buf)
		if err != nil {
			return "", err
		}
		if l < n {
			return string(buf[:l]), nil
		}
	}
}

func kindOfMode(m uint32) state.Kind {
	var st unix.Stat_t
	st.Mode = m
	return scan.FromStat(&st).Kind
}

// readUmask reads the umask without changing it (Linux >= 4.7).
func readUmask() uint32 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 022
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Umask:"); ok {
			if m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32); err == nil {
				return uint32(m)
			}
		}
	}
	return 022
}

// syncDir makes d's entries durable: an fsync now, or with DeferSync a note
// to syncfs d's file system in Sync.
func (t *Target) syncDir(d *dirHandle) error {
	if !t.o.DeferSync {
		if err := unix.Fsync(d.fd); err != nil {
			return fmt.Errorf("fsync directory %s: %w", d.path, err)
		}
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(d.fd, &st); err != nil {
		return fmt.Errorf("stat %s: %w", d.path, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.pending[st.Dev]; ok {
		return nil
	}
	fd, err := unix.Dup(d.fd)
	if err != nil {
		return fmt.Errorf("dup directory handle %s: %w", d.path, err)
	}
	unix.CloseOnExec(fd)
	if t.pending == nil {
		t.pending = map[uint64]int{}
	}
	t.pending[st.Dev] = fd
	return nil
}

// Sync flushes every file system written to since the last Sync (syncfs),
// making a DeferSync batch durable. Without DeferSync it has nothing to do.
func (t *Target) Sync() error {
	t.forget()
	t.mu.Lock()
	pending := t.pending
	t.pending = nil
	t.mu.Unlock()
	var errs []error
	for _, fd := range pending {
		if err := unix.Syncfs(fd); err != nil {
			errs = append(errs, fmt.Errorf("syncfs: %w", err))
		}
		unix.Close(fd)
	}
	return errors.Join(errs...)
}
