package apply

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"

	"ocf-csync/syncer/state"
)

// owner is the owner and mode to give an object.
type owner struct{ uid, gid, mode uint32 }

// want returns rec's owner and mode, except for the fields the Ignore set
// drops: those are kept from old (the object being replaced or fixed, nil if
// none) or, for a new object, come from this process (its uid, gid, and the
// default creation mode under its umask).
func (t *Target) want(rec state.FileRecord, old *state.FileRecord) owner {
	w := owner{uid: rec.UID, gid: rec.GID, mode: rec.Mode & 07777}
	ig := t.o.Ignore
	if ig.UID {
		if old != nil {
			w.uid = old.UID
		} else {
			w.uid = uint32(os.Getuid())
		}
	}
	if ig.GID {
		if old != nil {
			w.gid = old.GID
		} else {
			w.gid = uint32(os.Getgid())
		}
	}
	if ig.Mode {
		// A mode is only worth keeping from an object of the same type.
		if old != nil && old.Kind == rec.Kind && old.Kind != state.KindSymlink {
			w.mode = old.Mode
		} else if rec.Kind == state.KindDir {
			w.mode = 0777 &^ t.umask
		} else {
			w.mode = 0666 &^ t.umask
		}
	}
	return w
}

func procFd(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// metaFd sets owner, mode and (with setTime) mtime on the object fd refers
// to. fd may be an O_PATH handle: chown uses AT_EMPTY_PATH; chmod and
// utimensat try the fd itself (fchmod, futimens) and, for an O_PATH handle,
// where those fail with EBADF, go through /proc/self/fd, which reaches the
// very inode without a path lookup (what glibc does for fchmodat on O_PATH).
// Owner comes first because chown clears the setuid and setgid bits.
func metaFd(fd int, name string, w owner, mtimeNs int64, setTime bool) error {
	if err := unix.Fchownat(fd, "", int(w.uid), int(w.gid), unix.AT_EMPTY_PATH); err != nil {
		return fmt.Errorf("chown %s to %d:%d: %w", name, w.uid, w.gid, err)
	}
	err := unix.Fchmod(fd, w.mode)
	if err == unix.EBADF {
		err = unix.Fchmodat(unix.AT_FDCWD, procFd(fd), w.mode, 0)
	}
	if err != nil {
		return fmt.Errorf("chmod %s to %04o (is /proc mounted?): %w", name, w.mode, err)
	}
	if setTime {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, unix.NsecToTimespec(mtimeNs)}
		err := futimens(fd, ts)
		if err == unix.EBADF {
			err = unix.UtimesNanoAt(unix.AT_FDCWD, procFd(fd), ts, 0)
		}
		if err != nil {
			return fmt.Errorf("set mtime of %s: %w", name, err)
		}
	}
	return nil
}

// futimens is utimensat(fd, NULL, ts, 0): the times of the open file
// itself (x/sys has no wrapper that passes a NULL path).
func futimens(fd int, ts []unix.Timespec) error {
	_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// metaAt sets owner, mode and mtime on name in d without following it. A
// symlink gets lchown and an mtime set with AT_SYMLINK_NOFOLLOW; its mode
// does not exist on Linux.
func metaAt(d *dirHandle, name string, kind state.Kind, w owner, mtimeNs int64, setTime bool) error {
	full := filepath.Join(d.path, name)
	if kind == state.KindSymlink {
		if err := unix.Fchownat(d.fd, name, int(w.uid), int(w.gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("lchown %s to %d:%d: %w", full, w.uid, w.gid, err)
		}
		if setTime {
			ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, unix.NsecToTimespec(mtimeNs)}
			if err := unix.UtimesNanoAt(d.fd, name, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return fmt.Errorf("set mtime of symlink %s: %w", full, err)
			}
		}
		return nil
	}
	fd, err := unix.Openat(d.fd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", full, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat %s: %w", full, err)
	}
	if k := kindOfMode(st.Mode); k != kind {
		return fmt.Errorf("set metadata of %s: it is a %s now, expected a %s (changed locally meanwhile?)", full, k, kind)
	}
	return metaFd(fd, full, w, mtimeNs, setTime)
}
