package scan

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ocf-csync/syncer/state"
)

func TestClassify(t *testing.T) {
	base := state.FileRecord{Kind: state.KindReg, Mode: 0644, UID: 1, GID: 1, Size: 3,
		MtimeNs: 100, CtimeNs: 100, Dev: 1, Ino: 10, Nlink: 1, Hash: state.Hash{1}}
	with := func(f func(r *state.FileRecord)) *state.FileRecord {
		r := base
		f(&r)
		return &r
	}
	link := state.FileRecord{Kind: state.KindSymlink, Target: "a", MtimeNs: 1, CtimeNs: 1}
	cases := []struct {
		name     string
		old, cur *state.FileRecord
		ig       state.Ignore
		hash     bool
		want     change
	}{
		{"new", nil, &base, state.Ignore{}, true, added},
		{"same", &base, with(func(*state.FileRecord) {}), state.Ignore{}, false, unchanged},
		{"content", &base, with(func(r *state.FileRecord) { r.CtimeNs = 200; r.Hash = state.Hash{2} }), state.Ignore{}, true, modified},
		{"size", &base, with(func(r *state.FileRecord) { r.Size = 4; r.Hash = state.Hash{2} }), state.Ignore{}, true, modified},
		{"touch", &base, with(func(r *state.FileRecord) { r.MtimeNs = 200; r.CtimeNs = 200 }), state.Ignore{}, true, modified},
		{"chmod", &base, with(func(r *state.FileRecord) { r.Mode = 0600; r.CtimeNs = 200 }), state.Ignore{}, true, modified},
		{"chmod ignored", &base, with(func(r *state.FileRecord) { r.Mode = 0600; r.CtimeNs = 200 }), state.Ignore{Mode: true}, true, statOnly},
		{"chown", &base, with(func(r *state.FileRecord) { r.UID = 7; r.CtimeNs = 200 }), state.Ignore{}, true, modified},
		{"chown ignored", &base, with(func(r *state.FileRecord) { r.UID = 7; r.GID = 7; r.CtimeNs = 200 }), state.Ignore{UID: true, GID: true}, true, statOnly},
		{"ctime only", &base, with(func(r *state.FileRecord) { r.CtimeNs = 200 }), state.Ignore{}, true, statOnly},
		{"inode only", &base, with(func(r *state.FileRecord) { r.Ino = 11 }), state.Ignore{}, true, statOnly},
		{"nlink only", &base, with(func(r *state.FileRecord) { r.Nlink = 2; r.CtimeNs = 200 }), state.Ignore{}, true, statOnly},
		{"file to dir", &base, &state.FileRecord{Kind: state.KindDir, Mode: 0755}, state.Ignore{}, false, modified},
		{"symlink retarget", &link, &state.FileRecord{Kind: state.KindSymlink, Target: "b", MtimeNs: 1, CtimeNs: 2}, state.Ignore{}, false, modified},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := needsHash(c.old, c.cur); got != c.hash {
				t.Errorf("needsHash = %v, want %v", got, c.hash)
			}
			if got := classify(c.old, c.cur, c.ig); got != c.want {
				t.Errorf("classify = %v, want %v", got, c.want)
			}
		})
	}
}

