package apply

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"ocf-csync/syncer/scan"
	"ocf-csync/syncer/state"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root: sets foreign owners and creates device nodes")
	}
}

// regRec describes content as a regular file with the given metadata.
func regRec(content string, mode, uid, gid uint32, mtimeNs int64) state.FileRecord {
	return state.FileRecord{Kind: state.KindReg, Mode: mode, UID: uid, GID: gid,
		Size: int64(len(content)), MtimeNs: mtimeNs, Hash: sha256.Sum256([]byte(content))}
}

func fillWith(s string) func(io.Writer) error {
	return func(w io.Writer) error { _, err := io.WriteString(w, s); return err }
}

func lstat(t *testing.T, p string) state.FileRecord {
	t.Helper()
	r, err := scan.Lstat(p)
	if err != nil {
		t.Fatalf("lstat: %v", err)
	}
	return r
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// temps lists our temp files left in dir.
func temps(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if IsTemp(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out
}

const mtime = int64(1_600_000_000_123_456_789)

func TestWriteFileNew(t *testing.T) {
	needRoot(t)
	tests := []struct {
		name          string
		mode          uint32
		uid, gid      uint32
		content       string
		wantMode      uint32
		wantUID, wGID uint32
		ig            state.Ignore
	}{
		{"setuid foreign owner", 04755, 1234, 5678, "hello\n", 04755, 1234, 5678, state.Ignore{}},
		{"empty file", 0640, 0, 0, "", 0640, 0, 0, state.Ignore{}},
		{"big file", 0600, 1, 2, strings.Repeat("x", 3<<20), 0600, 1, 2, state.Ignore{}},
		// New file with everything ignored: this process's ids and 0666&^umask.
		{"ignore all new", 04755, 1234, 5678, "x", 0666 &^ readUmask(), 0, 0, state.Ignore{UID: true, GID: true, Mode: true}},
		{"ignore uid only", 0700, 1234, 5678, "x", 0700, 0, 5678, state.Ignore{UID: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "f")
			tg := New(Options{Ignore: tc.ig})
			rec := regRec(tc.content, tc.mode, tc.uid, tc.gid, mtime)
			if err := tg.WriteFile(p, rec, fillWith(tc.content)); err != nil {
				t.Fatal(err)
			}
			got := lstat(t, p)
			if got.Kind != state.KindReg || got.Mode != tc.wantMode || got.UID != tc.wantUID ||
				got.GID != tc.wGID || got.MtimeNs != mtime || got.Size != int64(len(tc.content)) {
				t.Errorf("got %+v, want mode %o uid %d gid %d mtime %d", got, tc.wantMode, tc.wantUID, tc.wGID, mtime)
			}
			if readFile(t, p) != tc.content {
				t.Error("content differs")
			}
			if l := temps(t, dir); len(l) != 0 {
				t.Errorf("temp files left: %v", l)
			}
			cur, ok, err := tg.Current(p)
			if err != nil || !ok || cur.Hash != rec.Hash {
				t.Errorf("Current = %v %v %v", cur.Hash == rec.Hash, ok, err)
			}
		})
	}
}

func TestIgnoreKeepsExisting(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("old"), 0600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 42, 43); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0604); err != nil {
		t.Fatal(err)
	}
	tg := New(Options{Ignore: state.Ignore{UID: true, GID: true, Mode: true}})
	if err := tg.WriteFile(p, regRec("new", 0777, 1, 2, mtime), fillWith("new")); err != nil {
		t.Fatal(err)
	}
	got := lstat(t, p)
	if got.UID != 42 || got.GID != 43 || got.Mode != 0604 || got.MtimeNs != mtime {
		t.Errorf("got %+v, want the old owner 42:43 and mode 0604 kept", got)
	}
	// SetMeta honours Ignore the same way.
	if err := tg.SetMeta(p, regRec("new", 0755, 7, 8, mtime+1)); err != nil {
		t.Fatal(err)
	}
	got = lstat(t, p)
	if got.UID != 42 || got.GID != 43 || got.Mode != 0604 || got.MtimeNs != mtime+1 {
		t.Errorf("after SetMeta got %+v", got)
	}
	tg = New(Options{Ignore: state.Ignore{Mode: true}})
	if err := tg.SetMeta(p, regRec("new", 0755, 7, 8, mtime)); err != nil {
		t.Fatal(err)
	}
	if got = lstat(t, p); got.UID != 7 || got.GID != 8 || got.Mode != 0604 {
		t.Errorf("Ignore.Mode only: got %+v", got)
	}
}

