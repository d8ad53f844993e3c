package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ocf-csync/syncer/state"
)

// fill writes n files in dir/sub (10 per directory).
func fill(t *testing.T, dir string, n int) {
	t.Helper()
	for i := range n {
		write(t, filepath.Join(dir, fmt.Sprintf("d%02d/f%03d", i/10, i)), "x")
	}
}

func count(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func refusalKinds(rs []state.Refusal) []string {
	var ks []string
	for _, r := range rs {
		ks = append(ks, r.Kind)
	}
	return ks
}

func TestMassDeleteThreshold(t *testing.T) {
	nodes := setup(t, "a", "b")
	a, b := nodes["a"], nodes["b"]
	fill(t, a.root, 1000)
	if err := a.sync(t, nodes, Options{}).Err(); err != nil {
		t.Fatal(err)
	}

	// 10 of 1000 go through without a word.
	for i := range 10 {
		must(t, os.Remove(filepath.Join(a.root, fmt.Sprintf("d%02d/f%03d", i/10, i))))
	}
	res := a.sync(t, nodes, Options{})
	if err := res.Err(); err != nil || len(res.Refusals) != 0 || res.Peers[0].Deleted != 10 {
		t.Fatalf("10 of 1000: %v, %+v", err, res.Peers)
	}

	// rm -rf of 60%: refused, the peer keeps everything, the deletions stay pending.
	for i := 1; i <= 60; i++ {
		must(t, os.RemoveAll(filepath.Join(a.root, fmt.Sprintf("d%02d", i))))
	}
	for range 2 {
		res = a.sync(t, nodes, Options{})
		var re *RefusedError
		if err := res.Err(); !errors.As(err, &re) || !errors.Is(err, ErrRefused) || len(res.Refusals) != 1 {
			t.Fatalf("60%%: err %v, refusals %+v", err, res.Refusals)
		}
		r := res.Refusals[0]
		if r.Kind != state.RefusedMassDelete || r.Groups[0] != "g" || r.Override != "ocf-csync sync --allow-mass-delete" ||
			!strings.Contains(r.Reason, "610 files deleted (600 now, 10 pushed in the last 5m0s): 61% of the group's 1000 files, more than max-delete 50%") {
			t.Errorf("refusal %+v", r)
		}
		if n := count(t, b.root); n != 990 {
			t.Errorf("the peer has %d files, want 990", n)
		}
		// 600 files, 60 directories and the root's new mtime.
		if n, _ := a.st.DirtyCount("b"); n != 661 {
			t.Errorf("%d pending for b, want the 661 changes", n)
		}
		if res.Peers[0].Held != 661 {
			t.Errorf("held %d, want 661", res.Peers[0].Held)
		}
	}
	if rec, _ := a.st.Refusals(); len(rec) != 1 {
		t.Errorf("recorded refusals %+v", rec)
	}
	// Only a path-limited cycle (a watch hint) does not slip past it.
	write(t, filepath.Join(a.root, "d00/new"), "n")
	res = a.sync(t, nodes, Options{Paths: []string{filepath.Join(a.root, "d00/new")}})
	if len(res.Refusals) != 1 {
		t.Errorf("path-limited cycle: refusals %+v", res.Refusals)
	}

	// The admin says yes, once.
	res = a.sync(t, nodes, Options{AllowMassDelete: true})
	if err := res.Err(); err != nil || res.Peers[0].Deleted != 660 {
		// 600 files and 60 directories
		t.Fatalf("allowed: %v, %+v", err, res.Peers)
	}
	if n := count(t, b.root); n != 391 {
		t.Errorf("after the allowed push the peer has %d files, want 391 (990 - 600 + d00/new)", n)
	}
	if rec, _ := a.st.Refusals(); len(rec) != 0 {
		t.Errorf("refusals still recorded after the allowed push: %+v", rec)
	}
}

func TestMassDeleteSettings(t *testing.T) {
	for _, tt := range []struct {
		name, safety string
		del          int // of 100
		refused      bool
	}{
		{"default percent, half", "", 50, false},
		{"default percent, more than half", "", 51, true},
		{"count", "safety { max-delete-count 5; }\n", 6, true},
		{"count at the limit", "safety { max-delete-count 5; }\n", 5, false},
		{"percent off for the group", "safety { max-delete-count 0; }\nsafety g { max-delete 0; }\n", 90, false},
		{"group percent", "safety g { max-delete 10; }\n", 11, true},
		{"global off, group on", "safety { max-delete 0; max-delete-count 0; }\nsafety g { max-delete-count 3; }\n", 4, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			nodes, _ := setupCfg(t, []string{"a", "b"}, "group g { host a b; key KEY; include %data%; }\n"+tt.safety)
			a := nodes["a"]
			fill(t, a.root, 100)
			if err := a.sync(t, nodes, Options{}).Err(); err != nil {
				t.Fatal(err)
			}
			for i := range tt.del {
				must(t, os.Remove(filepath.Join(a.root, fmt.Sprintf("d%02d/f%03d", i/10, i))))
			}
			res := a.sync(t, nodes, Options{})
			if got := len(res.Refusals) == 1; got != tt.refused {
				t.Errorf("refused = %v (%+v), want %v", got, res.Refusals, tt.refused)
			}
		})
	}
}

