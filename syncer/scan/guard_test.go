package scan

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"ocf-csync/syncer/internal/mountns"
	"ocf-csync/syncer/state"
)

// guardTree writes n files below root/sub and scans them in.
func guardTree(t *testing.T, n int) (root string, fs *fakeStore, sel *fakeSel) {
	t.Helper()
	root = filepath.Join(t.TempDir(), "www")
	for i := range n {
		writeFile(t, filepath.Join(root, "sub", string(rune('a'+i%26))+strings.Repeat("x", i/26)), "data")
	}
	fs = newFakeStore()
	sel = &fakeSel{roots: []string{root}, peers: []string{"p"}}
	if _, err := Check(context.Background(), fs, sel, nil, false, Options{}); err != nil {
		t.Fatal(err)
	}
	fs.clearDirty()
	if _, ok := fs.roots[root]; !ok {
		t.Fatalf("the first scan recorded no file system for the root %s", root)
	}
	return root, fs, sel
}

// noLoss checks that a refused scan deleted and dirtied nothing.
func noLoss(t *testing.T, fs *fakeStore, res Result, before int, kind string) {
	t.Helper()
	if res.Deleted != 0 || len(fs.dirtyPaths("p")) != 0 || len(fs.files) != before {
		t.Errorf("refused scan changed the state: deleted %d, dirty %d, records %d (want %d)",
			res.Deleted, len(fs.dirtyPaths("p")), len(fs.files), before)
	}
	if len(res.Refused) != 1 || res.Refused[0].Kind != kind {
		t.Fatalf("refusals = %v, want one %s", res.Refused, kind)
	}
	if r := res.Refused[0]; r.Count != before-1 || r.Reason == "" {
		t.Errorf("refusal %+v: want count %d (entries below the root) and a reason", r, before-1)
	}
}

func TestGuardRoot(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name     string
		break_   func(t *testing.T, root string)
		kind     string
		override string
	}{
		{"root renamed away", func(t *testing.T, root string) { must(t, os.Rename(root, root+".old")) },
			state.RefusedRootMissing, OverrideMassDelete},
		{"root is an empty mount point", func(t *testing.T, root string) {
			must(t, os.Rename(root, root+".old"))
			must(t, os.Mkdir(root, 0o755))
		}, state.RefusedRootEmpty, OverrideMassDelete},
		{"root removed", func(t *testing.T, root string) { must(t, os.RemoveAll(root)) },
			state.RefusedRootMissing, OverrideMassDelete},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root, fs, sel := guardTree(t, 30)
			before := len(fs.files)
			tt.break_(t, root)
			for _, paths := range [][]string{nil, {filepath.Join(root, "sub", "a")}, {root}} {
				// A full scan, a watch hint below the root, the root itself.
				res, err := Check(ctx, fs, sel, paths, true, Options{})
				must(t, err)
				noLoss(t, fs, res, before, tt.kind)
				if o := res.Refused[0].Override; o != tt.override {
					t.Errorf("override %q, want %q", o, tt.override)
				}
			}
			if _, err := os.Stat(root + ".old"); err == nil {
				// The real tree comes back: a normal scan, nothing deleted.
				must(t, os.RemoveAll(root))
				must(t, os.Rename(root+".old", root))
				res, err := Check(ctx, fs, sel, nil, false, Options{})
				must(t, err)
				if len(res.Refused) != 0 || res.Deleted != 0 || len(fs.files) != before {
					t.Errorf("after the tree returned: %+v, %d records", res, len(fs.files))
				}
				return
			}
			// Deliberate: --allow-mass-delete reads it as deleted.
			res, err := Check(ctx, fs, sel, nil, false, Options{AllowMassDelete: true})
			must(t, err)
			if len(res.Refused) != 0 || res.Deleted != before || len(fs.dirtyPaths("p")) != before {
				t.Errorf("allowed: %+v, dirty %d", res, len(fs.dirtyPaths("p")))
			}
		})
	}
}

func TestGuardRootEmptiedAllowed(t *testing.T) {
	root, fs, sel := guardTree(t, 5)
	must(t, os.RemoveAll(filepath.Join(root, "sub")))
	res, err := Check(context.Background(), fs, sel, nil, false, Options{AllowMassDelete: true})
	must(t, err)
	if len(res.Refused) != 0 || res.Deleted != 6 {
		t.Errorf("allowed emptying: %+v", res)
	}
}

