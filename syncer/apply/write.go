package apply

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"ocf-csync/syncer/scan"
	"ocf-csync/syncer/state"
)

const (
	tempMark   = scan.TempMark
	tempRand   = scan.TempRand
	tempSuffix = len(tempMark) + tempRand
	nameMax    = 255
	randChars  = "abcdefghijklmnopqrstuvwxyz0123456789"
	// TempMinAge is how old a temp file must be before CleanTemps removes
	// it, so a write in progress in another process is left alone.
	TempMinAge = time.Minute
)

// tempName returns ".<name>.ocf-csync.XXXXXX", shortening name so the
// result fits NAME_MAX.
func tempName(base string) string {
	if max := nameMax - 1 - tempSuffix; len(base) > max {
		base = base[:max]
	}
	var r [tempRand]byte
	rand.Read(r[:])
	for i := range r {
		r[i] = randChars[int(r[i])%len(randChars)]
	}
	return "." + base + tempMark + string(r[:])
}

// IsTemp reports whether a directory entry name is one of our temp files.
func IsTemp(name string) bool { return scan.IsTempName(name) }

// createTemp makes a new temp file for base in d, mode 0600.
func createTemp(d *dirHandle, base string) (*os.File, string, error) {
	for range 100 {
		name := tempName(base)
		fd, err := unix.Openat(d.fd, name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0600)
		if err == unix.EEXIST {
			continue
		}
		if err != nil {
			return nil, "", fmt.Errorf("create temp file in %s: %w", d.path, err)
		}
		return os.NewFile(uintptr(fd), filepath.Join(d.path, name)), name, nil
	}
	return nil, "", fmt.Errorf("create temp file in %s: too many name collisions", d.path)
}

// tempDir returns where the temp file for a target in d goes: TempDir if set
// and on the same file system as d, else d itself. own reports whether the
// returned handle must be closed by the caller.
func (t *Target) tempDir(d *dirHandle) (td *dirHandle, own bool) {
	if t.o.TempDir == "" {
		return d, false
	}
	fd, err := unix.Open(t.o.TempDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.log.Warn("tempdir unusable; writing temp files next to the targets", "tempdir", t.o.TempDir, "err", err)
		return d, false
	}
	var a, b unix.Stat_t
	if unix.Fstat(fd, &a) != nil || unix.Fstat(d.fd, &b) != nil || a.Dev != b.Dev {
		unix.Close(fd)
		t.tempOnce.Do(func() {
			t.log.Info("tempdir is on another file system than a target; writing that temp file next to the target so the rename stays atomic",
				"tempdir", t.o.TempDir, "dir", d.path)
		})
		return d, false
	}
	return &dirHandle{fd: fd, path: t.o.TempDir}, true
}

// WriteFile atomically replaces path with the content fill writes, which
// must hash to rec.Hash (else ErrHashMismatch). Owner, mode and mtime are set
// on the temp file before it is renamed into place, so the new file never
// shows up with wrong permissions. The old file, if regular, is backed up
// first. An old empty directory is removed; a non-empty one is an error.
// On any error the old object is left untouched and no temp file remains.
func (t *Target) WriteFile(path string, rec state.FileRecord, fill func(w io.Writer) error) error {
	return t.WriteFileExpect(path, rec, fill, func() state.Hash { return rec.Hash })
}

