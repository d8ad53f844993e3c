package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	badger "github.com/dgraph-io/badger/v4"

	"ocf-csync/syncer/state"
)

// The sender's state database is damaged or lost in every way we could
// think of. Whatever opens, nothing of it turns into deletions on the peer
// or overwrites the peer's own unsynced edit; what does not open says to
// run `ocf-csync rebuild`; after the rebuild a sync deletes nothing, raises
// no conflict, and later edits and deletions flow again.
func TestDamagedSenderDB(t *testing.T) {
	damages := []struct {
		name string
		do   func(t *testing.T, dir string)
	}{
		{"sentinel gone", func(t *testing.T, dir string) {
			db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
			must(t, err)
			must(t, db.Update(func(txn *badger.Txn) error { return txn.Delete([]byte{'s'}) }))
			must(t, db.Close())
		}},
		{"MANIFEST truncated", func(t *testing.T, dir string) {
			must(t, os.Truncate(filepath.Join(dir, "MANIFEST"), 20))
		}},
		{"MANIFEST gone", func(t *testing.T, dir string) {
			must(t, os.Remove(filepath.Join(dir, "MANIFEST")))
		}},
		{"an sst deleted", func(t *testing.T, dir string) {
			ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
			if len(ssts) == 0 {
				t.Fatal("no .sst")
			}
			must(t, os.Remove(ssts[len(ssts)-1]))
		}},
		{"every sst deleted", func(t *testing.T, dir string) {
			ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
			for _, f := range ssts {
				must(t, os.Remove(f))
			}
		}},
		{"vlog truncated", func(t *testing.T, dir string) {
			vlogs, _ := filepath.Glob(filepath.Join(dir, "*.vlog"))
			for _, f := range vlogs {
				must(t, os.Truncate(f, 7))
			}
		}},
		{"KEYREGISTRY gone", func(t *testing.T, dir string) {
			must(t, os.Remove(filepath.Join(dir, "KEYREGISTRY")))
		}},
		{"emptied, marker kept", func(t *testing.T, dir string) {
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if !strings.HasPrefix(e.Name(), "ocf-csync.") {
					must(t, os.RemoveAll(filepath.Join(dir, e.Name())))
				}
			}
		}},
		{"replaced by an empty directory", func(t *testing.T, dir string) {
			must(t, os.RemoveAll(dir))
			must(t, os.Mkdir(dir, 0o700))
		}},
	}
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			nodes, _ := setupCfg(t, []string{"a", "b"}, "group g {\n  host a b; key KEY; include %data%;\n}\n")
			a, b := nodes["a"], nodes["b"]
			for i := range 40 {
				write(t, filepath.Join(a.root, fmt.Sprintf("d%d/f%02d", i%4, i)), fmt.Sprintf("v1 %d", i))
			}
			if err := a.sync(t, nodes, Options{}).Err(); err != nil {
				t.Fatal(err)
			}
			// Since the last sync: a deleted f01 and edited f02; b edited f03.
			must(t, os.Remove(filepath.Join(a.root, "d1/f01")))
			write(t, filepath.Join(a.root, "d2/f02"), "v2 on a")
			write(t, filepath.Join(b.root, "d3/f03"), "b's own edit")
			dir := a.st.Dir()
			must(t, a.st.Close())
			d.do(t, dir)

			ctx := context.Background()
			st, err := state.Open(ctx, state.Options{Dir: dir, Node: "a"})
			intact := false // the damage lost nothing badger needed
			if err != nil {
				t.Logf("open: %v", err)
				if !strings.Contains(err.Error(), "ocf-csync rebuild") {
					t.Errorf("the error does not name `ocf-csync rebuild`: %v", err)
				}
				if !errors.Is(err, state.ErrCorrupt) && !errors.Is(err, state.ErrNoSentinel) {
					t.Errorf("open error %v is neither ErrCorrupt nor ErrNoSentinel (exit code 4)", err)
				}
			} else {
				// It opened: whatever it believes, a sync deletes nothing
				// the sender still has and overwrites no edit of b's.
				n, _ := st.CountFiles()
				intact = n > 0
				t.Logf("the damaged DB opened with %d file records", n)
				a.st = st
				t.Cleanup(func() { st.Close() })
				res := a.sync(t, nodes, Options{})
				t.Logf("sync with the damaged DB: %v", res.Err())
				checkPeerSafe(t, a, b)
				must(t, st.Close())
			}

			// ocf-csync rebuild
			st, err = state.Open(ctx, state.Options{Dir: dir, Node: "a", AllowRebuild: true})
			must(t, err)
			if _, err := Rebuild(ctx, st, a.view, a.cfg.Ignore, nil); err != nil {
				t.Fatal(err)
			}
			must(t, st.Close())
			st, err = state.Open(ctx, state.Options{Dir: dir, Node: "a"})
			must(t, err)
			t.Cleanup(func() { st.Close() })
			a.st = st
			res := a.sync(t, nodes, Options{})
			if err := res.Err(); err != nil {
				t.Errorf("first sync after rebuild: %v", err)
			}
			if n := conflictCount(t, a.st) + conflictCount(t, b.st); n != 0 {
				t.Errorf("%d conflicts after the rebuild", n)
			}
			checkPeerSafe(t, a, b)
			if got := read(t, filepath.Join(b.root, "d2/f02")); got != "v2 on a" {
				t.Errorf("a's edit made before the loss did not reach b after the rebuild: %q", got)
			}
			if !intact && !exists(filepath.Join(b.root, "d1/f01")) {
				t.Error("a deletion reached b although the records of it were lost")
			}
			// Edits and deletions flow again, without conflicts.
			write(t, filepath.Join(a.root, "d0/f04"), "v3 after rebuild")
			must(t, os.Remove(filepath.Join(a.root, "d1/f05")))
			res = a.sync(t, nodes, Options{})
			if err := res.Err(); err != nil {
				t.Errorf("sync of an edit after rebuild: %v", err)
			}
			if got := read(t, filepath.Join(b.root, "d0/f04")); got != "v3 after rebuild" {
				t.Errorf("edit after rebuild did not reach b: %q", got)
			}
			if exists(filepath.Join(b.root, "d1/f05")) {
				t.Error("deletion after rebuild did not reach b")
			}
		})
	}
}

// checkPeerSafe: b still has every file a has (with a's content, or b's own
// edit of f03), so nothing a keeps was deleted or overwritten on b.
func checkPeerSafe(t *testing.T, a, b *node) {
	t.Helper()
	for i := range 40 {
		rel := fmt.Sprintf("d%d/f%02d", i%4, i)
		if !exists(filepath.Join(a.root, rel)) {
			continue
		}
		got, err := os.ReadFile(filepath.Join(b.root, rel))
		if err != nil {
			t.Errorf("b lost %s: %v", rel, err)
			continue
		}
		if i == 3 && string(got) != "b's own edit" {
			t.Errorf("b's own edit of %s was overwritten with %q", rel, got)
		}
	}
}