// Deletions pushed a moment ago count: an rm -rf seen as several watch
// batches is one mass deletion.
func TestMassDeleteWindow(t *testing.T) {
	nodes := setup(t, "a", "b")
	a := nodes["a"]
	fill(t, a.root, 100)
	if err := a.sync(t, nodes, Options{}).Err(); err != nil {
		t.Fatal(err)
	}
	for round, dirs := range [][]int{{0, 1, 2, 3}, {4, 5, 6}} {
		for _, d := range dirs {
			must(t, os.RemoveAll(filepath.Join(a.root, fmt.Sprintf("d%02d", d))))
		}
		res := a.sync(t, nodes, Options{})
		if want := round == 1; (len(res.Refusals) == 1) != want {
			t.Fatalf("round %d: refusals %+v, want refused %v", round, res.Refusals, want)
		}
		if round == 1 && !strings.Contains(res.Refusals[0].Reason, "pushed in the last") {
			t.Errorf("reason does not mention the earlier deletions: %s", res.Refusals[0].Reason)
		}
	}
}

// A refused include root stops its group; the other group goes on.
func TestRootRefusalSkipsGroup(t *testing.T) {
	nodes, dir := setupCfg(t, []string{"a", "b"},
		"group www { host a b; key KEY; include %data%/www; }\ngroup etc { host a b; key KEY; include %data%/etc; }\n")
	a, b := nodes["a"], nodes["b"]
	fill(t, filepath.Join(a.root, "www"), 20)
	fill(t, filepath.Join(a.root, "etc"), 5)
	if err := a.sync(t, nodes, Options{}).Err(); err != nil {
		t.Fatal(err)
	}
	_ = dir
	must(t, os.Rename(filepath.Join(a.root, "www"), filepath.Join(a.root, "www.old")))
	must(t, os.Mkdir(filepath.Join(a.root, "www"), 0o755))
	write(t, filepath.Join(a.root, "etc/new"), "n")
	res := a.sync(t, nodes, Options{})
	if len(res.Refusals) != 1 || res.Refusals[0].Kind != state.RefusedRootEmpty || res.Refusals[0].Groups[0] != "www" ||
		res.Refusals[0].Count != 22 {
		t.Fatalf("refusals %+v", res.Refusals)
	}
	if n := count(t, filepath.Join(b.root, "www")); n != 20 {
		t.Errorf("peer www has %d files, want 20", n)
	}
	if _, err := os.Stat(filepath.Join(b.root, "etc/new")); err != nil {
		t.Errorf("the other group did not push: %v", err)
	}
	if !strings.Contains(res.Err().Error(), "refused "+filepath.Join(a.root, "www")+" (group www): the include root is empty") {
		t.Errorf("error: %v", res.Err())
	}
	// update (no scan) still holds the group back.
	res, err := Push(context.Background(), Options{View: a.view, Store: a.st, Connect: connector(nodes)})
	if err != nil || len(res.Refusals) != 1 {
		t.Errorf("update: %v, %+v", err, res.Refusals)
	}
	if len(res.Fresh) != 0 {
		t.Errorf("a refusal already recorded is fresh again: %+v", res.Fresh)
	}
	// The tree comes back: nothing refused, nothing deleted.
	must(t, os.Remove(filepath.Join(a.root, "www")))
	must(t, os.Rename(filepath.Join(a.root, "www.old"), filepath.Join(a.root, "www")))
	res = a.sync(t, nodes, Options{})
	if err := res.Err(); err != nil || len(res.Refusals) != 0 || (len(res.Peers) > 0 && res.Peers[0].Deleted != 0) {
		t.Fatalf("after the tree returned: %v %+v", err, res.Peers)
	}
	if rec, _ := a.st.Refusals(); len(rec) != 0 {
		t.Errorf("recorded refusals %+v", rec)
	}
}

