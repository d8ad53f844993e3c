package scan

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"ocf-csync/syncer/state"
)

// ErrSymlinkedDir: a directory on the way to a file is a symlink (or no
// longer a directory), so the file is not the one its path named when it
// was scanned.
var ErrSymlinkedDir = errors.New("a directory on the way is a symlink or not a directory")

// Opener opens files for reading the way the sender must: every directory
// from "/" down is opened relative to its parent's fd with O_NOFOLLOW, so a
// directory a local user swapped for a symlink is refused rather than
// followed. It keeps the fds of the last directory chain, so consecutive
// files in one directory (the sender goes in path order) cost one openat
// each. Not safe for concurrent use; Close it when done.
type Opener struct {
	chain []dirFd // "/" first, then each deeper directory
}

type dirFd struct {
	path string
	fd   int
}

// Open opens the regular file at path (absolute, clean) read-only without
// following any symlink, and returns it with its fstat description.
func (o *Opener) Open(path string) (*os.File, state.FileRecord, error) {
	fd, rec, err := o.OpenFd(path)
	if err != nil {
		return nil, rec, err
	}
	// O_NONBLOCK only kept a fifo swapped in from blocking the open.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, rec, &os.PathError{Op: "fcntl", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), rec, nil
}

// OpenFd is Open for a caller that reads the file at once and closes the
// fd itself (unix.Read, unix.Close): no *os.File, so none of its fcntl
// calls and finalizer, three syscalls fewer per small file. The fd is
// O_NONBLOCK, which changes nothing for a regular file.
func (o *Opener) OpenFd(path string) (int, state.FileRecord, error) {
	if !strings.HasPrefix(path, "/") || path == "/" {
		return -1, state.FileRecord{}, fmt.Errorf("open %q: not an absolute file path", path)
	}
	i := strings.LastIndexByte(path, '/')
	dir, base := path[:i], path[i+1:]
	if dir == "" {
		dir = "/"
	}
	d, err := o.dir(dir)
	if err != nil {
		return -1, state.FileRecord{}, fmt.Errorf("open %s: %w", path, err)
	}
	fd, err := unix.Openat(d, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		if err == unix.ELOOP {
			return -1, state.FileRecord{}, fmt.Errorf("open %s: it is a symlink now", path)
		}
		return -1, state.FileRecord{}, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, state.FileRecord{}, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	rec := FromStat(&st)
	if rec.Kind != state.KindReg {
		unix.Close(fd)
		return -1, rec, fmt.Errorf("open %s: it is a %s now, not a regular file", path, rec.Kind)
	}
	return fd, rec, nil
}

// ReadFd reads from fd until buf is full or the file ends.
func ReadFd(fd int, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := unix.Read(fd, buf[n:])
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return n, err
		case k == 0:
			return n, nil
		}
		n += k
	}
	return n, nil
}

// dir returns an fd of the directory dir, reusing the cached chain.
func (o *Opener) dir(dir string) (int, error) {
	keep := len(o.chain)
	for keep > 0 && !within(dir, o.chain[keep-1].path) {
		keep--
	}
	o.truncate(keep)
	if len(o.chain) == 0 {
		fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, fmt.Errorf("open /: %w", err)
		}
		o.chain = append(o.chain, dirFd{path: "/", fd: fd})
	}
	last := o.chain[len(o.chain)-1]
	rest := strings.TrimPrefix(strings.TrimPrefix(dir, last.path), "/")
	if rest == "" {
		return last.fd, nil
	}
	for _, c := range strings.Split(rest, "/") {
		next := last.path + "/" + c
		if last.path == "/" {
			next = "/" + c
		}
		fd, err := unix.Openat(last.fd, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			if err == unix.ENOTDIR || err == unix.ELOOP {
				return -1, fmt.Errorf("%s: %w", next, ErrSymlinkedDir)
			}
			return -1, &os.PathError{Op: "open", Path: next, Err: err}
		}
		last = dirFd{path: next, fd: fd}
		o.chain = append(o.chain, last)
	}
	return last.fd, nil
}

func within(p, dir string) bool {
	return dir == "/" || p == dir || strings.HasPrefix(p, dir+"/")
}

func (o *Opener) truncate(n int) {
	for _, d := range o.chain[n:] {
		unix.Close(d.fd)
	}
	o.chain = o.chain[:n]
}

// Close releases the cached directory fds.
func (o *Opener) Close() { o.truncate(0) }