func TestOverwriteAtomic(t *testing.T) {
	needRoot(t)
	tests := []struct {
		name    string
		rec     state.FileRecord
		fill    func(io.Writer) error
		wantErr error
	}{
		{"fill fails", regRec("new", 0644, 0, 0, mtime), func(w io.Writer) error {
			io.WriteString(w, "partial")
			return errors.New("peer went away")
		}, nil},
		{"hash mismatch", regRec("expected", 0644, 0, 0, mtime), fillWith("something else"), ErrHashMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "f")
			if err := os.WriteFile(p, []byte("old content"), 0640); err != nil {
				t.Fatal(err)
			}
			before := lstat(t, p)
			err := New(Options{}).WriteFile(p, tc.rec, tc.fill)
			if err == nil {
				t.Fatal("WriteFile succeeded")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
			after := lstat(t, p)
			if after.Ino != before.Ino || after.MtimeNs != before.MtimeNs || after.Mode != before.Mode {
				t.Errorf("old inode changed: %+v -> %+v", before, after)
			}
			if readFile(t, p) != "old content" {
				t.Error("old content changed")
			}
			if l := temps(t, dir); len(l) != 0 {
				t.Errorf("temp files left: %v", l)
			}
		})
	}
}

func TestOverwriteReplacesInode(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	os.WriteFile(p, []byte("old"), 0644)
	before := lstat(t, p)
	basis, err := New(Options{}).OpenBasis(p)
	if err != nil {
		t.Fatal(err)
	}
	defer basis.Close()
	if err := New(Options{}).WriteFile(p, regRec("new", 0644, 0, 0, mtime), fillWith("new")); err != nil {
		t.Fatal(err)
	}
	if lstat(t, p).Ino == before.Ino {
		t.Error("file was rewritten in place, not replaced by rename")
	}
	// A reader of the old version (the delta basis) still sees it whole.
	if b, _ := io.ReadAll(basis); string(b) != "old" {
		t.Errorf("basis reads %q", b)
	}
}

func TestSymlink(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "l")
	tg := New(Options{})
	for i, target := range []string{"/etc/passwd", "relative/target", "/nonexistent"} {
		rec := state.FileRecord{Kind: state.KindSymlink, UID: 11, GID: 12, Target: target, MtimeNs: mtime + int64(i)}
		if err := tg.Symlink(p, rec); err != nil {
			t.Fatal(err)
		}
		got := lstat(t, p)
		if got.Kind != state.KindSymlink || got.Target != target || got.UID != 11 || got.GID != 12 || got.MtimeNs != rec.MtimeNs {
			t.Errorf("got %+v, want %+v", got, rec)
		}
	}
	// SetMeta on a symlink changes the link, never what it points to.
	f := filepath.Join(dir, "file")
	os.WriteFile(f, []byte("x"), 0644)
	if err := tg.Symlink(p, state.FileRecord{Kind: state.KindSymlink, Target: f}); err != nil {
		t.Fatal(err)
	}
	if err := tg.SetMeta(p, state.FileRecord{Kind: state.KindSymlink, UID: 99, GID: 98, MtimeNs: mtime}); err != nil {
		t.Fatal(err)
	}
	if l, fr := lstat(t, p), lstat(t, f); l.UID != 99 || fr.UID != 0 || fr.MtimeNs == mtime {
		t.Errorf("link %+v, file %+v", l, fr)
	}
	// Writing a file over the symlink replaces the link, not its target.
	if err := tg.WriteFile(p, regRec("new", 0644, 0, 0, mtime), fillWith("new")); err != nil {
		t.Fatal(err)
	}
	if lstat(t, p).Kind != state.KindReg || readFile(t, f) != "x" {
		t.Error("write through the symlink")
	}
	if l := temps(t, dir); len(l) != 0 {
		t.Errorf("temp files left: %v", l)
	}
}