// The receiver refuses to write below an include root that is on another
// file system than where it last received; accept-root there lifts it.
func TestReceiverRootCheck(t *testing.T) {
	nodes := setup(t, "a", "b")
	a, b := nodes["a"], nodes["b"]
	fill(t, a.root, 20)
	if err := a.sync(t, nodes, Options{}).Err(); err != nil {
		t.Fatal(err)
	}
	rec, ok, err := b.st.GetRoot(b.root)
	if err != nil || !ok || rec.ID.FSType == "" || rec.Entries == 0 {
		t.Fatalf("the receiver recorded %+v, %v, %v", rec, ok, err)
	}
	// What an unmounted data disk looks like to b: another file system.
	fake := rec
	fake.ID.UUID, fake.ID.FSID, fake.ID.MountPoint = "00112233445566778899aabbccddeeff", "0011223344556677", b.root
	must(t, b.st.PutRoot(fake))
	write(t, filepath.Join(a.root, "d00/f000"), "changed")
	write(t, filepath.Join(a.root, "new"), "new")
	must(t, os.Remove(filepath.Join(a.root, "d01/f010")))
	res := a.sync(t, nodes, Options{})
	if len(res.Refusals) != 1 {
		t.Fatalf("refusals %+v (peers %+v)", res.Refusals, res.Peers)
	}
	r := res.Refusals[0]
	if r.Kind != state.RefusedPeerRoot || r.Peer != "b" || r.Path != b.root || r.Override != "ocf-csync accept-root "+b.root ||
		!strings.Contains(r.Reason, "another file system") {
		t.Errorf("refusal %+v", r)
	}
	if got := read(t, filepath.Join(b.root, "d00/f000")); got != "x" {
		t.Errorf("b got the change: %q", got)
	}
	if _, err := os.Stat(filepath.Join(b.root, "new")); err == nil {
		t.Error("b got a new file")
	}
	if _, err := os.Stat(filepath.Join(b.root, "d01/f010")); err != nil {
		t.Error("b deleted a file")
	}
	if n, _ := a.st.DirtyCount("b"); n < 3 {
		t.Errorf("pending for b: %d, want the 3 changes kept", n)
	}
	// No news from b: a cycle that sends b nothing keeps the refusal.
	res, err = Push(context.Background(), Options{View: a.view, Store: a.st, Connect: connector(nodes), Peers: []string{"nobody"}})
	if err != nil || len(res.Refusals) != 1 {
		t.Errorf("the refusal was dropped by a cycle that sent nothing: %v %+v", err, res.Refusals)
	}
	// On b: accept-root (the disk was replaced on purpose).
	msg, err := AcceptRoot(b.view, b.st, b.root)
	if err != nil || !strings.Contains(msg, "accepted") || !strings.Contains(msg, "was") {
		t.Fatalf("AcceptRoot: %q, %v", msg, err)
	}
	res = a.sync(t, nodes, Options{})
	if err := res.Err(); err != nil || len(res.Refusals) != 0 {
		t.Fatalf("after accept-root: %v", err)
	}
	if got := read(t, filepath.Join(b.root, "d00/f000")); got != "changed" {
		t.Errorf("b: %q", got)
	}
}

func TestAcceptRootClearsSenderRefusal(t *testing.T) {
	nodes := setup(t, "a", "b")
	a := nodes["a"]
	fill(t, a.root, 5)
	if err := a.sync(t, nodes, Options{}).Err(); err != nil {
		t.Fatal(err)
	}
	rec, _, _ := a.st.GetRoot(a.root)
	rec.ID.UUID, rec.ID.FSID = "ff", "ff"
	must(t, a.st.PutRoot(rec))
	res := a.sync(t, nodes, Options{})
	if len(res.Refusals) != 1 || res.Refusals[0].Kind != state.RefusedRootOtherFS {
		t.Fatalf("refusals %+v", res.Refusals)
	}
	msg, err := AcceptRoot(a.view, a.st, a.root)
	if err != nil || !strings.Contains(msg, "cleared 1 refusal") {
		t.Errorf("AcceptRoot: %q %v", msg, err)
	}
	if rs, _ := a.st.Refusals(); len(rs) != 0 {
		t.Errorf("refusals left: %+v", rs)
	}
	if res := a.sync(t, nodes, Options{}); len(res.Refusals) != 0 {
		t.Errorf("after accept-root: %+v", res.Refusals)
	}
	if _, err := AcceptRoot(a.view, a.st, "/nowhere"); err == nil {
		t.Error("AcceptRoot of a path that is no root succeeded")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A compare (reconciliation after a failover) with a peer whose include
// root changed file system fails instead of listing "everything deleted".
func TestCompareRefusedRoot(t *testing.T) {
	nodes := setup(t, "a", "b")
	a, b := nodes["a"], nodes["b"]
	fill(t, a.root, 5)
	if err := a.sync(t, nodes, Options{}).Err(); err != nil {
		t.Fatal(err)
	}
	rec, _, _ := b.st.GetRoot(b.root)
	rec.ID.UUID, rec.ID.FSID = "ee", "ee"
	must(t, b.st.PutRoot(rec))
	cr := Compare(context.Background(), CompareOptions{View: a.view, Store: a.st, Connect: connector(nodes)})
	if len(cr.Errors) != 1 || !strings.Contains(cr.Errors[0].Error(), "include root refused") || len(cr.Diffs) != 0 {
		t.Errorf("compare: errors %v, %d differences", cr.Errors, len(cr.Diffs))
	}
}
