package engine

import (
	"context"
	"path/filepath"
	"testing"

	"ocf-csync/syncer/state"
)

// A node that joined later (or missed files) has no base for what the
// others already agreed on: MarkUnsynced brings it up to date, and marks
// nothing for a peer that has everything.
func TestMarkUnsynced(t *testing.T) {
	nodes := setup(t, "a", "b", "c")
	a, c := nodes["a"], nodes["c"]
	write(t, filepath.Join(a.root, "x/one.txt"), "one")
	write(t, filepath.Join(a.root, "two.txt"), "two")
	if err := a.sync(t, nodes, Options{Peers: []string{"b"}}).Err(); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(c.root, "two.txt"), "two") // c has this one already, without a base
	b := a.st.NewBatch()                              // c missed it all: its dirty entries are gone
	_ = a.st.Dirty("c", func(p string, _ state.DirtyRecord) error { b.ClearDirty("c", p); return nil })
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	marked, err := MarkUnsynced(context.Background(), CompareOptions{View: a.view, Store: a.st, Connect: connector(nodes)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// the root, x, x/one.txt, and two.txt for its metadata only
	if marked["b"] != 0 || marked["c"] != 4 {
		t.Fatalf("MarkUnsynced = %v; want nothing for b and 4 entries for c", marked)
	}
	if _, ok, _ := a.st.GetBase("c", filepath.Join(a.root, "two.txt")); !ok {
		t.Errorf("two.txt, which c holds with the same content, got no base: its content would travel again")
	}
	if err := a.sync(t, nodes, Options{}).Err(); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(c.root, "x/one.txt")); got != "one" {
		t.Errorf("c has x/one.txt = %q after the push", got)
	}
	if marked, _ := MarkUnsynced(context.Background(), CompareOptions{View: a.view, Store: a.st, Connect: connector(nodes)}, nil); len(marked) != 0 {
		t.Errorf("after the push MarkUnsynced still marks %v", marked)
	}
}