func TestSpecial(t *testing.T) {
	needRoot(t)
	tests := []struct {
		name string
		rec  state.FileRecord
	}{
		{"fifo", state.FileRecord{Kind: state.KindFifo, Mode: 0620, UID: 5, GID: 6, MtimeNs: mtime}},
		{"chr 1,3", state.FileRecord{Kind: state.KindChr, Mode: 0666, UID: 0, GID: 0, MtimeNs: mtime, Rdev: unix.Mkdev(1, 3)}},
		{"blk 7,0", state.FileRecord{Kind: state.KindBlk, Mode: 0660, UID: 0, GID: 6, MtimeNs: mtime, Rdev: unix.Mkdev(7, 0)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "n")
			os.WriteFile(p, []byte("was a file"), 0644)
			if err := New(Options{}).Special(p, tc.rec); err != nil {
				t.Fatal(err)
			}
			got := lstat(t, p)
			got.CtimeNs, got.Dev, got.Ino, got.Nlink = 0, 0, 0, 0
			if got != tc.rec {
				t.Errorf("got %+v, want %+v", got, tc.rec)
			}
		})
	}
	t.Run("socket skipped", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "s")
		if err := New(Options{}).Special(p, state.FileRecord{Kind: state.KindSock}); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket path exists: %v", err)
		}
	})
}

func TestLink(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "sub", "b")
	tg := New(Options{})
	rec := regRec("shared", 0640, 3, 4, mtime)
	if err := tg.WriteFile(a, rec, fillWith("shared")); err != nil {
		t.Fatal(err)
	}
	if err := tg.MkdirParents(b); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(b, []byte("independent"), 0644)
	for range 2 { // the second call finds the link in place
		if err := tg.Link(b, a, rec); err != nil {
			t.Fatal(err)
		}
		ra, rb := lstat(t, a), lstat(t, b)
		if ra.Ino != rb.Ino || ra.Nlink != 2 || rb.UID != 3 || rb.Mode != 0640 || rb.MtimeNs != mtime {
			t.Errorf("a %+v, b %+v", ra, rb)
		}
		if l := temps(t, filepath.Dir(b)); len(l) != 0 {
			t.Errorf("temp files left: %v", l)
		}
	}
	if err := tg.Link(filepath.Join(dir, "c"), filepath.Join(dir, "missing"), rec); err == nil {
		t.Error("link to a missing file succeeded")
	}
}

func TestDelete(t *testing.T) {
	needRoot(t)
	tests := []struct {
		name    string
		setup   func(p string)
		wantErr error
		gone    bool
	}{
		{"file", func(p string) { os.WriteFile(p, nil, 0644) }, nil, true},
		{"symlink to dir", func(p string) { os.Symlink("/etc", p) }, nil, true},
		{"empty dir", func(p string) { os.Mkdir(p, 0755) }, nil, true},
		{"absent", func(p string) {}, nil, true},
		{"non-empty dir", func(p string) {
			os.Mkdir(p, 0755)
			os.WriteFile(filepath.Join(p, "excluded.local"), nil, 0644)
		}, ErrNotEmpty, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "x")
			tc.setup(p)
			err := New(Options{}).Delete(p)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr == ErrNotEmpty && !strings.Contains(err.Error(), "excluded.local") {
				t.Errorf("error does not name what is left: %v", err)
			}
			_, serr := os.Lstat(p)
			if gone := errors.Is(serr, os.ErrNotExist); gone != tc.gone {
				t.Errorf("gone = %v, want %v", gone, tc.gone)
			}
		})
	}
	if err := New(Options{}).Delete("/nonexistent-dir-xyz/f"); err != nil {
		t.Errorf("delete under a missing parent: %v", err)
	}
}

