package scan

import (
	"sort"
	"strings"
	"sync"

	"ocf-csync/syncer/state"
)

// fakeStore is an in-memory Store with the key order of the real one.
type fakeStore struct {
	mu      sync.Mutex
	files   map[string]state.FileRecord
	dirty   map[string]map[string]state.DirtyRecord // peer -> path -> record
	roots   map[string]state.RootRecord
	batches int // NewBatch calls
	walks   int // WalkFiles calls
	commits int
}

func newFakeStore() *fakeStore {
	return &fakeStore{files: map[string]state.FileRecord{}, dirty: map[string]map[string]state.DirtyRecord{},
		roots: map[string]state.RootRecord{}}
}

func (f *fakeStore) RootRecords(fn func(state.RootRecord) error) error {
	f.mu.Lock()
	var rs []state.RootRecord
	for _, r := range f.roots {
		rs = append(rs, r)
	}
	f.mu.Unlock()
	sort.Slice(rs, func(i, j int) bool { return rs[i].Path < rs[j].Path })
	for _, r := range rs {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeStore) PutRoot(r state.RootRecord) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.roots[r.Path] = r
	return nil
}

func (f *fakeStore) DeleteRoot(p string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.roots, p)
	return nil
}

func (f *fakeStore) CountBelow(dir string, limit int) (int, error) {
	n := len(f.sorted(func(p string) bool { return isBelow(p, dir) }))
	if limit > 0 && n > limit {
		n = limit
	}
	return n, nil
}

func (f *fakeStore) GetFile(p string) (state.FileRecord, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.files[p]
	return r, ok, nil
}

func (f *fakeStore) sorted(keep func(string) bool) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for p := range f.files {
		if keep(p) {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

func (f *fakeStore) ListDir(dir string, fn func(string, *state.FileRecord) error) error {
	for _, p := range f.sorted(func(p string) bool { return p != "/" && parentOf(p) == dir }) {
		r, _, _ := f.GetFile(p)
		if err := fn(p[strings.LastIndexByte(p, '/')+1:], &r); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeStore) WalkFiles(root string, fn func(string, *state.FileRecord) error) error {
	f.mu.Lock()
	f.walks++
	f.mu.Unlock()
	for _, p := range f.sorted(func(p string) bool { return p == root || isBelow(p, root) }) {
		r, _, _ := f.GetFile(p)
		if err := fn(p, &r); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeStore) NewBatch() *fakeBatch {
	f.mu.Lock()
	f.batches++
	f.mu.Unlock()
	return &fakeBatch{st: f}
}

// dirtyPaths lists the dirty paths of peer.
func (f *fakeStore) dirtyPaths(peer string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for p := range f.dirty[peer] {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

func (f *fakeStore) clearDirty() {
	f.mu.Lock()
	f.dirty = map[string]map[string]state.DirtyRecord{}
	f.mu.Unlock()
}

type fakeBatch struct {
	st  *fakeStore
	ops []func()
}

func (b *fakeBatch) PutFile(p string, rec *state.FileRecord) {
	r := *rec
	b.ops = append(b.ops, func() { b.st.files[p] = r })
}

func (b *fakeBatch) DeleteFile(p string) {
	b.ops = append(b.ops, func() { delete(b.st.files, p) })
}

func (b *fakeBatch) MarkDirty(peer, p string, d state.DirtyRecord) {
	b.ops = append(b.ops, func() {
		if b.st.dirty[peer] == nil {
			b.st.dirty[peer] = map[string]state.DirtyRecord{}
		}
		b.st.dirty[peer][p] = d
	})
}

func (b *fakeBatch) Commit() error {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	for _, op := range b.ops {
		op()
	}
	b.ops = nil
	b.st.commits++
	return nil
}

func (b *fakeBatch) Cancel() { b.ops = nil }

// fakeSel includes everything below its roots except the excluded
// subtrees; passThrough directories are entered but not synced themselves.
type fakeSel struct {
	roots       []string
	exclude     []string
	passThrough map[string]bool
	peers       []string
}

func (s *fakeSel) Roots() []string { return s.roots }

func (s *fakeSel) under(p string) bool {
	for _, r := range s.roots {
		if p == r || isBelow(p, r) {
			return true
		}
	}
	return false
}

func (s *fakeSel) Match(p string, isDir bool) (synced, descend bool) {
	if !s.under(p) {
		return false, false
	}
	for _, e := range s.exclude {
		if p == e || isBelow(p, e) {
			return false, false
		}
	}
	if s.passThrough[p] {
		return false, isDir
	}
	return true, isDir
}

func (s *fakeSel) Peers(p string) []string {
	if !s.under(p) {
		return nil
	}
	return s.peers
}

func (f *fakeStore) CountFiles() (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.files), nil
}