func writeFile(t *testing.T, p, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0644); err != nil {
		t.Fatal(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// rel turns absolute paths below root into root-relative ones ("." for root).
func rel(root string, ps []string) []string {
	out := []string{}
	for _, p := range ps {
		r, _ := filepath.Rel(root, p)
		out = append(out, r)
	}
	return out
}

func TestCheckChanges(t *testing.T) {
	past := time.Unix(1_600_000_000, 123456789)
	cases := []struct {
		name      string
		setup     func(t *testing.T, r string)
		mutate    func(t *testing.T, r string, sel *fakeSel)
		ignore    state.Ignore
		wantDirty []string // root-relative
		wantGone  []string // records that must not exist after
		check     func(t *testing.T, r string, fs *fakeStore, before map[string]state.FileRecord, res Result)
	}{
		{
			name:      "new file",
			mutate:    func(t *testing.T, r string, _ *fakeSel) { writeFile(t, r+"/b", "new") },
			wantDirty: []string{".", "b"}, // the root's mtime changed too
			check: func(t *testing.T, r string, fs *fakeStore, _ map[string]state.FileRecord, res Result) {
				if res.New != 1 || res.Hashed != 1 {
					t.Errorf("New=%d Hashed=%d, want 1, 1", res.New, res.Hashed)
				}
			},
		},
		{
			name: "same-size rewrite with mtime restored",
			mutate: func(t *testing.T, r string, _ *fakeSel) {
				writeFile(t, r+"/a", "AAA")
				must(t, os.Chtimes(r+"/a", past, past))
			},
			wantDirty: []string{"a"},
			check: func(t *testing.T, r string, fs *fakeStore, before map[string]state.FileRecord, res Result) {
				if res.Changed != 1 {
					t.Errorf("Changed = %d, want 1", res.Changed)
				}
				if fs.files[r+"/a"].Hash == before[r+"/a"].Hash {
					t.Error("hash not updated")
				}
			},
		},
		{
			name:      "touch only",
			mutate:    func(t *testing.T, r string, _ *fakeSel) { must(t, os.Chtimes(r+"/a", time.Now(), time.Now())) },
			wantDirty: []string{"a"},
			check: func(t *testing.T, r string, fs *fakeStore, before map[string]state.FileRecord, res Result) {
				if fs.files[r+"/a"].Hash != before[r+"/a"].Hash {
					t.Error("hash changed on touch")
				}
				if fs.files[r+"/a"].MtimeNs == before[r+"/a"].MtimeNs {
					t.Error("new mtime not recorded")
				}
			},
		},
		{
			name:      "chmod",
			mutate:    func(t *testing.T, r string, _ *fakeSel) { must(t, os.Chmod(r+"/a", 0600)) },
			wantDirty: []string{"a"},
		},
		{
			name:   "chmod with ignore mod",
			mutate: func(t *testing.T, r string, _ *fakeSel) { must(t, os.Chmod(r+"/a", 0600)) },
			ignore: state.Ignore{Mode: true},
			check: func(t *testing.T, r string, fs *fakeStore, _ map[string]state.FileRecord, res Result) {
				if res.MetaOnly != 1 || fs.files[r+"/a"].Mode != 0600 {
					t.Errorf("MetaOnly=%d mode=%o, want re-recorded 0600", res.MetaOnly, fs.files[r+"/a"].Mode)
				}
			},
		},
		{
			name: "chown",
			mutate: func(t *testing.T, r string, _ *fakeSel) {
				if err := os.Lchown(r+"/a", 4321, 4321); err != nil {
					t.Skipf("chown needs root: %v", err)
				}
			},
			wantDirty: []string{"a"},
		},
		{
			name:   "ctime only (chmod to the same mode)",
			mutate: func(t *testing.T, r string, _ *fakeSel) { must(t, os.Chmod(r+"/a", 0644)) },
			check: func(t *testing.T, r string, fs *fakeStore, before map[string]state.FileRecord, res Result) {
				if fs.files[r+"/a"].CtimeNs == before[r+"/a"].CtimeNs {
					t.Fatal("ctime did not change")
				}
				if res.MetaOnly != 1 || res.Hashed != 1 {
					t.Errorf("MetaOnly=%d Hashed=%d, want 1, 1", res.MetaOnly, res.Hashed)
				}
			},
		},
		{
			name:      "delete file",
			mutate:    func(t *testing.T, r string, _ *fakeSel) { must(t, os.Remove(r+"/a")) },
			wantDirty: []string{".", "a"},
			wantGone:  []string{"a"},
		},
		{
			name:      "delete whole dir",
			mutate:    func(t *testing.T, r string, _ *fakeSel) { must(t, os.RemoveAll(r+"/d")) },
			wantDirty: []string{".", "d", "d/s", "d/s/z", "d/x"},
			wantGone:  []string{"d", "d/s", "d/s/z", "d/x"},
			check: func(t *testing.T, r string, fs *fakeStore, _ map[string]state.FileRecord, res Result) {
				if res.Deleted != 4 {
					t.Errorf("Deleted = %d, want 4", res.Deleted)
				}
			},
		},
		{
			name: "symlink retarget",
			mutate: func(t *testing.T, r string, _ *fakeSel) {
				must(t, os.Remove(r+"/l"))
				must(t, os.Symlink("elsewhere", r+"/l"))
			},
			wantDirty: []string{".", "l"},
			check: func(t *testing.T, r string, fs *fakeStore, _ map[string]state.FileRecord, res Result) {
				if got := fs.files[r+"/l"].Target; got != "elsewhere" {
					t.Errorf("target = %q", got)
				}
			},
		},
		{
			name: "file becomes dir",
			mutate: func(t *testing.T, r string, _ *fakeSel) {
				must(t, os.Remove(r+"/a"))
				writeFile(t, r+"/a/c", "c")
			},
			wantDirty: []string{".", "a", "a/c"},
		},
		{
			name: "dir becomes file",
			mutate: func(t *testing.T, r string, _ *fakeSel) {
				must(t, os.RemoveAll(r+"/d"))
				writeFile(t, r+"/d", "now a file")
			},
			wantDirty: []string{".", "d", "d/s", "d/s/z", "d/x"},
			wantGone:  []string{"d/s", "d/s/z", "d/x"},
		},
		{
			name:      "dir newly excluded",
			mutate:    func(t *testing.T, r string, sel *fakeSel) { sel.exclude = []string{r + "/d"} },
			wantDirty: []string{"d", "d/s", "d/s/z", "d/x"},
			wantGone:  []string{"d", "d/s", "d/s/z", "d/x"},
			check: func(t *testing.T, r string, fs *fakeStore, _ map[string]state.FileRecord, res Result) {
				if res.Scanned >= 7 {
					t.Errorf("Scanned = %d: excluded dir was entered", res.Scanned)
				}
			},
		},
		{
			name: "pass-through dir vanishes",
			setup: func(t *testing.T, r string) {
				writeFile(t, r+"/pt/in/f", "f")
			},
			mutate: func(t *testing.T, r string, sel *fakeSel) {
				must(t, os.RemoveAll(r+"/pt"))
			},
			wantDirty: []string{".", "pt/in", "pt/in/f"},
			wantGone:  []string{"pt/in", "pt/in/f"},
		},
		{
			name: "rename",
			mutate: func(t *testing.T, r string, _ *fakeSel) {
				must(t, os.Rename(r+"/a", r+"/a2"))
			},
			wantDirty: []string{".", "a", "a2"},
			wantGone:  []string{"a"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := t.TempDir()
			writeFile(t, r+"/a", "aaa")
			must(t, os.Chtimes(r+"/a", past, past))
			writeFile(t, r+"/d/x", "x")
			writeFile(t, r+"/d/s/z", "z")
			must(t, os.Symlink("a", r+"/l"))
			if c.setup != nil {
				c.setup(t, r)
			}
			sel := &fakeSel{roots: []string{r}, peers: []string{"p1", "p2"},
				passThrough: map[string]bool{r + "/pt": true}}
			fs := newFakeStore()
			ctx := context.Background()
			o := Options{Ignore: c.ignore, Workers: 3}
			res, err := Check(ctx, fs, sel, nil, false, o)
			must(t, err)
			if len(res.Errors) != 0 || res.Dirtied == 0 {
				t.Fatalf("first check: %+v", res)
			}
			if fs.files[r+"/pt"] != (state.FileRecord{}) {
				t.Fatal("pass-through dir recorded")
			}
			fs.clearDirty()
			before := maps(fs)
			c.mutate(t, r, sel)
			res, err = Check(ctx, fs, sel, nil, false, o)
			must(t, err)
			if len(res.Errors) != 0 {
				t.Errorf("errors: %v", res.Errors)
			}
			want := c.wantDirty
			if want == nil {
				want = []string{}
			}
			for _, peer := range sel.peers {
				if got := rel(r, fs.dirtyPaths(peer)); !slices.Equal(got, want) {
					t.Errorf("dirty for %s = %q, want %q", peer, got, want)
				}
			}
			if res.Dirtied != len(want) {
				t.Errorf("Dirtied = %d, want %d", res.Dirtied, len(want))
			}
			for _, g := range c.wantGone {
				if _, ok := fs.files[filepath.Join(r, g)]; ok {
					t.Errorf("record %s still there", g)
				}
			}
			if c.check != nil {
				c.check(t, r, fs, before, res)
			}
			// A third check finds nothing and writes nothing.
			fs.clearDirty()
			nb, nw := fs.batches, fs.walks
			res, err = Check(ctx, fs, sel, nil, false, o)
			must(t, err)
			if res.Dirtied != 0 || res.Hashed != 0 || fs.batches != nb || fs.walks != nw {
				t.Errorf("third check: %+v, batches %d→%d, walks %d→%d", res, nb, fs.batches, nw, fs.walks)
			}
		})
	}
}

func maps(fs *fakeStore) map[string]state.FileRecord {
	out := map[string]state.FileRecord{}
	for k, v := range fs.files {
		out[k] = v
	}
	return out
}

func TestCheckModes(t *testing.T) {
	r := t.TempDir()
	writeFile(t, r+"/a", "a")
	writeFile(t, r+"/d/b", "b")
	sel := &fakeSel{roots: []string{r}, peers: []string{"p1"}}
	ctx := context.Background()

	t.Run("init records without dirtying", func(t *testing.T) {
		fs := newFakeStore()
		res, err := Check(ctx, fs, sel, nil, false, Options{Init: true})
		must(t, err)
		if res.New != 4 || res.Dirtied != 0 || len(fs.dirtyPaths("p1")) != 0 {
			t.Errorf("init: %+v dirty %q", res, fs.dirtyPaths("p1"))
		}
		if len(fs.files) != 4 {
			t.Errorf("recorded %d files, want 4", len(fs.files))
		}
	})
	t.Run("force and mark time", func(t *testing.T) {
		fs := newFakeStore()
		now := time.Unix(1000, 5)
		_, err := Check(ctx, fs, sel, nil, false, Options{Force: true, Now: func() time.Time { return now }})
		must(t, err)
		d := fs.dirty["p1"][r+"/a"]
		if !d.Forced || d.MarkedNs != now.UnixNano() {
			t.Errorf("dirty record = %+v", d)
		}
	})
	t.Run("explicit paths", func(t *testing.T) {
		fs := newFakeStore()
		res, err := Check(ctx, fs, sel, []string{r + "/d", "/nonexistent/elsewhere", "/etc"}, false, Options{})
		must(t, err)
		if got := rel(r, fs.dirtyPaths("p1")); !slices.Equal(got, []string{"d"}) {
			t.Errorf("non-recursive dirty = %q", got)
		}
		var ni *NotIncludedError
		if len(res.Errors) != 2 || !errors.As(res.Errors[0], &ni) || !strings.Contains(res.Errors[0].Error(), "not in any group") {
			t.Errorf("errors = %v", res.Errors)
		}
		_, err = Check(ctx, fs, sel, []string{r + "/d"}, true, Options{})
		must(t, err)
		if got := rel(r, fs.dirtyPaths("p1")); !slices.Equal(got, []string{"d", "d/b"}) {
			t.Errorf("recursive dirty = %q", got)
		}
		// A deleted explicit path is recorded as deleted, with everything below.
		must(t, os.RemoveAll(r+"/d"))
		fs.clearDirty()
		res, err = Check(ctx, fs, sel, []string{r + "/d"}, true, Options{})
		must(t, err)
		if res.Deleted != 2 || len(fs.files) != 0 {
			t.Errorf("deleted %d, left %v", res.Deleted, fs.files)
		}
	})
	t.Run("mark", func(t *testing.T) {
		fs := newFakeStore()
		writeFile(t, r+"/d/b", "b")
		_, err := Check(ctx, fs, sel, nil, false, Options{Init: true})
		must(t, err)
		n, err := Mark(ctx, fs, sel, []string{r + "/d"}, false, Options{})
		must(t, err)
		if got := rel(r, fs.dirtyPaths("p1")); n != 1 || !slices.Equal(got, []string{"d"}) {
			t.Errorf("mark: %d %q", n, got)
		}
		n, err = Mark(ctx, fs, sel, []string{r, "/etc/passwd"}, true, Options{Force: true})
		var ni *NotIncludedError
		if !errors.As(err, &ni) || ni.Path != "/etc/passwd" {
			t.Errorf("mark err = %v", err)
		}
		if got := rel(r, fs.dirtyPaths("p1")); n != 4 || !slices.Equal(got, []string{".", "a", "d", "d/b"}) || !fs.dirty["p1"][r+"/a"].Forced {
			t.Errorf("mark -r: %d %q", n, got)
		}
	})
}

// cancelSel cancels the scan from inside the walk.
type cancelSel struct {
	fakeSel
	n      int
	cancel func()
}

func (c *cancelSel) Match(p string, isDir bool) (bool, bool) {
	if c.n++; c.n == 10 {
		c.cancel()
	}
	return c.fakeSel.Match(p, isDir)
}

// uncounted hides CountFiles, so the scanner decides about sweeps by itself.
type uncounted struct{ *fakeStore }

func (u uncounted) CountFiles() {}

func TestSweep(t *testing.T) {
	ctx := context.Background()
	t.Run("records outside every root", func(t *testing.T) {
		r := t.TempDir()
		writeFile(t, r+"/keep/a", "a")
		writeFile(t, r+"/old/b", "b")
		fs := newFakeStore()
		sel := &fakeSel{roots: []string{r + "/keep", r + "/old"}, peers: []string{"p"}}
		_, err := Check(ctx, fs, sel, nil, false, Options{})
		must(t, err)
		sel.roots = sel.roots[:1] // the config dropped a root
		res, err := Check(ctx, fs, sel, nil, false, Options{})
		must(t, err)
		if _, ok := fs.files[r+"/old/b"]; ok || res.Deleted != 2 || len(fs.files) != 2 {
			t.Errorf("deleted %d, left %d records", res.Deleted, len(fs.files))
		}
	})
	t.Run("pass-through root without a record counter", func(t *testing.T) {
		r := t.TempDir()
		writeFile(t, r+"/x/conf/a", "a")
		writeFile(t, r+"/y/conf/b", "b")
		fs := newFakeStore()
		// r and r/x, r/y are entered but not synced; their conf dirs are.
		sel := &fakeSel{roots: []string{r}, peers: []string{"p"},
			passThrough: map[string]bool{r: true, r + "/x": true, r + "/y": true}}
		st := uncounted{fs}
		_, err := Check(ctx, st, sel, nil, false, Options{})
		must(t, err)
		if len(fs.files) != 4 {
			t.Fatalf("recorded %d, want 4", len(fs.files))
		}
		must(t, os.RemoveAll(r+"/x"))
		fs.clearDirty()
		res, err := Check(ctx, st, sel, nil, false, Options{})
		must(t, err)
		if got := rel(r, fs.dirtyPaths("p")); res.Deleted != 2 || !slices.Equal(got, []string{"x/conf", "x/conf/a"}) {
			t.Errorf("deleted %d, dirty %q", res.Deleted, got)
		}
		// The same through an explicit recursive path (the root is empty
		// then: allowed explicitly).
		must(t, os.RemoveAll(r+"/y"))
		res, err = Check(ctx, st, sel, []string{r}, true, Options{AllowMassDelete: true})
		must(t, err)
		if res.Deleted != 2 || len(fs.files) != 0 {
			t.Errorf("deleted %d, left %d", res.Deleted, len(fs.files))
		}
	})
}

func TestCheckCancelled(t *testing.T) {
	r := t.TempDir()
	for i := range 50 {
		writeFile(t, filepath.Join(r, "d", string(rune('a'+i%26))+string(rune('a'+i/26)), "f"), "x")
	}
	ctx, cancel := context.WithCancel(context.Background())
	sel := &cancelSel{fakeSel: fakeSel{roots: []string{r}, peers: []string{"p"}}, cancel: cancel}
	fs := newFakeStore()
	res, err := Check(ctx, fs, sel, nil, false, Options{Workers: 1})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if res.Scanned >= 101 || len(fs.files) == 0 || len(fs.files) != res.New {
		t.Errorf("scanned %d, recorded %d of %d new: want a partial, committed scan", res.Scanned, len(fs.files), res.New)
	}
	if _, err := Check(ctx, fs, sel, nil, false, Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("check with a cancelled context: %v", err)
	}
}

func TestCleanPaths(t *testing.T) {
	got, err := cleanPaths([]string{"/a/b", "/a", "/ab", "/a/b/", "/c"}, true)
	must(t, err)
	if want := []string{"/a", "/ab", "/c"}; !slices.Equal(got, want) {
		t.Errorf("recursive = %q, want %q", got, want)
	}
	got, _ = cleanPaths([]string{"/a/b", "/a", "/a/b/"}, false)
	if want := []string{"/a", "/a/b"}; !slices.Equal(got, want) {
		t.Errorf("flat = %q, want %q", got, want)
	}
	if !isBelow("/x", "/") || isBelow("/", "/") || isBelow("/ab", "/a") || !isBelow("/a/b", "/a") {
		t.Error("isBelow")
	}
}

func TestCheckEntryErrors(t *testing.T) {
	r := t.TempDir()
	writeFile(t, r+"/ok", "ok")
	// A directory chain longer than PATH_MAX, built relative to dir fds:
	// the walk cannot open it by path, reports that and goes on.
	fd, err := unix.Open(r, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	must(t, err)
	comp := strings.Repeat("L", 255)
	for range 17 {
		must(t, unix.Mkdirat(fd, comp, 0755))
		nfd, err := unix.Openat(fd, comp, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		must(t, err)
		unix.Close(fd)
		fd = nfd
	}
	unix.Close(fd)
	fs := newFakeStore()
	sel := &fakeSel{roots: []string{r}, peers: []string{"p"}}
	res, err := Check(context.Background(), fs, sel, nil, false, Options{})
	must(t, err)
	if len(res.Errors) != 1 || !errors.Is(res.Errors[0], unix.ENAMETOOLONG) {
		t.Fatalf("errors = %v, want one ENAMETOOLONG", res.Errors)
	}
	if _, ok := fs.files[r+"/ok"]; !ok {
		t.Error("scan did not go on past the error")
	}
	// The unreadable subtree is never swept: a second check deletes nothing.
	res, err = Check(context.Background(), fs, sel, nil, false, Options{})
	must(t, err)
	if res.Deleted != 0 || len(res.Errors) != 1 {
		t.Errorf("second check: %+v", res)
	}
}