func TestDirMtimeSurvives(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	d := filepath.Join(root, "d")
	tg := New(Options{})
	drec := state.FileRecord{Kind: state.KindDir, Mode: 02750, UID: 7, GID: 8, MtimeNs: mtime}
	if err := tg.Mkdir(d, drec); err != nil {
		t.Fatal(err)
	}
	if got := lstat(t, d); got.Mode != 02750 || got.UID != 7 || got.GID != 8 {
		t.Errorf("after Mkdir %+v", got)
	}
	for i := range 3 {
		c := fmt.Sprint("c", i)
		if err := tg.WriteFile(filepath.Join(d, c), regRec(c, 0644, 0, 0, mtime), fillWith(c)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tg.SetDirMeta(d, drec); err != nil {
		t.Fatal(err)
	}
	if got := lstat(t, d); got.MtimeNs != mtime || got.Mode != 02750 {
		t.Errorf("dir mtime %d, want %d (mode %o)", got.MtimeNs, mtime, got.Mode)
	}
	// Mkdir on an existing directory fixes owner and mode.
	drec.Mode, drec.UID = 0700, 9
	if err := tg.Mkdir(d, drec); err != nil {
		t.Fatal(err)
	}
	if got := lstat(t, d); got.Mode != 0700 || got.UID != 9 {
		t.Errorf("after second Mkdir %+v", got)
	}
	// Mkdir over a file replaces it.
	f := filepath.Join(root, "f")
	os.WriteFile(f, nil, 0644)
	if err := tg.Mkdir(f, drec); err != nil {
		t.Fatal(err)
	}
	if lstat(t, f).Kind != state.KindDir {
		t.Error("file not replaced by a directory")
	}
	if err := tg.SetDirMeta(filepath.Join(d, "c0"), drec); err == nil {
		t.Error("SetDirMeta on a file succeeded")
	}
}

func TestCheck(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	real := filepath.Join(root, "real")
	os.Mkdir(real, 0755)
	os.Symlink(real, filepath.Join(root, "link"))
	os.WriteFile(filepath.Join(root, "file"), nil, 0644)
	allowed := func(p string, isDir bool) bool { return strings.HasPrefix(p, root+"/") }
	tg := New(Options{Allowed: allowed})
	tests := []struct {
		path   string
		reason string // "" = allowed
	}{
		{root + "/real/x", ""},
		{root + "/missing/deeper/x", ""},
		{root + "/link", ""}, // the final component may be a symlink
		{root + "/../etc/passwd", "escapes with .."},
		{"relative/path", "not absolute"},
		{root + "/a\x00b", "NUL"},
		{root + "/./x", ". component"},
		{root + "//x", "empty component"},
		{root + "/x/", "empty component"},
		{root + "/link/x", "parent " + root + "/link is a symlink"},
		{root + "/link/missing/x", "is a symlink"},
		{"/etc/passwd", "not in this node's include set"},
		{"/", "root directory"},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			err := tg.Check(tc.path)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var re *RefusedError
			if !errors.As(err, &re) || !errors.Is(err, ErrRefused) || !strings.Contains(re.Reason, tc.reason) {
				t.Fatalf("err = %v, want refusal %q", err, tc.reason)
			}
		})
	}
	// Every operation confines the same way: nothing is written through the link.
	p := root + "/link/new"
	errs := map[string]error{
		"WriteFile": tg.WriteFile(p, regRec("x", 0644, 0, 0, 0), fillWith("x")),
		"Mkdir":     tg.Mkdir(p, state.FileRecord{Mode: 0755}),
		"Symlink":   tg.Symlink(p, state.FileRecord{Target: "/"}),
		"Special":   tg.Special(p, state.FileRecord{Kind: state.KindFifo}),
		"Delete":    tg.Delete(p),
		"SetMeta":   tg.SetMeta(p, state.FileRecord{}),
		"Link":      tg.Link(p, root+"/file", state.FileRecord{}),
		"Parents":   tg.MkdirParents(root + "/link/a/b"),
	}
	_, _, errs["Current"] = tg.Current(p)
	_, errs["OpenBasis"] = tg.OpenBasis(p)
	for op, err := range errs {
		if !errors.Is(err, ErrRefused) {
			t.Errorf("%s through a symlinked dir: err = %v, want refusal", op, err)
		}
	}
	if ents, _ := os.ReadDir(real); len(ents) != 0 {
		t.Errorf("written through the symlink: %v", ents)
	}
	if err := tg.WriteFile("/etc/ocf-csync-test", regRec("x", 0644, 0, 0, 0), fillWith("x")); !errors.Is(err, ErrRefused) {
		t.Errorf("write outside Allowed: %v", err)
	}
}

