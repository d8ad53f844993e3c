package apply

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"ocf-csync/syncer/state"
)

// Mkdir creates the directory path (owner and mode from rec, honouring
// Ignore) or fixes the owner and mode of an existing one. The mtime is not
// set: SetDirMeta does that after the children are written. A non-directory
// in the way is backed up (if regular) and removed.
func (t *Target) Mkdir(path string, rec state.FileRecord) error {
	d, base, err := t.parent(path)
	if err != nil {
		return err
	}
	defer d.close()
	if err := t.allowed(path, true); err != nil {
		return err
	}
	rec.Kind = state.KindDir
	cur, _, exists, err := lstatAt(d, base)
	if err != nil {
		return err
	}
	if exists && cur.Kind == state.KindDir {
		return metaAt(d, base, state.KindDir, t.want(rec, &cur), 0, false)
	}
	var old *state.FileRecord
	if exists {
		old = &cur
		if err := t.removeNonDir(d, base, path, cur); err != nil {
			return err
		}
	}
	// 0700 until the owner and mode are right, so nobody slips in meanwhile.
	if err := unix.Mkdirat(d.fd, base, 0700); err != nil {
		return fmt.Errorf("mkdir %s: %w", path, err)
	}
	if err := metaAt(d, base, state.KindDir, t.want(rec, old), 0, false); err != nil {
		return err
	}
	return t.syncDir(d)
}

// SetDirMeta sets a directory's owner, mode and mtime (ns). The sender calls
// it after all children were written, so the directory mtime survives.
func (t *Target) SetDirMeta(path string, rec state.FileRecord) error {
	rec.Kind = state.KindDir
	return t.SetMeta(path, rec)
}

// SetMeta sets owner, mode and mtime of whatever is at path, honouring
// Ignore; for a symlink lchown and an mtime set without following it. If
// rec.Kind is set it must match the object's type.
func (t *Target) SetMeta(path string, rec state.FileRecord) error {
	d, base, err := t.parent(path)
	if err != nil {
		return err
	}
	defer d.close()
	cur, _, exists, err := lstatAt(d, base)
	if err != nil {
		return err
	}
	if err := t.allowed(path, exists && cur.Kind == state.KindDir); err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("set metadata of %s: %w", path, unix.ENOENT)
	}
	if rec.Kind != state.KindNone && rec.Kind != cur.Kind {
		return fmt.Errorf("set metadata of %s: it is a %s here, the sender has a %s", path, cur.Kind, rec.Kind)
	}
	rec.Kind = cur.Kind
	return metaAt(d, base, cur.Kind, t.want(rec, &cur), rec.MtimeNs, true)
}

// Symlink atomically makes path a symlink to rec.Target: it is created
// under a temp name in the same directory, lchowned, given its mtime without
// following it, and renamed over the old object.
func (t *Target) Symlink(path string, rec state.FileRecord) error {
	rec.Kind = state.KindSymlink
	return t.replaceWith(path, rec, func(d *dirHandle, tmp string) error {
		if err := unix.Symlinkat(rec.Target, d.fd, tmp); err != nil {
			return fmt.Errorf("symlink %s -> %s: %w", path, rec.Target, err)
		}
		return nil
	})
}

// Special creates a fifo, character or block device at path (mknod, atomic
// like Symlink). A socket cannot be recreated meaningfully: it is skipped
// with a logged notice.
func (t *Target) Special(path string, rec state.FileRecord) error {
	var typ uint32
	switch rec.Kind {
	case state.KindFifo:
		typ = unix.S_IFIFO
	case state.KindChr:
		typ = unix.S_IFCHR
	case state.KindBlk:
		typ = unix.S_IFBLK
	case state.KindSock:
		if err := t.Check(path); err != nil {
			return err
		}
		t.log.Info("not recreating a socket; the program owning it creates it", "path", path)
		return nil
	default:
		return fmt.Errorf("create %s: %s is not a special file type", path, rec.Kind)
	}
	return t.replaceWith(path, rec, func(d *dirHandle, tmp string) error {
		if err := unix.Mknodat(d.fd, tmp, typ|0600, int(rec.Rdev)); err != nil {
			return fmt.Errorf("mknod %s (%s): %w", path, rec.Kind, err)
		}
		return nil
	})
}

