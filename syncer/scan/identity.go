package scan

import (
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"unsafe"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"ocf-csync/syncer/state"
)

// fsIocGetFSUUID is FS_IOC_GETFSUUID, _IOR(0x15, 0, struct fsuuid2) (Linux
// 6.5+): the file system's own UUID, the same after every reboot.
const fsIocGetFSUUID = 0x80111500

type fsuuid2 struct {
	Len  uint8
	UUID [16]byte
}

// Identify describes the file system path lies on (see state.FSIdentity).
// A directory is opened (which also triggers an automount, as the walk
// would); anything else is looked at through an O_PATH descriptor and
// never followed.
func Identify(path string) (state.FSIdentity, error) {
	var id state.FSIdentity
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	dir := err == nil
	if err == unix.ENOTDIR || err == unix.ELOOP {
		fd, err = unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return id, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil {
		return id, &os.PathError{Op: "statfs", Path: path, Err: err}
	}
	if sfs.Fsid.Val != [2]int32{} {
		id.FSID = fmt.Sprintf("%08x%08x", uint32(sfs.Fsid.Val[0]), uint32(sfs.Fsid.Val[1]))
	}
	var sx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_TYPE|unix.STATX_INO|unix.STATX_MNT_ID, &sx); err != nil {
		return id, &os.PathError{Op: "statx", Path: path, Err: err}
	}
	id.Dev = unix.Mkdev(sx.Dev_major, sx.Dev_minor)
	if dir {
		var u fsuuid2
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fsIocGetFSUUID, uintptr(unsafe.Pointer(&u))); e == 0 &&
			u.Len > 0 && int(u.Len) <= len(u.UUID) && u.UUID != [16]byte{} {
			id.UUID = hex.EncodeToString(u.UUID[:u.Len])
		}
	}
	if id.UUID == "" && sx.Dev_major != 0 {
		// Kernels before 6.5 lack FS_IOC_GETFSUUID, and xfs derives f_fsid
		// from the device number; udev's by-uuid links name the file system.
		id.UUID = udevUUID(id.Dev)
	}
	m, err := mountOf(path, &sx)
	if err != nil {
		return id, err
	}
	id.FSType, id.Source, id.MountPoint, id.MountRoot = m.FSType, m.Source, m.Mountpoint, m.Root
	return id, nil
}

// mountOf finds the mount holding a path: by mount ID where statx reports
// one (Linux 5.8+), else the deepest mount of the same device whose mount
// point is a prefix of path.
func mountOf(path string, sx *unix.Statx_t) (*mountinfo.Info, error) {
	byID := sx.Mask&unix.STATX_MNT_ID != 0
	ms, err := mountinfo.GetMounts(func(i *mountinfo.Info) (skip, stop bool) {
		if byID {
			match := uint64(i.ID) == sx.Mnt_id
			return !match, match
		}
		ok := uint32(i.Major) == sx.Dev_major && uint32(i.Minor) == sx.Dev_minor &&
			(i.Mountpoint == "/" || path == i.Mountpoint || isBelow(path, i.Mountpoint))
		return !ok, false
	})
	if err != nil {
		return nil, fmt.Errorf("read the mount table for %q: %w", path, err)
	}
	var best *mountinfo.Info
	for _, m := range ms {
		if best == nil || len(m.Mountpoint) >= len(best.Mountpoint) {
			best = m
		}
	}
	if best == nil {
		return nil, fmt.Errorf("%q: its mount is not in /proc/self/mountinfo", path)
	}
	return best, nil
}

// udevUUID finds the file system UUID of block device dev in
// /dev/disk/by-uuid ("" when there is no such link).
func udevUUID(dev uint64) string {
	const dir = "/dev/disk/by-uuid"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	for _, e := range ents {
		var st unix.Stat_t
		if unix.Stat(dir+"/"+e.Name(), &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK && uint64(st.Rdev) == dev {
			return strings.ToLower(strings.ReplaceAll(e.Name(), "-", ""))
		}
	}
	return ""
}