func TestBackupRotation(t *testing.T) {
	needRoot(t)
	tests := []struct {
		name string
		gens int
		want []string // backups newest first after 6 overwrites of v0
	}{
		{"4 generations", 4, []string{"v5", "v4", "v3", "v2"}},
		{"2 generations", 2, []string{"v5", "v4"}},
		{"1 generation keeps nothing", 1, nil},
		{"0 keeps nothing", 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			bdir := filepath.Join(root, "backup")
			p := filepath.Join(root, "data", "f")
			os.Mkdir(filepath.Dir(p), 0755)
			tg := New(Options{Backup: Backup{Dir: bdir, Generations: tc.gens}})
			for i := range 7 {
				v := fmt.Sprint("v", i)
				if err := tg.WriteFile(p, regRec(v, 0640, 21, 22, mtime+int64(i)), fillWith(v)); err != nil {
					t.Fatal(err)
				}
			}
			var got []string
			for g := 1; g <= tc.gens+1; g++ {
				b, err := os.ReadFile(BackupPath(bdir, p, g))
				if err != nil {
					continue
				}
				got = append(got, string(b))
				r := lstat(t, BackupPath(bdir, p, g))
				if r.UID != 21 || r.GID != 22 || r.Mode != 0640 || r.MtimeNs != mtime+int64(6-g) {
					t.Errorf("generation %d metadata %+v", g, r)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("backups %v, want %v", got, tc.want)
			}
			files := 0
			filepath.WalkDir(bdir, func(_ string, e os.DirEntry, _ error) error {
				if e != nil && !e.IsDir() {
					files++
				}
				return nil
			})
			if files != len(tc.want) {
				t.Errorf("%d files in the backup tree, want %d", files, len(tc.want))
			}
			if len(tc.want) > 0 {
				if r := lstat(t, filepath.Dir(BackupPath(bdir, p, 1))); r.Mode != 0700 {
					t.Errorf("backup dir mode %o, want 0700", r.Mode)
				}
				// Delete backs up too.
				if err := tg.Delete(p); err != nil {
					t.Fatal(err)
				}
				if readFile(t, BackupPath(bdir, p, 1)) != "v6" {
					t.Error("deleted file not backed up")
				}
			}
		})
	}
	if got := BackupPath("/var/backup", "/etc/x", 1); got != "/var/backup/etc/x" {
		t.Errorf("BackupPath gen 1 = %s", got)
	}
	if got := BackupPath("/var/backup", "/etc/x", 3); got != "/var/backup/etc/x.2" {
		t.Errorf("BackupPath gen 3 = %s", got)
	}
}

// A backup of a file with other hardlinks is a copy, so later in-place
// writes to the other name do not alter it.
func TestBackupOfHardlinkedFileIsCopy(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	bdir := filepath.Join(root, "backup")
	a, b := filepath.Join(root, "a"), filepath.Join(root, "b")
	os.WriteFile(a, []byte("old"), 0640)
	os.Chown(a, 31, 32)
	os.Link(a, b)
	tg := New(Options{Backup: Backup{Dir: bdir, Generations: 3}})
	if err := tg.WriteFile(a, regRec("new", 0644, 0, 0, mtime), fillWith("new")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(b, []byte("changed in place"), 0640)
	bp := BackupPath(bdir, a, 1)
	if readFile(t, bp) != "old" {
		t.Errorf("backup holds %q", readFile(t, bp))
	}
	if r := lstat(t, bp); r.UID != 31 || r.GID != 32 || r.Mode != 0640 || r.Nlink != 1 {
		t.Errorf("backup %+v", r)
	}
	if l := temps(t, filepath.Dir(bp)); len(l) != 0 {
		t.Errorf("temp files left: %v", l)
	}
}

func TestMkdirParents(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	os.Chown(root, 50, 51)
	p := filepath.Join(root, "a", "b", "c", "file")
	tg := New(Options{})
	if err := tg.MkdirParents(p); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"a", "a/b", "a/b/c"} {
		r := lstat(t, filepath.Join(root, d))
		if r.Kind != state.KindDir || r.Mode != 0755 || r.UID != 50 || r.GID != 51 {
			t.Errorf("%s: %+v", d, r)
		}
	}
	if err := tg.WriteFile(p, regRec("x", 0644, 0, 0, 0), fillWith("x")); err != nil {
		t.Fatal(err)
	}
	if err := tg.MkdirParents(p); err != nil {
		t.Errorf("second call: %v", err)
	}
	// A file in the way is an error, not a silent success.
	if err := tg.MkdirParents(filepath.Join(p, "under-a-file")); err == nil {
		t.Error("MkdirParents under a regular file succeeded")
	}
	// Without MkdirParents, a write under a missing parent fails clearly.
	err := tg.WriteFile(filepath.Join(root, "no", "f"), regRec("x", 0644, 0, 0, 0), fillWith("x"))
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), root+"/no") {
		t.Errorf("write under a missing parent: %v", err)
	}
}