// replaceWith creates an object under a temp name with create, sets its
// metadata from rec and renames it over path.
func (t *Target) replaceWith(path string, rec state.FileRecord, create func(d *dirHandle, tmp string) error) error {
	d, base, old, err := t.openReplace(path)
	if err != nil {
		return err
	}
	defer d.close()
	tmp, err := t.createRetry(d, base, create)
	if err != nil {
		return err
	}
	if err := metaAt(d, tmp, rec.Kind, t.want(rec, old), rec.MtimeNs, true); err != nil {
		unix.Unlinkat(d.fd, tmp, 0)
		return fmt.Errorf("create %s: %w", path, err)
	}
	if err := t.install(path, d, base, d, tmp, old); err != nil {
		unix.Unlinkat(d.fd, tmp, 0)
		return err
	}
	return nil
}

// createRetry runs create with fresh temp names until one is free.
func (t *Target) createRetry(d *dirHandle, base string, create func(d *dirHandle, tmp string) error) (string, error) {
	for range 100 {
		tmp := tempName(base)
		err := create(d, tmp)
		if err == nil {
			return tmp, nil
		}
		if !isExist(err) {
			return "", err
		}
	}
	return "", fmt.Errorf("create temp name in %s: too many collisions", d.path)
}

func isExist(err error) bool { return errors.Is(err, unix.EEXIST) }