// WriteFileExpect is WriteFile for content whose hash is known only once
// fill has run (a stream that ends with the sender's sha256): expect is
// called after fill and its result replaces rec.Hash.
func (t *Target) WriteFileExpect(path string, rec state.FileRecord, fill func(w io.Writer) error, expect func() state.Hash) error {
	d, base, old, err := t.openReplace(path)
	if err != nil {
		return err
	}
	defer func() { d.close() }()
	td, own := t.tempDir(d)
	f, tmp, err := createTemp(td, base)
	if err != nil && d.share != nil && !own && errors.Is(err, unix.ENOENT) {
		// The cached directory was removed since: walk to it again.
		t.forget()
		d.close()
		if err := t.MkdirParents(path); err != nil {
			return err
		}
		if d, base, old, err = t.openReplace(path); err != nil {
			return err
		}
		td = d
		f, tmp, err = createTemp(td, base)
	}
	if own {
		defer td.close()
	}
	if err != nil {
		return writeErr(path, err)
	}
	done := false
	defer func() {
		if !done {
			f.Close()
			unix.Unlinkat(td.fd, tmp, 0)
		}
	}()

	h := sha256.New()
	bw := writerPool.Get().(*bufio.Writer)
	bw.Reset(f)
	defer func() { bw.Reset(nil); writerPool.Put(bw) }()
	cw := &countWriter{f: f, bw: bw, h: h}
	if rec.Size >= asyncHashMin {
		// A big file is hashed on another core while it is written.
		cw.hq = newHashQueue(h)
		defer cw.hq.finish()
	}
	if err := fill(cw); err != nil {
		return writeErr(path, err)
	}
	if err := bw.Flush(); err != nil {
		return writeErr(path, err)
	}
	var got state.Hash
	if cw.hq != nil {
		cw.hq.finish()
	}
	h.Sum(got[:0])
	rec.Hash = expect()
	if got != rec.Hash {
		return fmt.Errorf("write %s: %w: got %s (%d bytes), want %s (%d bytes); the old file is kept",
			path, ErrHashMismatch, short(got), cw.n, short(rec.Hash), rec.Size)
	}
	if err := metaFd(int(f.Fd()), f.Name(), t.want(rec, old), rec.MtimeNs, true); err != nil {
		return writeErr(path, err)
	}
	if !t.o.DeferSync {
		if err := f.Sync(); err != nil {
			return writeErr(path, fmt.Errorf("fsync temp file: %w", err))
		}
	}
	if err := f.Close(); err != nil {
		return writeErr(path, fmt.Errorf("close temp file: %w", err))
	}
	if beforeRename != nil {
		beforeRename()
	}
	if err := t.install(path, d, base, td, tmp, old); err != nil {
		return err
	}
	done = true
	return nil
}

// writeErr says what failed writing path; a full file system says so
// plainly, without the temp file's name (it is gone already).
func writeErr(path string, err error) error {
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		var pe *fs.PathError
		if errors.As(err, &pe) && IsTemp(filepath.Base(pe.Path)) {
			err = pe.Err
		}
		return fmt.Errorf("write %s: %w: the file system is full; the old version is kept, nothing else changed", path, err)
	}
	return fmt.Errorf("write %s: %w", path, err)
}

// writerPool reuses write buffers: a new 256 KiB buffer per file costs more
// than writing a small file.
var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 256<<10) }}

// beforeRename is a test hook: it runs after the temp file is complete and
// synced, just before it replaces the target.
var beforeRename func()

// countWriter writes the temp file through bw and hashes what it writes,
// with h or, for a big file, on the hq goroutine.
type countWriter struct {
	n  int64
	f  *os.File
	bw *bufio.Writer
	h  hash.Hash
	hq *hashQueue // a big file's: see also startWriteback
	// written is how far the kernel was asked to start writeback.
	written int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.bw.Write(p)
	c.n += int64(n)
	if c.hq == nil {
		c.h.Write(p[:n])
		return n, err
	}
	c.hq.write(p[:n])
	c.startWriteback()
	return n, err
}

func short(h state.Hash) string { return hex.EncodeToString(h[:6]) }

// install renames tmp (in td) over base in d, then fsyncs d. A regular old
// object is backed up first; an old directory is removed if empty (rename
// cannot replace a directory with a non-directory).
func (t *Target) install(path string, d *dirHandle, base string, td *dirHandle, tmp string, old *state.FileRecord) error {
	if old != nil {
		switch old.Kind {
		case state.KindReg:
			if err := t.backup(d, base, path); err != nil {
				return err
			}
		case state.KindDir:
			if err := t.rmdir(d, base, path); err != nil {
				return err
			}
		}
	}
	if err := unix.Renameat(td.fd, tmp, d.fd, base); err != nil {
		return fmt.Errorf("rename %s into place as %s: %w", filepath.Join(td.path, tmp), path, err)
	}
	return t.syncDir(d)
}

