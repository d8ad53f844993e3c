package apply

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

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
	return genName(filepath.Join(dir, path), gen)
}

// genName is the name of generation gen of base in its backup directory.
func genName(base string, gen int) string {
	if gen <= 1 {
		return base
	}
	return base + "." + strconv.Itoa(gen-1)
}

// backup keeps the regular file base in d (whose full name is path) as
// generation 1, after rotating the older ones. A failure aborts the write
// or delete that asked for it, so nothing is lost silently. The new
// generation is made first, under a temp name: when that fails (a full
// backup disk) the generations already kept are left as they were, however
// often the replace is retried.
//
// The backup tree is walked like the targets: from "/" with O_NOFOLLOW,
// every call relative to the directory fd, so a symlink planted in it
// (say, by a peer when the backup directory lies inside an include) is
// refused instead of followed out of the tree.
func (t *Target) backup(d *dirHandle, base, path string) error {
	b := t.o.Backup
	if !b.enabled() {
		return nil
	}
	bd, err := t.backupDir(path)
	if err != nil {
		return fmt.Errorf("back up %s: %w", path, err)
	}
	defer bd.close()
	name := filepath.Base(path)
	dst := filepath.Join(bd.path, name)
	var st unix.Stat_t
	if err := unix.Fstatat(d.fd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("back up %s: %w", path, err)
	}
	tmp, err := stageBackup(d, base, bd, name, &st)
	if err != nil {
		return fmt.Errorf("back up %s to %s: %w (the file was not replaced; the kept generations are unchanged)", path, dst, err)
	}
	staged := true
	defer func() {
		if staged {
			unix.Unlinkat(bd.fd, tmp, 0)
		}
	}()
	if err := unix.Unlinkat(bd.fd, genName(name, b.Generations), 0); err != nil && err != unix.ENOENT {
		return fmt.Errorf("back up %s: drop oldest generation: %w", path, err)
	}
	for g := b.Generations - 1; g >= 1; g-- {
		err := unix.Renameat(bd.fd, genName(name, g), bd.fd, genName(name, g+1))
		if err != nil && err != unix.ENOENT {
			return fmt.Errorf("back up %s: rotate generation %d: %w", path, g, err)
		}
	}
	if err := unix.Renameat(bd.fd, tmp, bd.fd, name); err != nil {
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

// backupDir opens (creating them 0700) the backup directory and the mirror
// of path's parent below it, never following a symlink.
func (t *Target) backupDir(path string) (*dirHandle, error) {
	root := filepath.Clean(t.o.Backup.Dir)
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("backup directory %q is not absolute", t.o.Backup.Dir)
	}
	d, missing, err := walk(root, root, true)
	if err != nil {
		return nil, err
	}
	var rest []string
	if missing {
		rest = strings.Split(strings.TrimPrefix(strings.TrimPrefix(root, d.path), "/"), "/")
	}
	if parent := filepath.Dir(path); parent != "/" {
		rest = append(rest, strings.Split(parent[1:], "/")...)
	}
	for _, c := range rest {
		if c == "" {
			continue
		}
		if err := unix.Mkdirat(d.fd, c, 0700); err != nil && err != unix.EEXIST {
			d.close()
			return nil, fmt.Errorf("create backup directory %s: %w", filepath.Join(d.path, c), err)
		}
		nd, _, err := walkFrom(d, c, filepath.Join(d.path, c))
		d.close()
		if err != nil {
			return nil, err
		}
		d = nd
	}
	return d, nil
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