func TestGuardOtherFileSystem(t *testing.T) {
	ctx := context.Background()
	root, fs, sel := guardTree(t, 10)
	before := len(fs.files)
	// The record says another file system: what a remount of another disk
	// at the same place looks like to the guard.
	rec := fs.roots[root]
	rec.ID.UUID, rec.ID.FSID = "0123456789abcdef0123456789abcdef", "0123456789abcdef"
	must(t, fs.PutRoot(rec))
	must(t, os.Remove(filepath.Join(root, "sub", "a")))
	for _, o := range []Options{{}, {AllowMassDelete: true}} {
		res, err := Check(ctx, fs, sel, nil, false, o)
		must(t, err)
		noLoss(t, fs, res, before, state.RefusedRootOtherFS)
		if got, want := res.Refused[0].Override, "ocf-csync accept-root "+root; got != want {
			t.Errorf("override %q, want %q", got, want)
		}
		if !strings.Contains(res.Refused[0].Reason, "0123456789abcdef") {
			t.Errorf("reason does not name the old file system: %s", res.Refused[0].Reason)
		}
	}
	// accept-root records the file system as it is now.
	id, err := Identify(root)
	must(t, err)
	rec.ID = id
	must(t, fs.PutRoot(rec))
	res, err := Check(ctx, fs, sel, nil, false, Options{})
	must(t, err)
	if len(res.Refused) != 0 || res.Deleted != 1 {
		t.Errorf("after accepting: %+v", res)
	}
}

// A root that never had tracked entries may change file system freely.
func TestGuardUntrackedRoot(t *testing.T) {
	root := filepath.Join(t.TempDir(), "www")
	must(t, os.Mkdir(root, 0o755))
	fs := newFakeStore()
	sel := &fakeSel{roots: []string{root}, peers: []string{"p"}}
	_, err := Check(context.Background(), fs, sel, nil, false, Options{})
	must(t, err)
	rec := fs.roots[root]
	rec.ID.FSID, rec.ID.UUID = "00000000deadbeef", "ffff"
	must(t, fs.PutRoot(rec))
	writeFile(t, root+"/new", "n")
	res, err := Check(context.Background(), fs, sel, nil, false, Options{})
	must(t, err)
	if len(res.Refused) != 0 || res.New != 1 {
		t.Errorf("untracked root: %+v", res)
	}
	if got := fs.roots[root].ID.UUID; got == "ffff" {
		t.Error("the new file system was not recorded")
	}
}

// Records the walk did not account for force a sweep; it must not take
// the records of a refused root with it.
func TestGuardSweepKeepsRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	writeFile(t, a+"/f", "f")
	writeFile(t, b+"/g", "g")
	writeFile(t, b+"/h", "h")
	fs := newFakeStore()
	sel := &fakeSel{roots: []string{a, b}, peers: []string{"p"}}
	_, err := Check(ctx, fs, sel, nil, false, Options{})
	must(t, err)
	fs.clearDirty()
	must(t, os.Rename(a, a+".old"))
	must(t, os.Remove(b+"/g"))
	res, err := Check(ctx, fs, sel, nil, false, Options{})
	must(t, err)
	if _, ok := fs.files[a+"/f"]; !ok || res.Deleted != 1 || len(res.Refused) != 1 {
		t.Errorf("sweep: %+v; record of a/f kept: %v", res, ok)
	}
	for _, p := range fs.dirtyPaths("p") {
		if isBelow(p, a) {
			t.Errorf("dirty %q below the refused root", p)
		}
	}
	if _, ok := fs.dirty["p"][b+"/g"]; !ok {
		t.Error("the deletion in the other root is not dirty")
	}
}

