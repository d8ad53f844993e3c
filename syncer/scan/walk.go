package scan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"sync"

	"golang.org/x/sys/unix"

	"ocf-csync/syncer/state"
)

// openDir and readDirent are the walk's directory reads; tests replace
// them to inject EIO, ESTALE and EACCES.
var (
	openDir = func(path string) (int, error) {
		return unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	readDirent = unix.ReadDirent
)

// dirJob is a directory to compare. dev/ino are from the lstat that found
// it, so a directory swapped for another between lstat and open is noticed.
type dirJob struct {
	path     string
	dev, ino uint64
}

// dirQueue is a LIFO of directories shared by the workers. LIFO keeps the
// walk depth-first, so the queue stays about as small as the tree is deep
// times its fan-out, never the whole tree.
type dirQueue struct {
	mu      sync.Mutex
	cond    sync.Cond
	jobs    []dirJob
	pending int // queued or in progress
	stopped bool
}

func (q *dirQueue) push(j dirJob) {
	q.mu.Lock()
	q.jobs = append(q.jobs, j)
	q.pending++
	q.mu.Unlock()
	q.cond.Signal()
}

func (q *dirQueue) pop() (dirJob, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.jobs) == 0 && q.pending > 0 && !q.stopped {
		q.cond.Wait()
	}
	if q.stopped || len(q.jobs) == 0 {
		return dirJob{}, false
	}
	j := q.jobs[len(q.jobs)-1]
	q.jobs[len(q.jobs)-1] = dirJob{}
	q.jobs = q.jobs[:len(q.jobs)-1]
	return j, true
}

func (q *dirQueue) done() {
	q.mu.Lock()
	q.pending--
	if q.pending == 0 {
		q.cond.Broadcast()
	}
	q.mu.Unlock()
}

func (q *dirQueue) abort() {
	q.mu.Lock()
	q.stopped = true
	q.jobs = nil
	q.mu.Unlock()
	q.cond.Broadcast()
}

// start handles one path given to Check: it compares the path itself and,
// for a recursive check of a directory, queues it for the walk. It reports
// whether the records below p must be swept after the walk because the walk
// will not account for them (p vanished, is no directory or not entered).
func (s *scanner[B]) start(p string, recursive bool) bool {
	old, inDB, err := s.st.GetFile(p)
	if err != nil {
		s.fatal(fmt.Errorf("read state of %q: %w", p, err))
		return false
	}
	var oldp *state.FileRecord
	if inDB {
		oldp = &old
		s.accounted.Add(1)
	}
	var sb unix.Stat_t
	if err := unix.Lstat(p, &sb); err != nil {
		if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTDIR) {
			s.protect(p)
			s.fail(&os.PathError{Op: "lstat", Path: p, Err: err})
			return false
		}
		// Gone: the record and, recursively, everything below it.
		isDir := inDB && old.Kind == state.KindDir
		synced, descend := s.sel.Match(p, isDir)
		if !synced && !descend && !inDB {
			s.fail(&NotIncludedError{Path: p})
			return false
		}
		if inDB {
			s.gone(p)
			if !recursive {
				s.purge(p, oldp)
			}
		}
		return recursive
	}
	s.o.Tally.Scanned.Add(1)
	cur := FromStat(&sb)
	if cur.Kind == state.KindSymlink {
		if cur.Target, err = readlinkAt(unix.AT_FDCWD, p, sb.Size); err != nil {
			s.protect(p)
			s.fail(&os.PathError{Op: "readlink", Path: p, Err: err})
			return false
		}
	}
	isDir := cur.Kind == state.KindDir
	synced, descend := s.sel.Match(p, isDir)
	walk := recursive && isDir && descend
	if !synced && !walk {
		s.fail(&NotIncludedError{Path: p})
		return false
	}
	if synced {
		s.update(p, oldp, &cur, func() (state.Hash, error) { return hashAt(unix.AT_FDCWD, p) })
	} else if inDB {
		s.gone(p)
	}
	if !recursive && !isDir {
		s.purge(p, oldp)
	}
	if walk {
		s.q.push(dirJob{path: p, dev: cur.Dev, ino: cur.Ino})
	}
	return recursive && (!walk || !synced)
}

// purge deletes the records below p when its old record was a directory
// that the walk will not enter: it vanished, changed type or is excluded.
func (s *scanner[B]) purge(p string, old *state.FileRecord) {
	if old == nil || old.Kind != state.KindDir {
		return
	}
	err := s.st.WalkFiles(p, func(q string, _ *state.FileRecord) error {
		if q == p {
			return nil
		}
		s.accounted.Add(1)
		s.gone(q)
		return s.fatalErr()
	})
	if err != nil {
		s.fatal(fmt.Errorf("list state below %q: %w", p, err))
		return
	}
	s.protect(p) // a sweep has nothing left to do there
}

