package ha

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"ocf-csync/syncer/config"
	"ocf-csync/syncer/engine"
	"ocf-csync/syncer/engine/enginetest"
	"ocf-csync/syncer/scan"
	"ocf-csync/syncer/state"
)

func TestSort(t *testing.T) {
	f := func(content string, mtime int64) *state.FileRecord {
		r := &state.FileRecord{Kind: state.KindReg, Mode: 0o644, Size: int64(len(content)), MtimeNs: mtime}
		copy(r.Hash[:], content)
		return r
	}
	dir := func(mtime int64) *state.FileRecord {
		return &state.FileRecord{Kind: state.KindDir, Mode: 0o755, MtimeNs: mtime}
	}
	for _, tc := range []struct {
		name                string
		local, remote, base *state.FileRecord
		want                Verdict
	}{
		{"changed only here", f("new", 2), f("old", 1), f("old", 1), VerdictPush},
		{"changed only there", f("old", 1), f("new", 2), f("old", 1), VerdictStranded},
		{"changed on both sides", f("a", 2), f("b", 3), f("old", 1), VerdictConflict},
		{"deleted there", f("old", 1), nil, f("old", 1), VerdictStranded},
		{"deleted here", nil, f("old", 1), f("old", 1), VerdictPush},
		{"new only here", f("a", 1), nil, nil, VerdictPush},
		{"new only there", nil, f("a", 1), nil, VerdictStranded},
		{"directory mtime only", dir(5), dir(6), dir(1), VerdictPush},
		{"no base, a directory on both sides", dir(5), dir(6), nil, VerdictPush},
		{"no base, same content", f("x", 5), f("x", 9), nil, VerdictPush},
		{"no base, other content", f("x", 5), f("y", 9), nil, VerdictConflict},
		{"file mode changed only there", f("x", 1), &state.FileRecord{Kind: state.KindReg, Mode: 0o600, Size: 1, MtimeNs: 1, Hash: f("x", 1).Hash}, f("x", 1), VerdictStranded},
	} {
		if got := Sort(tc.local, tc.remote, tc.base, config.Ignore{}); got != tc.want {
			t.Errorf("%s: Sort = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func checkTree(t *testing.T, n *enginetest.Node) {
	t.Helper()
	if _, err := scan.Check(context.Background(), n.Store, n.View, nil, true, scan.Options{}); err != nil {
		t.Fatal(err)
	}
}

func TestReconcileSortsDifferences(t *testing.T) {
	nodes := enginetest.Nodes(t, "", "a", "b")
	a, b := nodes["a"], nodes["b"]
	for _, n := range []string{"mine", "theirs", "both", "same"} {
		a.Write(t, n, "v1")
	}
	if err := a.Sync(t, nodes, engine.Options{}).Err(); err != nil {
		t.Fatal(err)
	}
	// b was active and changed two files, then failed; a took over and
	// changed two.
	b.Write(t, "theirs", "b's stranded edit")
	b.Write(t, "both", "b's edit")
	a.Write(t, "mine", "a's edit")
	a.Write(t, "both", "a's edit")
	checkTree(t, a)
	ctx := context.Background()
	r, err := Reconcile(ctx, a.CompareOptions(nodes), a.Store, "b", config.StrandedKeep)
	if err != nil {
		t.Fatal(err)
	}
	want := func(name string, got []string, path string) {
		t.Helper()
		if len(got) != 1 || got[0] != a.Path(path) {
			t.Errorf("%s = %q, want [%s]", name, got, path)
		}
	}
	want("push", r.Push, "mine")
	want("stranded", r.Stranded, "theirs")
	want("conflicts", r.Conflicts, "both")
	var stranded []string
	a.Store.StrandedList(func(s state.Stranded) error { stranded = append(stranded, s.Path); return nil })
	if len(stranded) != 1 {
		t.Errorf("stranded records = %q", stranded)
	}
	// The normal push after reconciliation never overwrites the stranded edit.
	if _, err := engine.Push(ctx, engine.Options{View: a.View, Store: a.Store, Connect: enginetest.Connector(nodes)}); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]string{"theirs": "b's stranded edit", "mine": "a's edit", "both": "b's edit"} {
		if got := b.Read(f); got != want {
			t.Errorf("%s on b after the push = %q, want %q", f, got, want)
		}
	}
}

func TestReconcileDirectoryMtimeIsNoConflict(t *testing.T) {
	nodes := enginetest.Nodes(t, "", "a", "b")
	a, b := nodes["a"], nodes["b"]
	a.Write(t, "d/f", "v1")
	if err := a.Sync(t, nodes, engine.Options{}).Err(); err != nil {
		t.Fatal(err)
	}
	// b edits d/f in place (d's mtime stays); a adds a file to d.
	b.Write(t, "d/f", "b's edit")
	a.Write(t, "d/new", "a's new file")
	checkTree(t, a)
	r, err := Reconcile(context.Background(), a.CompareOptions(nodes), a.Store, "b", config.StrandedKeep)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Conflicts) != 0 || len(r.Stranded) != 1 {
		t.Fatalf("conflicts %q, stranded %q; want no conflict and d/f stranded", r.Conflicts, r.Stranded)
	}
}

func TestGuardInStore(t *testing.T) {
	nodes := enginetest.Nodes(t, "", "a", "b")
	st := nodes["a"].Store
	if err := Block(st, "b", "no handoff"); err != nil {
		t.Fatal(err)
	}
	if g, err := BlockedPeers(st); err != nil || g["b"] != "no handoff" || len(g) != 1 {
		t.Fatalf("BlockedPeers = %v, %v", g, err)
	}
	if err := Unblock(st, "c"); err == nil {
		t.Errorf("Unblock of a peer that is not blocked succeeded")
	}
	if err := Unblock(st, "b"); err != nil {
		t.Fatal(err)
	}
	if g, _ := BlockedPeers(st); len(g) != 0 {
		t.Errorf("b still blocked after Unblock: %v", g)
	}
}

func TestImportGuardFile(t *testing.T) {
	nodes := enginetest.Nodes(t, "", "a", "b")
	st := nodes["a"].Store
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "guard.json"), []byte(`{"b": "old guard"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ImportGuardFile(st, dir); err != nil {
		t.Fatal(err)
	}
	if g, _ := BlockedPeers(st); g["b"] != "old guard" {
		t.Errorf("after the import BlockedPeers = %v", g)
	}
	if _, err := os.Stat(filepath.Join(dir, "guard.json")); !os.IsNotExist(err) {
		t.Errorf("guard.json still there after the import: %v", err)
	}
	if err := ImportGuardFile(st, dir); err != nil {
		t.Errorf("a second import without the file: %v", err)
	}
}

// A conflict disappears once both sides agree again, whoever made them
// agree: here an admin copies the file by hand on the peer.
func TestSettleConflicts(t *testing.T) {
	nodes := enginetest.Nodes(t, "", "a", "b")
	a, b := nodes["a"], nodes["b"]
	a.Write(t, "f", "v1")
	a.Write(t, "g", "v1")
	if err := a.Sync(t, nodes, engine.Options{}).Err(); err != nil {
		t.Fatal(err)
	}
	a.Write(t, "f", "a's edit")
	b.Write(t, "f", "b's edit")
	a.Write(t, "g", "a's edit")
	b.Write(t, "g", "b's edit")
	res := a.Sync(t, nodes, engine.Options{})
	if res.Peers[0].Conflicts != 2 {
		t.Fatalf("want 2 conflicts, got %+v", res.Peers[0])
	}
	count := func(n *enginetest.Node) int {
		c := 0
		_ = n.Store.Conflicts(func(state.Conflict) error { c++; return nil })
		return c
	}
	if count(a) != 2 || count(b) != 2 {
		t.Fatalf("conflict records: a %d, b %d; want 2 each", count(a), count(b))
	}
	b.Write(t, "f", "a's edit") // the admin settles f by hand
	settled, err := SettleConflicts(context.Background(), a.CompareOptions(nodes), a.Store)
	if err != nil {
		t.Fatal(err)
	}
	if len(settled) != 1 || settled[0] != a.Path("f") {
		t.Fatalf("settled %q, want [f]", settled)
	}
	if count(a) != 1 {
		t.Errorf("a still has %d conflicts, want 1 (g)", count(a))
	}
	// The next push settles b's record of f too, and g stays a conflict.
	a.Sync(t, nodes, engine.Options{})
	if count(b) != 1 || count(a) != 1 {
		t.Errorf("after the push: conflicts a %d, b %d; want 1 each (g)", count(a), count(b))
	}
	if got := b.Read("g"); got != "b's edit" {
		t.Errorf("g on b = %q: a conflict was overwritten", got)
	}
}

// A guarded peer that returns with an empty tree (its disk replaced while
// it was down) did not delete anything: the reconciliation pushes every
// entry to it as new instead of recording stranded deletions (which
// `stranded pull` would apply here).
func TestReconcileEmptyPeerIsNoDeletion(t *testing.T) {
	nodes := enginetest.Nodes(t, "", "a", "b")
	a, b := nodes["a"], nodes["b"]
	for _, n := range []string{"x", "d/y", "d/e/z"} {
		a.Write(t, n, "v1 of "+n)
	}
	if err := a.Sync(t, nodes, engine.Options{}).Err(); err != nil {
		t.Fatal(err)
	}
	// b's disk is replaced: its tree and its state are gone.
	ents, _ := os.ReadDir(b.Root)
	for _, de := range ents {
		if err := os.RemoveAll(filepath.Join(b.Root, de.Name())); err != nil {
			t.Fatal(err)
		}
	}
	fresh, err := state.Open(context.Background(), state.Options{Dir: t.TempDir(), Node: "b"})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	b.Store = fresh
	ctx := context.Background()
	r, err := Reconcile(ctx, a.CompareOptions(nodes), a.Store, "b", config.StrandedPull)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Stranded) != 0 || len(r.Conflicts) != 0 {
		t.Fatalf("an empty peer: stranded %q, conflicts %q; want everything pushed", r.Stranded, r.Conflicts)
	}
	if res, err := engine.Push(ctx, engine.Options{View: a.View, Store: a.Store, Connect: enginetest.Connector(nodes)}); err != nil || res.Err() != nil {
		t.Fatalf("push to the empty peer: %v %v", err, res.Err())
	}
	for _, n := range []string{"x", "d/y", "d/e/z"} {
		if got := b.Read(n); got != "v1 of "+n {
			t.Errorf("%s on b after the push = %q", n, got)
		}
		if got := a.Read(n); got != "v1 of "+n {
			t.Errorf("%s on a = %q: the empty peer's tree was taken for deletions", n, got)
		}
	}
	// One entry missing there is still a stranded deletion.
	if err := os.Remove(b.Path("x")); err != nil {
		t.Fatal(err)
	}
	r, err = Reconcile(ctx, a.CompareOptions(nodes), a.Store, "b", config.StrandedKeep)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Stranded) != 1 || r.Stranded[0] != a.Path("x") {
		t.Errorf("one file deleted on the peer: stranded %q, want [x]", r.Stranded)
	}
}
