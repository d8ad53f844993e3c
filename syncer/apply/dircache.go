package apply

import (
	"path/filepath"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// The receiver handles a batch of files directory by directory. Walking
// from "/" for every call (Check, MkdirParents, the write itself) cost a
// quarter of its CPU on 100k small files, so with Options.CacheDir the
// parent directory of the last path stays open until the next Sync, the
// next directory removal, or a create that finds it gone.
//
// Confinement holds: the handle was opened without following a symlink,
// and a handle keeps naming the directory it opened. A component replaced
// by a symlink after that is not followed; it is found by the first walk
// after the cache is dropped (at the latest at the end of the batch).

// sharedDir is a cached directory handle; the cache and every borrower
// hold a reference, and the last one to let go closes it.
type sharedDir struct {
	fd   int
	path string
	refs atomic.Int32
}

func (s *sharedDir) release() {
	if s.refs.Add(-1) == 0 {
		unix.Close(s.fd)
	}
}

// borrow returns the cached handle of dir, or nil.
func (t *Target) borrow(dir string) *dirHandle {
	if !t.o.CacheDir {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.dir
	if s == nil || s.path != dir {
		return nil
	}
	s.refs.Add(1)
	return &dirHandle{fd: s.fd, path: s.path, share: s}
}

// keep makes d (just walked to) the cached directory; d stays the
// caller's to close.
func (t *Target) keep(d *dirHandle) {
	if !t.o.CacheDir || d.share != nil {
		return
	}
	s := &sharedDir{fd: d.fd, path: d.path}
	s.refs.Store(2)
	d.share = s
	t.setDir(s)
}

// forget drops the cached directory.
func (t *Target) forget() { t.setDir(nil) }

// setDir replaces the cached directory, letting go of the old one.
func (t *Target) setDir(s *sharedDir) {
	t.mu.Lock()
	old := t.dir
	t.dir = s
	t.mu.Unlock()
	if old != nil {
		old.release()
	}
}

// openDir is walk through the cache: dir (absolute, clean) from the cache,
// or walked to and cached when it exists.
func (t *Target) openDir(orig, dir string, tolerateMissing bool) (*dirHandle, bool, error) {
	if d := t.borrow(dir); d != nil {
		return d, false, nil
	}
	d, missing, err := walk(orig, dir, tolerateMissing)
	if err == nil && !missing {
		t.keep(d)
	}
	return d, missing, err
}

// parent validates path and opens its parent directory strictly (it must
// exist), through the cache. The include set is not checked here: the
// caller knows the type.
func (t *Target) parent(path string) (*dirHandle, string, error) {
	if err := validate(path); err != nil {
		return nil, "", err
	}
	dir, base := filepath.Split(path)
	d, _, err := t.openDir(path, filepath.Clean(dir), false)
	if err != nil {
		return nil, "", err
	}
	return d, base, nil
}