// run processes the queued directories with the worker pool until the
// queue drains or the scan is aborted.
func (s *scanner[B]) run() {
	stop := context.AfterFunc(s.ctx, func() { s.fatal(s.ctx.Err()) })
	defer stop()
	var wg sync.WaitGroup
	for range s.workers {
		wg.Go(func() {
			w := worker[B]{s: s, buf: make([]byte, 32<<10)}
			for {
				j, ok := s.q.pop()
				if !ok {
					return
				}
				w.dir(j)
				s.q.done()
			}
		})
	}
	wg.Wait()
}

// worker holds one goroutine's reusable buffers.
type worker[B Batch] struct {
	s     *scanner[B]
	buf   []byte
	names []string
	db    []dbEntry
}

type dbEntry struct {
	name string
	rec  state.FileRecord
}

// dir compares one directory: it reads the names on disk and the DB's
// records of the direct children, merges the two sorted lists and handles
// each name. Subdirectories to enter are queued.
func (w *worker[B]) dir(j dirJob) {
	s := w.s
	if err := s.ctx.Err(); err != nil {
		s.fatal(err) // the AfterFunc in run may not have run yet
		return
	}
	s.markSeen(j.path)
	fd, err := openDir(j.path)
	if err != nil {
		s.protect(j.path)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			// Replaced since its parent was read; the next scan sees the new object.
			s.fail(fmt.Errorf("scan %q: directory changed during the scan; it is checked again next time", j.path))
			return
		}
		s.fail(&os.PathError{Op: "open", Path: j.path, Err: err})
		return
	}
	defer unix.Close(fd)
	var sb unix.Stat_t
	if err := unix.Fstat(fd, &sb); err != nil || uint64(sb.Dev) != j.dev || sb.Ino != j.ino {
		s.protect(j.path)
		s.fail(fmt.Errorf("scan %q: directory changed during the scan; it is checked again next time", j.path))
		return
	}
	w.names = w.names[:0]
	for {
		n, err := readDirent(fd, w.buf)
		if err != nil {
			s.protect(j.path)
			s.fail(&os.PathError{Op: "readdir", Path: j.path, Err: err})
			return
		}
		if n <= 0 {
			break
		}
		_, _, w.names = unix.ParseDirent(w.buf[:n], -1, w.names)
		w.names = slices.DeleteFunc(w.names, IsTempName)
	}
	sort.Strings(w.names)

	w.db = w.db[:0]
	err = s.st.ListDir(j.path, func(name string, rec *state.FileRecord) error {
		w.db = append(w.db, dbEntry{name: name, rec: *rec})
		return nil
	})
	if err != nil {
		s.fatal(fmt.Errorf("read state of directory %q: %w", j.path, err))
		return
	}
	s.accounted.Add(int64(len(w.db)))
	if !sort.SliceIsSorted(w.db, func(a, b int) bool { return w.db[a].name < w.db[b].name }) {
		sort.Slice(w.db, func(a, b int) bool { return w.db[a].name < w.db[b].name })
	}

	names, db := w.names, w.db
	for len(names) > 0 || len(db) > 0 {
		if s.fdone.Load() {
			break
		}
		switch {
		case len(db) == 0 || (len(names) > 0 && names[0] < db[0].name):
			w.entry(fd, j.path, j.dev, names[0], nil)
			names = names[1:]
		case len(names) == 0 || db[0].name < names[0]:
			p := joinPath(j.path, db[0].name)
			s.gone(p)
			s.purge(p, &db[0].rec)
			db = db[1:]
		default:
			w.entry(fd, j.path, j.dev, names[0], &db[0].rec)
			names, db = names[1:], db[1:]
		}
	}
	clear(w.names)
	clear(w.db)
}

// entry lstats one name of the open directory fd (on device dirDev) and
// handles it.
func (w *worker[B]) entry(fd int, dir string, dirDev uint64, name string, old *state.FileRecord) {
	s := w.s
	p := joinPath(dir, name)
	var sb unix.Stat_t
	if err := fstatat(fd, name, &sb); err != nil {
		if errors.Is(err, unix.ENOENT) {
			if old != nil {
				s.gone(p)
				s.purge(p, old)
			}
			return
		}
		s.protect(p)
		s.fail(&os.PathError{Op: "lstat", Path: p, Err: err})
		return
	}
	s.o.Tally.Scanned.Add(1)
	cur := FromStat(&sb)
	if cur.Kind == state.KindSymlink {
		t, err := readlinkAt(fd, name, sb.Size)
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				if old != nil {
					s.gone(p)
					s.purge(p, old)
				}
				return
			}
			s.protect(p)
			s.fail(&os.PathError{Op: "readlink", Path: p, Err: err})
			return
		}
		cur.Target = t
	}
	isDir := cur.Kind == state.KindDir
	synced, descend := s.sel.Match(p, isDir)
	if isDir && descend && s.guarded(p, cur.Dev, dirDev, old) {
		return
	}
	if isDir && descend {
		s.q.push(dirJob{path: p, dev: cur.Dev, ino: cur.Ino})
		if !synced {
			s.passThrough.Store(true)
		}
	} else {
		s.purge(p, old)
	}
	if !synced {
		if old != nil {
			s.gone(p) // no longer included
		}
		return
	}
	s.update(p, old, &cur, func() (state.Hash, error) { return hashAt(fd, name) })
}

