package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"ocf-csync/syncer/apply"
	"ocf-csync/syncer/config"
	"ocf-csync/syncer/state"
)

// setupCfg is setup with a config of our own: body is the text of the
// group blocks, where KEY stands for the key file and DIR for the test dir.
// Every node gets the %data% prefix at DIR/<node>/data.
func setupCfg(t testing.TB, names []string, body string) (map[string]*node, string) {
	t.Helper()
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	if err := os.WriteFile(key, []byte(testKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var prefix strings.Builder
	for _, n := range names {
		fmt.Fprintf(&prefix, "  on %s: %s;\n", n, filepath.Join(dir, n, "data"))
	}
	body = strings.NewReplacer("KEY", key, "DIR", dir).Replace(body)
	cfgPath := filepath.Join(dir, "test.cfg")
	if err := os.WriteFile(cfgPath, []byte("prefix data {\n"+prefix.String()+"}\n"+body), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*node{}
	for _, n := range names {
		v, err := cfg.Node(n)
		if err != nil {
			t.Fatal(err)
		}
		root := filepath.Join(dir, n, "data")
		if err := os.MkdirAll(root, 0o755); err != nil {
			t.Fatal(err)
		}
		st, err := state.Open(context.Background(), state.Options{Dir: filepath.Join(dir, n, "state"), Node: n})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		out[n] = &node{name: n, view: v, cfg: cfg, st: st, root: root}
	}
	return out, dir
}

func writeAt(t *testing.T, path, content string, mtime time.Time) {
	t.Helper()
	write(t, path, content)
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func conflictCount(t *testing.T, st *state.Store) int {
	t.Helper()
	n := 0
	if err := st.Conflicts(func(state.Conflict) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestDecide(t *testing.T) {
	nodes, _ := setupCfg(t, []string{"a", "b", "c"}, `group g { host a b (c); key KEY; include %data%; }
`)
	g := nodes["a"].view.Groups[0]
	now := time.Now().UnixNano()
	old, young, future := now-int64(2*time.Hour), now-int64(time.Hour), now+int64(5*time.Hour)
	file := func(mtime, size int64) Side {
		return Side{Exists: true, Rec: state.FileRecord{Kind: state.KindReg, MtimeNs: mtime, Size: size}}
	}
	gone := Side{}
	cases := []struct {
		auto          string
		peer          string
		local, remote Side
		want          Winner
	}{
		{"none", "b", file(young, 1), file(old, 1), Unresolved},
		{"", "b", file(young, 1), file(old, 1), Unresolved},
		{"first", "b", file(old, 1), file(young, 9), LocalWins},
		{"first", "b", gone, file(young, 9), LocalWins}, // first lets a deletion win
		{"left", "b", file(old, 1), file(young, 1), LocalWins},
		{"right", "b", file(old, 1), file(young, 1), PeerWins},
		{"right", "b", gone, file(young, 1), PeerWins},
		{"younger", "b", file(young, 1), file(old, 1), LocalWins},
		{"younger", "b", file(old, 1), file(young, 1), PeerWins},
		{"younger", "b", file(old, 1), file(old, 5), Unresolved}, // equal mtimes
		{"younger", "b", gone, file(old, 1), Unresolved},         // a deletion never wins
		{"younger", "b", file(old, 1), gone, LocalWins},          // …not even the peer's
		// A clock hours ahead (here or there) resolves nothing by time.
		{"younger", "b", file(future, 1), file(young, 1), Unresolved},
		{"younger", "b", file(young, 1), file(future, 1), Unresolved},
		{"older", "b", file(old, 1), file(future, 1), Unresolved},
		{"bigger", "b", file(future, 9), file(young, 1), LocalWins}, // size is no clock
		{"older", "b", file(old, 1), file(young, 1), LocalWins},
		{"older", "b", file(young, 1), file(old, 1), PeerWins},
		{"older", "b", gone, file(young, 1), Unresolved},
		{"bigger", "b", file(old, 9), file(young, 1), LocalWins},
		{"bigger", "b", file(young, 1), file(old, 9), PeerWins},
		{"bigger", "b", file(old, 4), file(young, 4), Unresolved},
		{"bigger", "b", gone, file(young, 1), Unresolved},
		{"smaller", "b", file(old, 1), file(young, 9), LocalWins},
		{"smaller", "b", file(old, 9), file(young, 1), PeerWins},
		{"smaller", "b", gone, file(young, 9), Unresolved},
		// c is a slave: the master wins whatever auto says.
		{"none", "c", file(old, 1), file(young, 9), LocalWins},
		{"right", "c", file(old, 1), file(young, 9), LocalWins},
		{"younger", "c", gone, file(young, 9), LocalWins},
	}
	for _, tc := range cases {
		g.Auto = tc.auto
		got, why := Decide(g, tc.peer, tc.local, tc.remote)
		if got != tc.want {
			t.Errorf("auto %q, peer %s, local %+v, remote %+v: got %v (%s), want %v", tc.auto, tc.peer, tc.local, tc.remote, got, why, tc.want)
		}
	}
	// Seen from b (right of a), left means a wins.
	gb := nodes["b"].view.Groups[0]
	gb.Auto = "left"
	if got, _ := Decide(gb, "a", file(young, 1), file(old, 1)); got != PeerWins {
		t.Errorf("auto left seen from b against a: got %v, want peer", got)
	}
}

// TestAutoPolicies runs each policy end to end on two nodes: both edit the
// same synced file (or one deletes it), then a pushes.
func TestAutoPolicies(t *testing.T) {
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	older, younger := t0.Add(time.Minute), t0.Add(2*time.Minute)
	type edit struct {
		content string // "" deletes
		mtime   time.Time
	}
	cases := []struct {
		name, auto string
		hosts      string
		a, b       edit
		want       Winner // from a's push
	}{
		{"none", "none", "a b", edit{"AA", younger}, edit{"BB", older}, Unresolved},
		{"first", "first", "a b", edit{"AA", older}, edit{"BBBB", younger}, LocalWins},
		{"first-deletion", "first", "a b", edit{"", older}, edit{"BBBB", younger}, LocalWins},
		{"left", "left", "a b", edit{"AA", older}, edit{"BB", younger}, LocalWins},
		{"right", "right", "a b", edit{"AA", younger}, edit{"BB", older}, PeerWins},
		{"younger-wins", "younger", "a b", edit{"AA", younger}, edit{"BB", older}, LocalWins},
		{"younger-loses", "younger", "a b", edit{"AA", older}, edit{"BB", younger}, PeerWins},
		{"younger-equal", "younger", "a b", edit{"AA", older}, edit{"BBBB", older}, Unresolved},
		{"younger-deletion", "younger", "a b", edit{"", younger}, edit{"BB", older}, Unresolved},
		{"younger-peer-deleted", "younger", "a b", edit{"AA", older}, edit{"", younger}, LocalWins},
		{"older-wins", "older", "a b", edit{"AA", older}, edit{"BB", younger}, LocalWins},
		{"older-loses", "older", "a b", edit{"AA", younger}, edit{"BB", older}, PeerWins},
		{"bigger-wins", "bigger", "a b", edit{"AAAA", older}, edit{"BB", younger}, LocalWins},
		{"bigger-loses", "bigger", "a b", edit{"AA", younger}, edit{"BBBB", older}, PeerWins},
		{"bigger-equal", "bigger", "a b", edit{"AA", younger}, edit{"BB", older}, Unresolved},
		{"bigger-deletion", "bigger", "a b", edit{"", younger}, edit{"B", older}, Unresolved},
		{"smaller-wins", "smaller", "a b", edit{"AA", older}, edit{"BBBB", younger}, LocalWins},
		{"smaller-loses", "smaller", "a b", edit{"AAAA", older}, edit{"BB", younger}, PeerWins},
		{"slave-loses", "none", "a (b)", edit{"AA", older}, edit{"BB", younger}, LocalWins},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nodes, _ := setupCfg(t, []string{"a", "b"}, fmt.Sprintf("group g { host %s; key KEY; include %%data%%; auto %s; }\n", tc.hosts, tc.auto))
			a, b := nodes["a"], nodes["b"]
			fa, fb := filepath.Join(a.root, "f"), filepath.Join(b.root, "f")
			writeAt(t, fa, "base", t0)
			if err := a.sync(t, nodes, Options{}).Err(); err != nil {
				t.Fatal(err)
			}
			apply := func(path string, e edit) {
				if e.content == "" {
					if err := os.Remove(path); err != nil {
						t.Fatal(err)
					}
					return
				}
				writeAt(t, path, e.content, e.mtime)
			}
			apply(fa, tc.a)
			apply(fb, tc.b)
			// f is the root's only file: deleting it empties the root,
			// which takes --allow-mass-delete (see safety_test.go).
			res := a.sync(t, nodes, Options{AllowMassDelete: true})
			p := res.Peers[0]
			bWant := tc.b.content
			switch tc.want {
			case LocalWins:
				if err := res.Err(); err != nil || p.AutoResolved != 1 {
					t.Fatalf("a should win: %+v, err %v", p, err)
				}
				bWant = tc.a.content
				if conflictCount(t, a.st)+conflictCount(t, b.st) != 0 {
					t.Errorf("a conflict stayed recorded after a won")
				}
			case PeerWins:
				if p.Conflicts != 1 || p.PeerWins != 1 || res.Err() == nil {
					t.Fatalf("b should win (a loses, exit 1): %+v", p)
				}
			default:
				if p.Conflicts != 1 || p.PeerWins != 0 || p.AutoResolved != 0 {
					t.Fatalf("want an unresolved conflict: %+v", p)
				}
			}
			if got := readOrGone(fb); got != bWant {
				t.Fatalf("b's file after a's push: %q, want %q", got, bWant)
			}
			if tc.want != PeerWins {
				return
			}
			// The winner pushes: its version ends up on both nodes, and the
			// loser's next push has no effect.
			res = b.sync(t, nodes, Options{})
			if err := res.Err(); err != nil || res.Peers[0].AutoResolved != 1 {
				t.Fatalf("b's push should win: %+v, err %v", res.Peers[0], err)
			}
			if got := readOrGone(fa); got != tc.b.content {
				t.Fatalf("a's file after b won: %q, want %q", got, tc.b.content)
			}
			res = a.sync(t, nodes, Options{})
			if err := res.Err(); err != nil {
				t.Fatalf("the loser's next push: %v", err)
			}
			if got := readOrGone(fb); got != tc.b.content {
				t.Fatalf("b's file changed after the loser's next push: %q", got)
			}
			if n := conflictCount(t, a.st) + conflictCount(t, b.st); n != 0 {
				t.Errorf("%d conflict records stayed after the winner pushed", n)
			}
		})
	}
}

func readOrGone(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(b)
}

// TestActions checks the receiver and origin actions: once per (command,
// logfile) for all changed files, real local paths in %%, do-local also on
// the origin, do-local-only only there, nothing for metadata-only changes.
func TestActions(t *testing.T) {
	nodes, dir := setupCfg(t, []string{"a", "b", "c"}, `group g {
  host a b c; key KEY; include %data%;
  action { pattern %data%/etc; exec "echo run %% >> DIR/run.log"; logfile "DIR/action.out"; }
  action { exec "echo local %% >> DIR/local.log"; do-local; }
  action { exec "echo only %% >> DIR/only.log"; do-local-only; }
}
`)
	a, b, c := nodes["a"], nodes["b"], nodes["c"]
	write(t, filepath.Join(a.root, "etc/one"), "1")
	write(t, filepath.Join(a.root, "etc/two"), "2")
	write(t, filepath.Join(a.root, "var/x"), "x")
	res := a.sync(t, nodes, Options{})
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	lines := func(name string) []string {
		data, _ := os.ReadFile(filepath.Join(dir, name))
		out := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(out) == 1 && out[0] == "" {
			return nil
		}
		sort.Strings(out)
		return out
	}
	p := func(n *node, rel ...string) string {
		var s []string
		for _, r := range rel {
			s = append(s, filepath.Join(n.root, r))
		}
		return strings.Join(s, " ")
	}
	want := []string{"run " + p(b, "etc", "etc/one", "etc/two"), "run " + p(c, "etc", "etc/one", "etc/two")}
	sort.Strings(want)
	if got := lines("run.log"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("run.log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	all := []string{"", "etc", "etc/one", "etc/two", "var", "var/x"} // "": the new root dir
	local := lines("local.log")
	// The receivers had the root directory already: no change there.
	want = []string{"local " + p(a, all...), "local " + p(b, all[1:]...), "local " + p(c, all[1:]...)}
	sort.Strings(want)
	if strings.Join(local, "\n") != strings.Join(want, "\n") {
		t.Errorf("local.log (do-local: origin once for both peers, and each receiver):\n%s\nwant:\n%s", strings.Join(local, "\n"), strings.Join(want, "\n"))
	}
	if got := lines("only.log"); len(got) != 1 || got[0] != "only "+p(a, all...) {
		t.Errorf("only.log (do-local-only runs on the origin alone): %q", got)
	}
	if res.LocalActionsRun != 2 {
		t.Errorf("LocalActionsRun = %d, want 2", res.LocalActionsRun)
	}

	// A metadata-only change runs nothing.
	os.Remove(filepath.Join(dir, "run.log"))
	if err := os.Chmod(filepath.Join(a.root, "etc/one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.sync(t, nodes, Options{}).Err(); err != nil {
		t.Fatal(err)
	}
	if got := lines("run.log"); got != nil {
		t.Errorf("a metadata-only change ran actions: %q", got)
	}
	for _, n := range []*node{a, b, c} {
		if q := queuedActions(t, n.st); len(q) != 0 {
			t.Errorf("%s: %d actions stay queued after they ran", n.name, len(q))
		}
	}
}

func queuedActions(t *testing.T, st *state.Store) []state.QueuedAction {
	t.Helper()
	var q []state.QueuedAction
	if err := st.Actions(func(a state.QueuedAction) error { q = append(q, a); return nil }); err != nil {
		t.Fatal(err)
	}
	return q
}

// TestActionFailureAndLeftovers: a failing action is reported with its exit
// code and recorded, the sync stands; an action queued by a crashed run
// runs at the next session.
func TestActionFailureAndLeftovers(t *testing.T) {
	nodes, dir := setupCfg(t, []string{"a", "b"}, `group g {
  host a b; key KEY; include %data%;
  action { exec "exit 3"; }
}
`)
	a, b := nodes["a"], nodes["b"]
	write(t, filepath.Join(a.root, "f"), "v1")
	res := a.sync(t, nodes, Options{})
	if err := res.Err(); err != nil {
		t.Fatalf("a failing action must not fail the sync: %v", err)
	}
	if got := read(t, filepath.Join(b.root, "f")); got != "v1" {
		t.Fatalf("file not synced: %q", got)
	}
	if probs := strings.Join(res.Peers[0].Problems, "\n"); !strings.Contains(probs, "exited with code 3") {
		t.Errorf("push result does not report the failed action: %q", probs)
	}
	fails, err := ActionFailures(b.st)
	if err != nil || len(fails) != 1 || fails[0].ExitCode != 3 || fails[0].Command != "exit 3" {
		t.Fatalf("recorded failures on b: %+v, %v", fails, err)
	}

	// Leftovers from a "crash" on both sides.
	logf := filepath.Join(dir, "left.log")
	for _, n := range []*node{a, b} {
		if _, err := n.st.QueueAction(state.QueuedAction{Group: "g", Command: "echo " + n.name + " %% >> " + logf,
			Files: []string{filepath.Join(n.root, "f")}}); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(a.root, "f"), "v2")
	if err := a.sync(t, nodes, Options{}).Err(); err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSpace(read(t, logf)), "\n")
	sort.Strings(got)
	want := []string{"a " + filepath.Join(a.root, "f"), "b " + filepath.Join(b.root, "f")}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("leftover actions: %q, want %q", got, want)
	}
	for _, n := range []*node{a, b} {
		if q := queuedActions(t, n.st); len(q) != 0 {
			t.Errorf("%s: leftover actions still queued: %+v", n.name, q)
		}
	}
}

// TestSeveralGroups: each file goes to the peers of the groups that include
// it, and no further.
func TestSeveralGroups(t *testing.T) {
	nodes, _ := setupCfg(t, []string{"a", "b", "c"}, `group g1 { host a b; key KEY; include %data%/one; }
group g2 { host a c; key KEY; include %data%/two; }
group g3 { host a b c; key KEY; include %data%/all; }
`)
	a, b, c := nodes["a"], nodes["b"], nodes["c"]
	for _, d := range []string{"one", "two", "all"} {
		write(t, filepath.Join(a.root, d, "f"), d)
	}
	if err := a.sync(t, nodes, Options{}).Err(); err != nil {
		t.Fatal(err)
	}
	want := map[*node][]string{b: {"one", "all"}, c: {"two", "all"}}
	for n, dirs := range want {
		for _, d := range []string{"one", "two", "all"} {
			has := exists(filepath.Join(n.root, d, "f"))
			should := strings.Contains(strings.Join(dirs, " "), d)
			if has != should {
				t.Errorf("%s has %s/f: %v, want %v", n.name, d, has, should)
			}
		}
	}
}

// TestCompareMarkFetch: compare lists L, R and X from the real trees, mark
// makes the next push fix L and X, fetch reads the peer's copy.
func TestCompareMarkFetch(t *testing.T) {
	nodes := setup(t, "a", "b")
	a, b := nodes["a"], nodes["b"]
	write(t, filepath.Join(a.root, "same"), "same")
	write(t, filepath.Join(a.root, "x"), "v1")
	if err := a.sync(t, nodes, Options{}).Err(); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(a.root, "x"), "a's x\n")
	write(t, filepath.Join(a.root, "only-a"), "a")
	write(t, filepath.Join(b.root, "only-b"), "b")
	write(t, filepath.Join(b.root, "only-a.tmp"), "excluded") // not synced: never listed
	o := CompareOptions{View: a.view, Store: a.st, Connect: connector(nodes)}
	res := Compare(context.Background(), o)
	if len(res.Errors) != 0 {
		t.Fatal(res.Errors)
	}
	var got []string
	for _, d := range res.Diffs {
		got = append(got, d.Kind+" "+d.Peer+" "+strings.TrimPrefix(d.Path, a.root))
	}
	// The root directory's mtime changed on both sides, too.
	want := []string{"X b ", "L b /only-a", "R b /only-b", "X b /x"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("compare: %q, want %q", got, want)
	}
	f, err := Fetch(context.Background(), o, "", filepath.Join(a.root, "x"), 1<<20)
	if err != nil || !f.Exists || string(f.Content) != "v1" || f.Peer != "b" || f.Wire != "%data%/x" {
		t.Fatalf("fetch: %+v, %v", f, err)
	}
	f, err = Fetch(context.Background(), o, "b", filepath.Join(a.root, "only-a"), 1<<20)
	if err != nil || f.Exists {
		t.Fatalf("fetch of a file b lacks: %+v, %v", f, err)
	}

	// compare --mark, then a push without a check: b gets x and only-a.
	n, err := MarkDifferences(a.st, res.Diffs, false)
	if err != nil || n != 3 {
		t.Fatalf("marked %d, %v", n, err)
	}
	pres, err := Push(context.Background(), Options{View: a.view, Store: a.st, Connect: connector(nodes)})
	if err != nil || pres.Err() != nil {
		t.Fatal(err, pres.Err())
	}
	if read(t, filepath.Join(b.root, "x")) != "a's x\n" || read(t, filepath.Join(b.root, "only-a")) != "a" {
		t.Fatalf("marked differences were not pushed")
	}
	res = Compare(context.Background(), o)
	got = nil
	for _, d := range res.Diffs {
		got = append(got, d.Kind+" "+strings.TrimPrefix(d.Path, a.root))
	}
	if strings.Join(got, "|") != "R /only-b" || len(res.Errors) != 0 {
		t.Fatalf("after mark and push: %q, %v", got, res.Errors)
	}
}

// TestSlavePushRefused: a slave never pushes; a forced connection as the
// slave is refused at the handshake.
func TestSlavePushRefused(t *testing.T) {
	nodes, _ := setupCfg(t, []string{"a", "b", "c"}, "group g { host a (b) c; key KEY; include %data%; }\n")
	a, b := nodes["a"], nodes["b"]
	write(t, filepath.Join(b.root, "f"), "slave's")
	res := b.sync(t, nodes, Options{})
	if len(res.Peers) != 2 || res.Peers[0].Skipped == 0 || res.Peers[0].Updated != 0 {
		t.Fatalf("slave push: %+v", res.Peers)
	}
	if !slices.Contains(res.Peers[0].SkippedPaths, filepath.Join(b.root, "f")) {
		t.Errorf("skipped paths %q do not name the slave's change", res.Peers[0].SkippedPaths)
	}
	if exists(filepath.Join(a.root, "f")) {
		t.Fatalf("the slave's file reached the master")
	}
	// Even a slave that ignores its config is refused by the master.
	s, err := openSession(context.Background(), b.view, connector(nodes), "a", b.view.Groups)
	if err == nil {
		s.close()
		t.Fatal("a slave's session was accepted")
	}
	if !regexp.MustCompile(`(?i)permission denied for slave`).MatchString(err.Error()) {
		t.Errorf("refusal does not say why: %v", err)
	}
	write(t, filepath.Join(a.root, "f"), "master's")
	if err := a.sync(t, nodes, Options{}).Err(); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(b.root, "f")); got != "master's" {
		t.Errorf("the master's push did not overwrite the slave's change: %q", got)
	}
	// The overwritten change is no longer pending on the slave, toward
	// any peer (csync2's FLUSH).
	for _, peer := range []string{"a", "c"} {
		if n, err := b.st.DirtyCount(peer); err != nil || n != 0 {
			t.Errorf("slave still has %d entries pending for %s after the master overwrote f (%v)", n, peer, err)
		}
	}
}

// Clock skew under auto younger: an mtime hours in the future (a clock
// ahead) resolves nothing, so neither edit is lost; a clock behind loses by
// time as csync2's younger says, and its version is kept as a backup.
func TestClockSkewYounger(t *testing.T) {
	nodes, dir := setupCfg(t, []string{"a", "b"}, `group g {
  host a b; key KEY; include %data%; auto younger;
  backup-directory DIR/backup; backup-generations 2;
}
`)
	a, b := nodes["a"], nodes["b"]
	now := time.Now()
	writeAt(t, filepath.Join(a.root, "ahead"), "v1", now.Add(-time.Hour))
	writeAt(t, filepath.Join(a.root, "behind"), "v1", now.Add(-time.Hour))
	if err := a.sync(t, nodes, Options{}).Err(); err != nil {
		t.Fatal(err)
	}
	// b's clock is 5 hours ahead: its edit of "ahead" carries that time.
	writeAt(t, filepath.Join(b.root, "ahead"), "b's edit", now.Add(5*time.Hour))
	writeAt(t, filepath.Join(a.root, "ahead"), "a's edit", now)
	// b's clock is 5 hours behind for "behind".
	writeAt(t, filepath.Join(b.root, "behind"), "b's edit", now.Add(-5*time.Hour))
	writeAt(t, filepath.Join(a.root, "behind"), "a's edit", now)
	res := a.sync(t, nodes, Options{})
	pr := res.Peers[0]
	if pr.Conflicts != 1 || pr.AutoResolved != 1 {
		t.Errorf("conflicts %d (want 1: ahead), auto-resolved %d (want 1: behind)", pr.Conflicts, pr.AutoResolved)
	}
	if got := read(t, filepath.Join(b.root, "ahead")); got != "b's edit" {
		t.Errorf("b's edit with a future mtime was replaced: %q", got)
	}
	if got := read(t, filepath.Join(a.root, "ahead")); got != "a's edit" {
		t.Errorf("a's edit: %q", got)
	}
	var reason string
	_ = a.st.Conflicts(func(c state.Conflict) error { reason = c.Reason; return nil })
	if !strings.Contains(reason, "in the future") {
		t.Errorf("conflict reason %q does not say why it was not resolved", reason)
	}
	if got := read(t, filepath.Join(b.root, "behind")); got != "a's edit" {
		t.Errorf("behind on b: %q, want a's edit (younger by the clocks)", got)
	}
	if got := read(t, apply.BackupPath(filepath.Join(dir, "backup"), filepath.Join(b.root, "behind"), 1)); got != "b's edit" {
		t.Errorf("b's losing edit is not in its backup: %q", got)
	}
}

// Two configs (two state dbs) include the same directory, as when
// /etc/ocf-csync.cfg and a csync2_NAME.cfg overlap: each pushes what its own
// db sees as changed, and the other finds it already there. Nothing
// conflicts, nothing is deleted twice or resurrected, a peer's own edit
// stays.
func TestTwoConfigsSamePath(t *testing.T) {
	nodes, dir := setupCfg(t, []string{"a", "b"}, "group g {\n  host a b; key KEY; include %data%;\n}\n")
	a, b := nodes["a"], nodes["b"]
	second := map[string]*node{}
	for _, n := range []*node{a, b} {
		st, err := state.Open(context.Background(), state.Options{Dir: filepath.Join(dir, n.name, "state2"), Node: n.name})
		must(t, err)
		t.Cleanup(func() { st.Close() })
		second[n.name] = &node{name: n.name, view: n.view, cfg: n.cfg, st: st, root: n.root}
	}
	a2 := second["a"]
	both := func(step string) {
		t.Helper()
		for i, set := range []map[string]*node{nodes, second} {
			res := set["a"].sync(t, set, Options{})
			if err := res.Err(); err != nil {
				t.Errorf("%s, config %d: %v", step, i+1, err)
			}
		}
	}
	for i := range 10 {
		write(t, filepath.Join(a.root, fmt.Sprintf("f%d", i)), "v1")
	}
	both("first sync")
	write(t, filepath.Join(a.root, "f1"), "v2")
	must(t, os.Remove(filepath.Join(a.root, "f2")))
	write(t, filepath.Join(b.root, "f3"), "b's edit")
	both("edit, delete")
	// The other order.
	write(t, filepath.Join(a.root, "f4"), "v2")
	res := a2.sync(t, second, Options{})
	if err := res.Err(); err != nil {
		t.Errorf("config 2 first: %v", err)
	}
	res = a.sync(t, nodes, Options{})
	if err := res.Err(); err != nil {
		t.Errorf("then config 1: %v", err)
	}
	for _, n := range []*node{a, b, a2, second["b"]} {
		if c := conflictCount(t, n.st); c != 0 {
			t.Errorf("%s recorded %d conflicts", n.name, c)
		}
	}
	want := map[string]string{"f0": "v1", "f1": "v2", "f3": "b's edit", "f4": "v2"}
	for f, v := range want {
		if got := readOrGone(filepath.Join(b.root, f)); got != v {
			t.Errorf("b's %s = %q, want %q", f, got, v)
		}
	}
	if exists(filepath.Join(b.root, "f2")) {
		t.Error("f2 came back on b")
	}
}