// OpenBasis opens the current regular file at path for reading, never
// following a symlink, for the delta signature and patch.
func (t *Target) OpenBasis(path string) (*os.File, error) {
	d, base, err := t.parent(path)
	if err != nil {
		return nil, err
	}
	defer d.close()
	if err := t.allowed(path, false); err != nil {
		return nil, err
	}
	fd, err := unix.Openat(d.fd, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open basis %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open basis %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("open basis %s: not a regular file (%s)", path, fi.Mode().Type())
	}
	// O_NONBLOCK only guarded against opening a fifo; clear it.
	if err := unix.SetNonblock(fd, false); err != nil {
		f.Close()
		return nil, fmt.Errorf("open basis %s: %w", path, err)
	}
	return f, nil
}

// Current describes what is at path now (lstat plus sha256 for a regular
// file); ok=false if nothing is there. A missing parent counts as absent.
func (t *Target) Current(path string) (rec state.FileRecord, ok bool, err error) {
	if err := validate(path); err != nil {
		return rec, false, err
	}
	dir, base := filepath.Split(path)
	d, missing, err := walk(path, filepath.Clean(dir), true)
	if err != nil {
		return rec, false, err
	}
	defer d.close()
	if missing {
		return rec, false, t.allowed(path, false)
	}
	rec, _, ok, err = lstatAt(d, base)
	if err != nil {
		return rec, false, err
	}
	if err := t.allowed(path, ok && rec.Kind == state.KindDir); err != nil {
		return state.FileRecord{}, false, err
	}
	if !ok || rec.Kind != state.KindReg {
		return rec, ok, nil
	}
	fd, err := unix.Openat(d.fd, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return rec, false, fmt.Errorf("open %s to hash it: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	// Describe the inode that was hashed, not whatever the name held before.
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return rec, false, fmt.Errorf("stat %s: %w", path, err)
	}
	rec = scan.FromStat(&st)
	if rec.Kind != state.KindReg {
		return rec, false, fmt.Errorf("%s changed type while being read; retry", path)
	}
	if rec.Hash, err = scan.HashReader(f); err != nil {
		return rec, false, fmt.Errorf("hash %s: %w", path, err)
	}
	return rec, true, nil
}

// CleanTemps removes our temp files in dir (not recursive) whose ctime is at
// least TempMinAge old: leftovers of a process killed mid-write. It returns
// how many it removed.
func (t *Target) CleanTemps(dir string) (int, error) {
	return t.CleanTempsOlder(dir, TempMinAge)
}

// CleanTempsOlder is CleanTemps with an explicit minimum age; 0 removes every
// temp file (only safe when no other writer can be active in dir). ctime is
// used because WriteFile sets the temp's mtime to the sender's.
func (t *Target) CleanTempsOlder(dir string, minAge time.Duration) (int, error) {
	return t.CleanTempsBefore(dir, time.Now().Add(-minAge))
}

// CleanTempsBefore removes our temp files in dir (not recursive) whose ctime
// is before cutoff: with cutoff the time this process took the state db,
// the leftovers of an earlier process, whatever their age.
func (t *Target) CleanTempsBefore(dir string, cutoff time.Time) (int, error) {
	if dir != "/" {
		if err := validate(dir); err != nil {
			return 0, err
		}
	}
	d, _, err := walk(dir, dir, false)
	if err != nil {
		return 0, err
	}
	defer d.close()
	names, err := readNames(d)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, name := range names {
		if !IsTemp(name) {
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			continue
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR || !time.Unix(st.Ctim.Unix()).Before(cutoff) {
			continue
		}
		if err := unix.Unlinkat(d.fd, name, 0); err != nil && err != unix.ENOENT {
			errs = append(errs, fmt.Errorf("remove leftover temp file %s: %w", filepath.Join(dir, name), err))
			continue
		}
		t.log.Info("removed leftover temp file", "path", filepath.Join(dir, name))
		n++
	}
	return n, errors.Join(errs...)
}

// readNames lists the entries of d.
func readNames(d *dirHandle) ([]string, error) {
	fd, err := unix.Openat(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open directory %s: %w", d.path, err)
	}
	f := os.NewFile(uintptr(fd), d.path)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("read directory %s: %w", d.path, err)
	}
	return names, nil
}