// guarded checks a directory the walk met: an include root below a start
// path, or a directory whose file system changed (see rootGuard.mount). It
// reports whether the directory was refused: then it is neither entered
// nor re-recorded, and nothing below it is swept.
func (s *scanner[B]) guarded(p string, dev, parentDev uint64, old *state.FileRecord) bool {
	if s.guard == nil {
		return false
	}
	var v *state.Refusal
	var err error
	if s.roots[p] {
		v, err = s.guard.root(p)
	} else {
		v, err = s.guard.mount(p, dev, parentDev, old)
	}
	if err != nil {
		s.protect(p)
		s.fail(fmt.Errorf("check the file system of %q: %w", p, err))
		return true
	}
	if v != nil {
		s.protect(p)
		return true
	}
	return false
}

// sweep deletes the records below base that the walk could not account
// for: their directory was not entered because it vanished, turned into
// something else or is no longer included, and it had no record of its own
// that would have led to a purge. Records outside every start path (a full
// scan sweeps "/") are no longer included. Subtrees that failed to read are
// left alone. It runs after the walk, so seen and shield are stable.
func (s *scanner[B]) sweep(base string, starts []string) error {
	n := 0
	err := s.st.WalkFiles(base, func(p string, _ *state.FileRecord) error {
		if n++; n&4095 == 0 {
			if err := s.ctx.Err(); err != nil {
				return err
			}
		}
		if s.guard != nil && s.guard.covers(p) {
			return nil // below a refused root or mount point
		}
		top := ""
		for _, r := range starts {
			if p == r {
				return nil // compared by start
			}
			if isBelow(p, r) {
				top = r
				break
			}
		}
		if top != "" {
			if _, ok := s.seen[parentOf(p)]; ok {
				return nil // compared with its directory during the walk
			}
			for a := p; len(a) > len(top); a = parentOf(a) {
				if _, ok := s.shield[a]; ok {
					return nil
				}
			}
		}
		s.gone(p)
		return s.fatalErr()
	})
	if err != nil {
		return fmt.Errorf("sweep state below %q: %w", base, err)
	}
	return nil
}

func fstatat(fd int, name string, sb *unix.Stat_t) error {
	for {
		err := unix.Fstatat(fd, name, sb, unix.AT_SYMLINK_NOFOLLOW)
		if err != unix.EINTR {
			return err
		}
	}
}

// readlinkAt reads a symlink target; size is the lstat size, a hint only
// (some file systems report 0).
func readlinkAt(fd int, name string, size int64) (string, error) {
	n := int(size) + 1
	if n < 128 {
		n = 128
	}
	for {
		buf := make([]byte, n)
		k, err := unix.Readlinkat(fd, name, buf)
		if err != nil {
			return "", err
		}
		if k < len(buf) {
			return string(buf[:k]), nil
		}
		n *= 2
	}
}

// fdReader reads a raw file descriptor without the os.File machinery.
type fdReader int

func (r fdReader) Read(b []byte) (int, error) {
	for {
		n, err := unix.Read(int(r), b)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return 0, err
		case n == 0 && len(b) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// hashAt hashes a regular file relative to the directory fd, never
// following a symlink swapped in since the lstat.
func hashAt(dirfd int, name string) (state.Hash, error) {
	flags := unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK
	fd, err := unix.Openat(dirfd, name, flags|unix.O_NOATIME, 0)
	if err == unix.EPERM {
		// O_NOATIME is refused on files we do not own unless privileged.
		fd, err = unix.Openat(dirfd, name, flags, 0)
	}
	if err != nil {
		return state.Hash{}, err
	}
	defer unix.Close(fd)
	var sb unix.Stat_t
	if err := unix.Fstat(fd, &sb); err != nil {
		return state.Hash{}, err
	}
	if sb.Mode&unix.S_IFMT != unix.S_IFREG {
		// Swapped for a fifo or device since the lstat: do not block on it.
		return state.Hash{}, fmt.Errorf("no longer a regular file: %w", unix.ENOENT)
	}
	return HashReader(fdReader(fd))
}
