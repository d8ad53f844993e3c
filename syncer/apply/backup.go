package apply

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// BackupPath returns where generation gen of path is kept under the backup
// directory dir. Generation 1 is the most recent previous version. The tree
// is mirrored below dir, as csync2 does:
//
//	<dir><path>        generation 1 (the version just overwritten or deleted)
//	<dir><path>.1      generation 2
//	<dir><path>.2      generation 3
//	...
//	<dir><path>.<N-1>  generation N, the oldest kept
//
// With backup-generations N exactly N versions are kept; each new backup
// shifts the others one place and drops generation N (csync2 keeps only two).
// Backups keep owner, mode and mtime; directories are not backed up; the
// directories under dir are created 0700.
func BackupPath(dir, path string, gen int) string {
	p := filepath.Join(dir, path)
	if gen <= 1 {
		return p
	}
	return p + "." + strconv.Itoa(gen-1)
}

// backup keeps the regular file base in d (whose full name is path) as
// generation 1, after rotating the older ones. A failure aborts the write
// or delete that asked for it, so nothing is lost silently. The new
// generation is made first, under a temp name: when that fails (a full
// backup disk) the generations already kept are left as they were, however
// often the replace is retried.
func (t *Target) backup(d *dirHandle, base, path string) error {
	b := t.o.Backup
	if !b.enabled() {
		return nil
	}
	dst := BackupPath(b.Dir, path, 1)
	if err := os.MkdirAll(filepath.Dir(dst), 0700); err != nil {
		return fmt.Errorf("back up %s: create backup directory: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(d.fd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("back up %s: %w", path, err)
	}
	dfd, err := unix.Open(filepath.Dir(dst), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("back up %s: open backup directory: %w", path, err)
	}
	bd := &dirHandle{fd: dfd, path: filepath.Dir(dst)}
	defer bd.close()
	tmp, err := stageBackup(d, base, bd, filepath.Base(dst), &st)
	if err != nil {
		return fmt.Errorf("back up %s to %s: %w (the file was not replaced; the kept generations are unchanged)", path, dst, err)
	}
	staged := true
	defer func() {
		if staged {
			unix.Unlinkat(bd.fd, tmp, 0)
		}
	}()
	if err := os.Remove(BackupPath(b.Dir, path, b.Generations)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("back up %s: drop oldest generation: %w", path, err)
	}
	for g := b.Generations - 1; g >= 1; g-- {
		err := os.Rename(BackupPath(b.Dir, path, g), BackupPath(b.Dir, path, g+1))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("back up %s: rotate generation %d: %w", path, g, err)
		}
	}
	if err := unix.Renameat(bd.fd, tmp, bd.fd, filepath.Base(dst)); err != nil {
		return fmt.Errorf("back up %s to %s: %w", path, dst, err)
	}
	staged = false
	return nil
}

// stageBackup puts a copy of base in d into the backup directory bd under a
// temp name for name, and returns that name. A hardlink is instant and
// keeps owner, mode and mtime: the target is about to be replaced by rename
// or unlinked, so the inode is no longer written to. Not for a file with
// other names, which may be written in place later; not across file
// systems. Otherwise a copy with the file's owner, mode and mtime.
func stageBackup(d *dirHandle, base string, bd *dirHandle, name string, st *unix.Stat_t) (string, error) {
	if st.Nlink == 1 {
		for range 100 {
			tmp := tempName(name)
			err := unix.Linkat(d.fd, base, bd.fd, tmp, 0)
			if err == nil {
				return tmp, nil
			}
			if err != unix.EEXIST {
				break
			}
		}
	}
	return copyBackup(d, base, bd, name, st)
}

// copyBackup copies base in d into a new temp file in bd with its owner,
// mode and mtime, and returns the temp file's name.
func copyBackup(d *dirHandle, base string, bd *dirHandle, name string, st *unix.Stat_t) (string, error) {
	sfd, err := unix.Openat(d.fd, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	src := os.NewFile(uintptr(sfd), base)
	defer src.Close()
	f, tmp, err := createTemp(bd, name)
	if err != nil {
		return "", err
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			unix.Unlinkat(bd.fd, tmp, 0)
		}
	}()
	if _, err := io.Copy(f, src); err != nil {
		return "", err
	}
	w := owner{uid: st.Uid, gid: st.Gid, mode: st.Mode & 07777}
	if err := metaFd(int(f.Fd()), f.Name(), w, st.Mtim.Nano(), true); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	ok = true
	return tmp, nil
}
