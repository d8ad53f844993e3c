package tests

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// strangeNames are file names a sync must carry unchanged.
var strangeNames = []string{
	"with space",
	"trailing space ",
	" leading space",
	"new\nline",
	"tab\there",
	"per%cent%",
	"%data%",
	`double"quote`,
	"single'quote",
	`back\slash`,
	"invalid-utf8-\xff\xfe\xc3",
	"ünïcødé-ファイル",
	"-dash-first",
	strings.Repeat("x", 255),
}

// Owners used by the tree, besides root.
const (
	uidA, gidA = 1001, 1002
	uidB, gidB = 2001, 2002
)

// buildTree creates at root (host-side path of a node's data dir) a tree of
// every kind of object ocf-csync syncs, with unusual names, owners, modes
// and nanosecond mtimes.
func buildTree(t *testing.T, root string) {
	t.Helper()
	rnd := rand.New(rand.NewPCG(7, 7))
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("build tree: %s: %v", what, err)
		}
	}
	p := func(rel string) string { return filepath.Join(root, rel) }
	mkdir := func(rel string, mode os.FileMode, uid, gid int) {
		must("mkdir "+rel, os.MkdirAll(p(rel), 0o755))
		must("chown "+rel, os.Lchown(p(rel), uid, gid))
		must("chmod "+rel, os.Chmod(p(rel), mode))
	}
	file := func(rel string, data []byte, mode os.FileMode, uid, gid int) {
		must("write "+rel, os.WriteFile(p(rel), data, 0o600))
		// chown before chmod: chown clears the setuid bit.
		must("chown "+rel, os.Lchown(p(rel), uid, gid))
		must("chmod "+rel, os.Chmod(p(rel), mode))
	}
	symlink := func(rel, target string, uid, gid int) {
		must("symlink "+rel, os.Symlink(target, p(rel)))
		must("lchown "+rel, os.Lchown(p(rel), uid, gid))
	}
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		return b
	}

	mkdir("dir/nested/deeper", 0o755, 0, 0)
	mkdir("owned", 0o750, uidB, gidB)
	mkdir("links", 0o755, 0, 0)
	mkdir("names", 0o755, 0, 0)
	mkdir("names/sub dir with space", 0o700, uidA, gidA)
	mkdir("empty-dir", 0o1777, 0, 0)

	file("plain.txt", []byte("hello\n"), 0o644, 0, 0)
	file("empty", nil, 0o644, 0, 0)
	file("big.bin", random(200<<10), 0o644, 0, 0) // above the whole-file threshold
	file("dir/nested/deeper/file.txt", []byte("deep\n"), 0o644, 0, 0)
	file("dir/secret", []byte("secret\n"), 0o600, uidA, gidA)
	file("dir/suid", []byte("#!/bin/sh\necho suid\n"), 0o4755, uidA, gidA)
	file("owned/f", []byte("owned by B\n"), 0o640, uidB, gidB)
	file("hardlink-a", []byte("one inode, two names\n"), 0o644, uidA, gidA)
	must("link", os.Link(p("hardlink-a"), p("dir/hardlink-b")))
	for _, n := range strangeNames {
		file(filepath.Join("names", n), []byte(n+"\n"), 0o644, 0, 0)
	}
	file("names/sub dir with space/f\nx", []byte("in a strange dir\n"), 0o600, uidA, gidA)

	symlink("links/rel", "../dir/nested/deeper/file.txt", 0, 0)
	symlink("links/abs", "/srv/ocf-csync/plain.txt", 0, 0)
	symlink("links/dangling-abs", "/nonexistent/target", 0, 0)
	symlink("links/dangling-rel", "missing", uidB, gidB)
	symlink("links/to-dir", "../dir", 0, 0)
	symlink("links/strange target", "new\nline \xff", 0, 0)
	must("mkfifo", unix.Mkfifo(p("fifo"), 0o640))
	must("chown fifo", os.Lchown(p("fifo"), uidA, gidA))

	setMtimes(t, root, time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC))
}

// setMtimes gives every entry below root (not following symlinks) its own
// mtime with nanoseconds, directories last and deepest first so that
// setting a child's time does not disturb its parent's.
func setMtimes(t *testing.T, root string, base time.Time) {
	t.Helper()
	var dirs, others []string
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.IsDir() {
			dirs = append(dirs, p)
		} else {
			others = append(others, p)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for i, p := range append(others, dirs...) {
		ts := base.Add(time.Duration(i)*(time.Second+1001*time.Nanosecond) + 123456789)
		tv := unix.NsecToTimespec(ts.UnixNano())
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{tv, tv}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatalf("set mtime of %s: %v", p, err)
		}
	}
}
