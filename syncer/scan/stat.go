// Package scan walks the include roots, lstats every entry and records what
// changed in the state store.
package scan

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"ocf-csync/syncer/state"
)

// Lstat describes path without following a final symlink. It does not hash:
// Hash stays zero.
func Lstat(path string) (state.FileRecord, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return state.FileRecord{}, &os.PathError{Op: "lstat", Path: path, Err: err}
	}
	rec := FromStat(&st)
	if rec.Kind == state.KindSymlink {
		t, err := os.Readlink(path)
		if err != nil {
			return state.FileRecord{}, err
		}
		rec.Target = t
	}
	return rec, nil
}

// FromStat converts a raw stat result. Target and Hash are left empty.
func FromStat(st *unix.Stat_t) state.FileRecord {
	rec := state.FileRecord{
		Mode:    st.Mode & 07777,
		UID:     st.Uid,
		GID:     st.Gid,
		Size:    st.Size,
		MtimeNs: st.Mtim.Nano(),
		CtimeNs: st.Ctim.Nano(),
		Dev:     uint64(st.Dev),
		Ino:     st.Ino,
		Nlink:   uint32(st.Nlink),
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		rec.Kind = state.KindReg
	case unix.S_IFDIR:
		rec.Kind = state.KindDir
	case unix.S_IFLNK:
		rec.Kind = state.KindSymlink
	case unix.S_IFIFO:
		rec.Kind = state.KindFifo
	case unix.S_IFCHR:
		rec.Kind = state.KindChr
		rec.Rdev = uint64(st.Rdev)
	case unix.S_IFBLK:
		rec.Kind = state.KindBlk
		rec.Rdev = uint64(st.Rdev)
	case unix.S_IFSOCK:
		rec.Kind = state.KindSock
	}
	if rec.Kind != state.KindReg {
		rec.Size = 0
	}
	return rec
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 128<<10); return &b }}

// HashFile returns the sha256 of a regular file's content. It opens with
// O_NOFOLLOW so a file swapped for a symlink is never followed.
func HashFile(path string) (state.Hash, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NOATIME, 0)
	if err != nil {
		// O_NOATIME is refused on files we do not own unless root.
		f, err = os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return state.Hash{}, err
		}
	}
	defer f.Close()
	return HashReader(f)
}

// HashReader returns the sha256 of everything r yields.
func HashReader(r io.Reader) (state.Hash, error) {
	h := sha256.New()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	if _, err := io.CopyBuffer(h, r, *bp); err != nil {
		return state.Hash{}, fmt.Errorf("hash: %w", err)
	}
	var out state.Hash
	h.Sum(out[:0])
	return out, nil
}

// Stat is Lstat plus the content hash for regular files.
func Stat(path string) (state.FileRecord, error) {
	rec, err := Lstat(path)
	if err != nil || rec.Kind != state.KindReg {
		return rec, err
	}
	rec.Hash, err = HashFile(path)
	return rec, err
}

// The receiver writes into ".<name>" + TempMark + TempRand random
// characters; the scanner never records such names.
const (
	TempMark = ".ocf-csync."
	TempRand = 6
)

// IsTempName reports whether a directory entry is a receiver's temp file.
func IsTempName(name string) bool {
	n := len(name)
	suffix := len(TempMark) + TempRand
	if n < 1+suffix || name[0] != '.' || name[n-suffix:n-TempRand] != TempMark {
		return false
	}
	for _, c := range []byte(name[n-TempRand:]) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