// An unreadable directory (EACCES, EIO, ESTALE on open or on readdir) keeps
// its entries and is reported.
func TestUnreadableSubtree(t *testing.T) {
	for _, tt := range []struct {
		name    string
		errno   unix.Errno
		readdir bool
	}{
		{"open EACCES", unix.EACCES, false},
		{"open EIO", unix.EIO, false},
		{"open ESTALE", unix.ESTALE, false},
		{"readdir EIO", unix.EIO, true},
		{"readdir ESTALE", unix.ESTALE, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root, fs, sel := guardTree(t, 40)
			writeFile(t, root+"/other/x", "x")
			_, err := Check(context.Background(), fs, sel, nil, false, Options{})
			must(t, err)
			fs.clearDirty()
			before := len(fs.files)
			bad := filepath.Join(root, "sub")
			defer func(o func(string) (int, error), r func(int, []byte) (int, error)) { openDir, readDirent = o, r }(openDir, readDirent)
			if tt.readdir {
				var mu sync.Mutex
				badFd := -1 // the fd of bad while it is open; numbers are reused
				o := openDir
				openDir = func(p string) (int, error) {
					fd, err := o(p)
					mu.Lock()
					if p == bad {
						badFd = fd
					} else if fd == badFd {
						badFd = -1
					}
					mu.Unlock()
					return fd, err
				}
				readDirent = func(fd int, buf []byte) (int, error) {
					mu.Lock()
					isBad := fd == badFd
					mu.Unlock()
					if isBad {
						return 0, tt.errno
					}
					return unix.ReadDirent(fd, buf)
				}
			} else {
				o := openDir
				openDir = func(p string) (int, error) {
					if p == bad {
						return -1, tt.errno
					}
					return o(p)
				}
			}
			must(t, os.Remove(root+"/other/x")) // a real deletion elsewhere still goes through
			for range 2 {
				res, err := Check(context.Background(), fs, sel, nil, false, Options{})
				must(t, err)
				if len(res.Errors) != 1 || !errors.Is(res.Errors[0], tt.errno) || !strings.Contains(res.Errors[0].Error(), bad) {
					t.Fatalf("errors = %v, want one %v naming %s", res.Errors, tt.errno, bad)
				}
				if n := len(fs.files); n != before-1 {
					t.Errorf("%d records left, want %d: only other/x deleted", n, before-1)
				}
				for _, p := range fs.dirtyPaths("p") {
					if p == bad || isBelow(p, bad) {
						t.Errorf("dirty %s below the unreadable directory", p)
					}
				}
			}
		})
	}
}