// Link makes path a hardlink to existing (both confined), atomically via a
// temp name and rename. The shared inode gets rec's owner, mode and mtime,
// with Ignore'd fields kept from it. If path already is that inode only the
// metadata is aligned.
func (t *Target) Link(path, existing string, rec state.FileRecord) error {
	ed, ebase, err := t.parent(existing)
	if err != nil {
		return err
	}
	defer ed.close()
	if err := t.allowed(existing, false); err != nil {
		return err
	}
	d, base, err := t.parent(path)
	if err != nil {
		return err
	}
	defer d.close()
	if err := t.allowed(path, false); err != nil {
		return err
	}
	src, sst, ok, err := lstatAt(ed, ebase)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("hardlink %s to %s: %s does not exist: %w", path, existing, existing, unix.ENOENT)
	}
	if src.Kind == state.KindDir {
		return fmt.Errorf("hardlink %s to %s: %s is a directory", path, existing, existing)
	}
	rec.Kind = src.Kind
	w := t.want(rec, &src)
	cur, cst, exists, err := lstatAt(d, base)
	if err != nil {
		return err
	}
	if exists && cst.Dev == sst.Dev && cst.Ino == sst.Ino {
		return metaAt(d, base, src.Kind, w, rec.MtimeNs, true)
	}
	var old *state.FileRecord
	if exists {
		old = &cur
	}
	tmp, err := t.createRetry(d, base, func(d *dirHandle, tmp string) error {
		// flags 0: linkat never dereferences a symlink at existing.
		if err := unix.Linkat(ed.fd, ebase, d.fd, tmp, 0); err != nil {
			return fmt.Errorf("hardlink %s to %s: %w", path, existing, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := metaAt(d, tmp, src.Kind, w, rec.MtimeNs, true); err != nil {
		unix.Unlinkat(d.fd, tmp, 0)
		return fmt.Errorf("hardlink %s: %w", path, err)
	}
	if err := t.install(path, d, base, d, tmp, old); err != nil {
		unix.Unlinkat(d.fd, tmp, 0)
		return err
	}
	// rename(2) between two names of one inode does nothing and leaves tmp.
	unix.Unlinkat(d.fd, tmp, 0)
	return nil
}

// Delete removes path: a regular file is backed up first, then unlinked; a
// directory is rmdir'ed, never recursively (the sender sends children first,
// deepest first). Nothing there is success. A non-empty directory is an
// ErrNotEmpty error that names what is left.
func (t *Target) Delete(path string) error {
	d, base, err := t.parent(path)
	if err != nil {
		if isNotExist(err) {
			return t.allowed(path, false)
		}
		return err
	}
	defer d.close()
	cur, _, exists, err := lstatAt(d, base)
	if err != nil {
		return err
	}
	if err := t.allowed(path, exists && cur.Kind == state.KindDir); err != nil {
		return err
	}
	if !exists {
		return nil
	}
	if cur.Kind == state.KindDir {
		err = t.rmdir(d, base, path)
	} else {
		err = t.removeNonDir(d, base, path, cur)
	}
	if err != nil {
		return err
	}
	return t.syncDir(d)
}

func isNotExist(err error) bool { return errors.Is(err, unix.ENOENT) }

// removeNonDir backs up a regular file and unlinks any non-directory.
func (t *Target) removeNonDir(d *dirHandle, base, path string, cur state.FileRecord) error {
	if cur.Kind == state.KindReg {
		if err := t.backup(d, base, path); err != nil {
			return err
		}
	}
	if err := unix.Unlinkat(d.fd, base, 0); err != nil && err != unix.ENOENT {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// rmdir removes an empty directory; otherwise it reports what is left.
func (t *Target) rmdir(d *dirHandle, base, path string) error {
	t.forget() // it may be the cached directory, or hold it
	err := unix.Unlinkat(d.fd, base, unix.AT_REMOVEDIR)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.ENOTEMPTY && err != unix.EEXIST {
		return fmt.Errorf("remove directory %s: %w", path, err)
	}
	left := "unknown entries"
	if sub, _, werr := walk(path, path, false); werr == nil {
		if names, rerr := readNames(sub); rerr == nil {
			sort.Strings(names)
			if len(names) > 5 {
				names = append(names[:5], fmt.Sprintf("and %d more", len(names)-5))
			}
			left = strings.Join(names, ", ")
		}
		sub.close()
	}
	return fmt.Errorf("remove directory %s: %w: it still holds %s (files excluded or created on this node; remove them or stop syncing the deletion)",
		path, ErrNotEmpty, left)
}

// MkdirParents creates the missing parent directories of path, mode 0755,
// owned like the nearest existing parent. Parents need not be in the include
// set themselves (csync2 fails silently there); path itself must be.
func (t *Target) MkdirParents(path string) error {
	if err := validate(path); err != nil {
		return err
	}
	dir := filepath.Dir(path)
	d, missing, err := t.openDir(path, dir, true)
	if err != nil {
		return err
	}
	defer func() { d.close() }()
	if err := t.allowed(path, false); err != nil {
		// The caller may be about to create a directory at path.
		if t.allowed(path, true) != nil {
			return err
		}
	}
	if !missing {
		return nil
	}
	rest := strings.TrimPrefix(strings.TrimPrefix(dir, d.path), "/")
	for _, c := range strings.Split(rest, "/") {
		var st unix.Stat_t
		if err := unix.Fstat(d.fd, &st); err != nil {
			return fmt.Errorf("stat %s: %w", d.path, err)
		}
		next := filepath.Join(d.path, c)
		if err := unix.Mkdirat(d.fd, c, 0700); err != nil && err != unix.EEXIST {
			return fmt.Errorf("create parent directory %s of %s: %w", next, path, err)
		} else if err == nil {
			w := owner{uid: st.Uid, gid: st.Gid, mode: 0755}
			if err := metaAt(d, c, state.KindDir, w, 0, false); err != nil {
				return fmt.Errorf("create parent directory %s: %w", next, err)
			}
			if err := t.syncDir(d); err != nil {
				return err
			}
			t.log.Info("created missing parent directory", "path", next, "uid", st.Uid, "gid", st.Gid)
		}
		nd, _, err := walkFrom(d, c, path)
		if err != nil {
			return err
		}
		d.close()
		d = nd
	}
	return nil
}

// walkFrom opens child c of d without following a symlink.
func walkFrom(d *dirHandle, c, orig string) (*dirHandle, bool, error) {
	next := filepath.Join(d.path, c)
	fd, err := unix.Openat(d.fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if err == unix.ELOOP {
			return nil, false, refused(orig, "parent %s is a symlink", next)
		}
		return nil, false, fmt.Errorf("open directory %s: %w", next, err)
	}
	return &dirHandle{fd: fd, path: next}, false, nil
}

// openReplace opens the parent of a non-directory path that is about to be
// replaced, checks the path is allowed, and describes what is there now
// (nil when nothing is). The caller closes d.
func (t *Target) openReplace(path string) (d *dirHandle, base string, old *state.FileRecord, err error) {
	d, base, err = t.parent(path)
	if err != nil {
		return nil, "", nil, err
	}
	if err := t.allowed(path, false); err != nil {
		d.close()
		return nil, "", nil, err
	}
	cur, _, exists, err := lstatAt(d, base)
	if err != nil {
		d.close()
		return nil, "", nil, err
	}
	if exists {
		old = &cur
	}
	return d, base, old, nil
}