func TestCleanTemps(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	keep := []string{"regular", ".hidden", ".x.ocf-csync.ABCDEF", ".x.ocf-csync.abc"}
	for _, n := range append([]string{tempName("f"), tempName("g")}, keep...) {
		os.WriteFile(filepath.Join(dir, n), nil, 0600)
	}
	tg := New(Options{})
	if n, err := tg.CleanTemps(dir); err != nil || n != 0 {
		t.Errorf("CleanTemps removed %d fresh temps (err %v), want 0", n, err)
	}
	if n, err := tg.CleanTempsOlder(dir, 0); err != nil || n != 2 {
		t.Errorf("CleanTempsOlder removed %d (err %v), want 2", n, err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != len(keep) {
		t.Errorf("left %v, want %v", ents, keep)
	}
	long := tempName(strings.Repeat("n", 255))
	if len(long) > 255 || !IsTemp(long) {
		t.Errorf("temp name for a long name: %d bytes, IsTemp %v", len(long), IsTemp(long))
	}
}

func TestTempDir(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	dir, tmpd := filepath.Join(root, "data"), filepath.Join(root, "tmp")
	os.Mkdir(dir, 0755)
	os.Mkdir(tmpd, 0700)
	var st, shm unix.Stat_t
	if unix.Stat(root, &st) != nil || unix.Stat("/dev/shm", &shm) != nil || st.Dev == shm.Dev {
		t.Skip("needs /dev/shm on another file system than the test's temp dir to exercise the fallback")
	}
	tests := []struct {
		name, tempDir, wantIn, wantLog string
	}{
		{"same file system", tmpd, tmpd, ""},
		{"other file system falls back", "/dev/shm", dir, "another file system"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			tg := New(Options{TempDir: tc.tempDir, Logger: slogTo(&logs)})
			var seen []string
			beforeRename = func() { seen = temps(t, tc.wantIn) }
			defer func() { beforeRename = nil }()
			p := filepath.Join(dir, "f")
			if err := tg.WriteFile(p, regRec(tc.name, 0644, 0, 0, mtime), fillWith(tc.name)); err != nil {
				t.Fatal(err)
			}
			if readFile(t, p) != tc.name {
				t.Error("content")
			}
			if len(seen) != 1 {
				t.Errorf("temp files in %s before the rename: %v, want one", tc.wantIn, seen)
			}
			if !strings.Contains(logs.String(), tc.wantLog) {
				t.Errorf("log %q lacks %q", logs.String(), tc.wantLog)
			}
			if l := append(temps(t, dir), temps(t, tmpd)...); len(l) != 0 {
				t.Errorf("temp files left: %v", l)
			}
		})
	}
}

func TestDeferSync(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	tg := New(Options{DeferSync: true})
	for i := range 5 {
		c := fmt.Sprint(i)
		if err := tg.WriteFile(filepath.Join(dir, c), regRec(c, 0644, 0, 0, mtime), fillWith(c)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tg.Mkdir(filepath.Join(dir, "d"), state.FileRecord{Mode: 0755}); err != nil {
		t.Fatal(err)
	}
	if n := len(tg.pending); n != 1 {
		t.Errorf("%d file systems pending, want 1", n)
	}
	if err := tg.Sync(); err != nil {
		t.Fatal(err)
	}
	if tg.pending != nil {
		t.Error("Sync left file systems pending")
	}
	if readFile(t, filepath.Join(dir, "4")) != "4" {
		t.Error("content")
	}
}

// BenchmarkWriteSmall measures the per-file cost of an atomic write
// (temp, fsync, rename, directory fsync), which bounds many-small-file syncs.
func BenchmarkWriteSmall(b *testing.B) {
	for _, deferSync := range []bool{false, true} {
		b.Run(fmt.Sprint("defer=", deferSync), func(b *testing.B) {
			dir := b.TempDir()
			tg := New(Options{DeferSync: deferSync})
			rec := regRec("small file\n", 0644, 0, 0, mtime)
			for i := 0; b.Loop(); i++ {
				if err := tg.WriteFile(filepath.Join(dir, fmt.Sprint(i%benchNames)), rec, fillWith("small file\n")); err != nil {
					b.Fatal(err)
				}
			}
			if err := tg.Sync(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// benchNames is how many names BenchmarkWriteSmall cycles through; this many
// means every write creates a new file, as in an initial sync.
var benchNames = 1 << 30

// #11 finding 3: symlinks planted in the backup tree are never followed. A
// peer that can write inside the backup directory (it lies in an include)
// plants one; the next backup must not write through it.
func TestBackupRefusesSymlinksInBackupTree(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, bdir, target, outside string)
		hl    bool // the target has a second name: the backup is a copy, not a link
	}{
		{"mirrored parent is a symlink", func(t *testing.T, bdir, target, outside string) {
			parent := filepath.Dir(BackupPath(bdir, target, 1))
			os.MkdirAll(filepath.Dir(parent), 0700)
			if err := os.Symlink(outside, parent); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"mirrored parent is a symlink, copy", func(t *testing.T, bdir, target, outside string) {
			parent := filepath.Dir(BackupPath(bdir, target, 1))
			os.MkdirAll(filepath.Dir(parent), 0700)
			if err := os.Symlink(outside, parent); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"backup directory itself is a symlink", func(t *testing.T, bdir, target, outside string) {
			if err := os.Symlink(outside, bdir); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"a generation is a symlink", func(t *testing.T, bdir, target, outside string) {
			g1 := BackupPath(bdir, target, 1)
			os.MkdirAll(filepath.Dir(g1), 0700)
			if err := os.Symlink(filepath.Join(outside, "passwd"), g1); err != nil {
				t.Fatal(err)
			}
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			bdir := filepath.Join(root, "data", "backup")
			target := filepath.Join(root, "data", "etc", "passwd")
			outside := filepath.Join(root, "real-etc")
			os.MkdirAll(filepath.Dir(target), 0755)
			os.MkdirAll(outside, 0755)
			if err := os.WriteFile(target, []byte("old synced file\n"), 0644); err != nil {
				t.Fatal(err)
			}
			if tc.hl {
				os.Link(target, target+".other-name")
			}
			victim := filepath.Join(outside, "passwd")
			os.WriteFile(victim, []byte("root:x:0:0\n"), 0644)
			tc.plant(t, bdir, target, outside)

			tg := New(Options{Backup: Backup{Dir: bdir, Generations: 3}})
			err := tg.WriteFile(target, regRec("new", 0644, 0, 0, mtime), fillWith("new"))
			if got := readFile(t, victim); got != "root:x:0:0\n" {
				t.Fatalf("the backup wrote through the planted symlink: %s holds %q", victim, got)
			}
			if names, _ := os.ReadDir(outside); len(names) != 1 {
				t.Errorf("the backup created files outside its tree: %v", names)
			}
			if _, serr := os.Lstat(target); serr != nil || (err == nil && readFile(t, target) != "new") {
				t.Errorf("target after a write with a refused backup: %v, %v", err, serr)
			}
		})
	}
}

// Lstat (the receiver's view of a path, through the directory cache)
// describes what scan.Lstat does, says absent for a missing name or
// parent, and never looks through a parent that is a symlink.
func TestTargetLstat(t *testing.T) {
	root := t.TempDir()
	real := filepath.Join(root, "real")
	os.Mkdir(real, 0755)
	os.WriteFile(filepath.Join(real, "f"), []byte("abc"), 0640)
	os.Symlink("f", filepath.Join(real, "l"))
	os.Symlink(real, filepath.Join(root, "link"))
	cached := New(Options{CacheDir: true})
	plain := New(Options{})
	for _, tg := range []*Target{cached, plain} {
		for _, tc := range []struct {
			path string
			ok   bool
			err  string
		}{
			{real + "/f", true, ""},
			{real + "/l", true, ""},
			{real, true, ""},
			{real + "/missing", false, ""},
			{root + "/missing/deeper/x", false, ""},
			{root + "/link", true, ""},
			{root + "/link/f", false, "is a symlink"},
		} {
			rec, ok, err := tg.Lstat(tc.path)
			switch {
			case tc.err != "":
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("Lstat(%s) = %+v, %v, %v; want an error with %q", tc.path, rec, ok, err, tc.err)
				}
				continue
			case err != nil || ok != tc.ok:
				t.Errorf("Lstat(%s) = ok %v, %v; want ok %v", tc.path, ok, err, tc.ok)
				continue
			case !ok:
				continue
			}
			if want := lstat(t, tc.path); rec != want {
				t.Errorf("Lstat(%s) = %+v, want %+v (scan.Lstat)", tc.path, rec, want)
			}
		}
	}
}