// Real mounts: a tmpfs data disk that goes away, a tmpfs with other
// content mounted over the root, a bind mount of another directory, and a
// nested mount below the root that goes away.
func TestGuardMounts(t *testing.T) {
	if !mountns.Enter(t) {
		return
	}
	ctx := context.Background()
	dir := t.TempDir()
	root := filepath.Join(dir, "www")
	must(t, os.Mkdir(root, 0o755))
	mountns.Mount(t, "-t", "tmpfs", "datadisk", root)
	t.Cleanup(func() { // TempDir's RemoveAll needs the mounts gone
		_ = exec.Command("umount", "-R", root).Run()
		_ = exec.Command("umount", "-R", filepath.Join(dir, "data", "uploads")).Run()
	})
	for _, f := range []string{"a", "b", "c/d", "c/e"} {
		writeFile(t, filepath.Join(root, f), f)
	}
	fs := newFakeStore()
	sel := &fakeSel{roots: []string{root}, peers: []string{"p"}}
	_, err := Check(ctx, fs, sel, nil, false, Options{})
	must(t, err)
	fs.clearDirty()
	before := len(fs.files)
	if id := fs.roots[root].ID; id.FSType != "tmpfs" || id.MountPoint != root || (id.UUID == "" && id.FSID == "" && id.Source != "datadisk") {
		t.Fatalf("recorded identity %+v", id)
	}

	// The data disk is not mounted: the root is an empty directory.
	mountns.Umount(t, root)
	res, err := Check(ctx, fs, sel, nil, false, Options{})
	must(t, err)
	if len(res.Refused) != 1 || res.Refused[0].Kind != state.RefusedRootOtherFS || res.Deleted != 0 || len(fs.files) != before {
		t.Fatalf("unmounted data disk: %+v", res)
	}
	// Not even --allow-mass-delete reads another file system as deletions.
	res, err = Check(ctx, fs, sel, nil, false, Options{AllowMassDelete: true})
	must(t, err)
	if len(res.Refused) != 1 || res.Deleted != 0 {
		t.Fatalf("unmounted data disk, allow-mass-delete: %+v", res)
	}

	// Another tmpfs with other content over the root.
	mountns.Mount(t, "-t", "tmpfs", "otherdisk", root)
	writeFile(t, root+"/intruder", "x")
	res, err = Check(ctx, fs, sel, nil, false, Options{})
	must(t, err)
	if len(res.Refused) != 1 || res.Refused[0].Kind != state.RefusedRootOtherFS || res.New != 0 || len(fs.files) != before {
		t.Fatalf("other tmpfs: %+v", res)
	}
	mountns.Umount(t, root)

	// A bind mount of another directory of the same file system.
	other := filepath.Join(dir, "other")
	writeFile(t, other+"/x", "x")
	mountns.Mount(t, "--bind", other, root)
	res, err = Check(ctx, fs, sel, nil, false, Options{})
	must(t, err)
	if len(res.Refused) != 1 || res.Refused[0].Kind != state.RefusedRootOtherFS || len(fs.files) != before {
		t.Fatalf("bind mount: %+v", res)
	}
	mountns.Umount(t, root)

	// A nested mount below a root on the plain file system goes away.
	root2 := filepath.Join(dir, "data")
	writeFile(t, root2+"/top", "t")
	must(t, os.Mkdir(root2+"/uploads", 0o755))
	mountns.Mount(t, "-t", "tmpfs", "uploads", root2+"/uploads")
	writeFile(t, root2+"/uploads/u1", "u")
	writeFile(t, root2+"/uploads/u2", "u")
	sel.roots = []string{root2}
	fs2 := newFakeStore()
	_, err = Check(ctx, fs2, sel, nil, false, Options{})
	must(t, err)
	fs2.clearDirty()
	if r, ok := fs2.roots[root2+"/uploads"]; !ok || !r.Mount {
		t.Fatalf("nested mount not recorded: %+v", fs2.roots)
	}
	before2 := len(fs2.files)
	mountns.Umount(t, root2+"/uploads")
	must(t, os.Remove(root2+"/top")) // a deletion outside the mount goes through
	for _, paths := range [][]string{nil, {root2 + "/uploads/u1"}} {
		res, err = Check(ctx, fs2, sel, paths, true, Options{})
		must(t, err)
		if len(res.Refused) != 1 || res.Refused[0].Kind != state.RefusedMountChanged || res.Refused[0].Path != root2+"/uploads" {
			t.Fatalf("nested mount gone (paths %q): %+v", paths, res)
		}
		if _, ok := fs2.files[root2+"/uploads/u1"]; !ok {
			t.Errorf("the records below the vanished mount were deleted (paths %q)", paths)
		}
	}
	if len(fs2.files) != before2-1 {
		t.Errorf("%d records, want %d (only top deleted)", len(fs2.files), before2-1)
	}
	// It comes back: nothing refused, nothing lost.
	mountns.Mount(t, "-t", "tmpfs", "uploads2", root2+"/uploads")
	writeFile(t, root2+"/uploads/u1", "u")
	// A new tmpfs is another file system: accept-root is the way.
	res, err = Check(ctx, fs2, sel, nil, false, Options{})
	must(t, err)
	if len(res.Refused) != 1 {
		t.Fatalf("a new tmpfs at the mount point: %+v", res)
	}
}

// An include of one file whose file is gone is refused like a root, with a
// reason that speaks of the file, not of "entries below it".
func TestGuardFileRoot(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "app.conf")
	writeFile(t, f, "x")
	fs := newFakeStore()
	sel := &fakeSel{roots: []string{f}, peers: []string{"p"}}
	_, err := Check(context.Background(), fs, sel, nil, false, Options{})
	must(t, err)
	must(t, os.Remove(f))
	res, err := Check(context.Background(), fs, sel, nil, false, Options{})
	must(t, err)
	if len(res.Refused) != 1 || !strings.Contains(res.Refused[0].Reason, "the included file is gone") || res.Deleted != 0 {
		t.Fatalf("refusals %+v, deleted %d", res.Refused, res.Deleted)
	}
	res, err = Check(context.Background(), fs, sel, nil, false, Options{AllowMassDelete: true})
	must(t, err)
	if len(res.Refused) != 0 || res.Deleted != 1 {
		t.Errorf("allowed: %+v", res)
	}
}
