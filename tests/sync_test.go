package tests

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"ocf-csync/tests/cluster"
)

// requireSame fails the test unless node i's data dir matches want.
func (e *env) requireSame(wantName string, want []entry, nodes ...int) {
	e.t.Helper()
	for _, i := range nodes {
		n := e.node(i)
		if d := diffManifests(wantName, want, n.Name, manifest(e.t, n.Path(dataDir))); d != "" {
			e.t.Errorf("after sync, %s", d)
		}
	}
}

func TestInitialSyncToTwoPeers(t *testing.T) {
	e := newEnv(t, 3)
	n1 := e.node(1)
	buildTree(t, n1.Path(dataDir))
	want := manifest(t, n1.Path(dataDir))
	if len(want) < 40 {
		t.Fatalf("the test tree has only %d entries, want at least 40", len(want))
	}

	r := e.mustSync(n1)
	t.Logf("first sync: %s", strings.TrimSpace(r.stdout))
	e.requireSame("node1 before sync", want, 1, 2, 3)
}

func TestSecondSyncSendsNothing(t *testing.T) {
	e := newEnv(t, 3)
	n1, n2 := e.node(1), e.node(2)
	buildTree(t, n1.Path(dataDir))
	e.mustSync(n1)
	before := manifest(t, n2.Path(dataDir))
	beforeC := ctimes(t, n2.Path(dataDir))
	link0 := e.linkBytes(n2)

	pr := e.syncJSON(n1)

	for _, p := range pr.Peers {
		if p.Planned != 0 || p.DataBytes != 0 || p.Updated != 0 || p.Deleted != 0 {
			t.Errorf("second sync to %s: planned %d, updated %d, deleted %d, %d data bytes; want all 0", p.Peer, p.Planned, p.Updated, p.Deleted, p.DataBytes)
		}
	}
	// A handshake at most; a repeated transfer would be hundreds of KiB.
	if d := e.linkBytes(n2) - link0; d > 64<<10 {
		t.Errorf("second sync moved %d bytes over node2's link, want < 64 KiB", d)
	}
	if d := diffManifests("node2 before", before, "node2 after", manifest(t, n2.Path(dataDir))); d != "" {
		t.Errorf("second sync changed node2: %s", d)
	}
	for p, c := range ctimesChanged(beforeC, ctimes(t, n2.Path(dataDir))) {
		t.Errorf("second sync touched %q on node2 (ctime %s)", p, c)
	}
	if got := e.dirtyFor(n1, "node2"); len(got) != 0 {
		t.Errorf("node1 still has %d dirty entries for node2 after two syncs: %q", len(got), got)
	}
}

// ctimes maps each path below root to its ctime; any write, chmod, chown
// or utimes by a receiver moves it.
func ctimes(t *testing.T, root string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		out[p] = st.Ctim.Sec*1e9 + st.Ctim.Nsec
		return nil
	})
	if err != nil {
		t.Fatalf("ctimes of %s: %v", root, err)
	}
	return out
}

// ctimesChanged lists paths whose ctime changed, appeared or vanished.
func ctimesChanged(a, b map[string]int64) map[string]string {
	out := map[string]string{}
	for p, c := range a {
		if d, ok := b[p]; !ok {
			out[p] = "vanished"
		} else if d != c {
			out[p] = "changed"
		}
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			out[p] = "appeared"
		}
	}
	return out
}

func TestDeletionsReachPeers(t *testing.T) {
	e := newEnv(t, 3)
	n1 := e.node(1)
	for _, f := range []string{"keep.txt", "gone.txt", "tree/a/b/c.txt", "tree/a/d.txt", "tree/e/f/g/h.txt", "keepdir/x"} {
		e.writeFile(n1, filepath.Join(dataDir, f), f+"\n", 0o644)
	}
	// Enough that deleting 5 files stays under the default max-delete 50%.
	for i := range 6 {
		e.writeFile(n1, filepath.Join(dataDir, fmt.Sprintf("keepdir/pad%d", i)), "pad\n", 0o644)
	}
	if err := os.Symlink("a/d.txt", data(n1, "tree/link")); err != nil {
		t.Fatal(err)
	}
	e.mustSync(n1)
	for _, i := range []int{2, 3} {
		if _, err := os.Lstat(data(e.node(i), "tree/e/f/g/h.txt")); err != nil {
			t.Fatalf("first sync did not create tree/e/f/g/h.txt on node%d: %v", i, err)
		}
	}

	for _, p := range []string{"gone.txt", "tree"} {
		if err := os.RemoveAll(data(n1, p)); err != nil {
			t.Fatal(err)
		}
	}
	e.mustSync(n1)

	for _, i := range []int{2, 3} {
		n := e.node(i)
		for _, p := range []string{"gone.txt", "tree"} {
			if _, err := os.Lstat(data(n, p)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s still exists on %s after it was deleted on node1 and synced (lstat: %v)", p, n.Name, err)
			}
		}
	}
	e.requireSame("node1", manifest(t, n1.Path(dataDir)), 2, 3)
	for _, peer := range []string{"node2", "node3"} {
		if got := e.dirtyFor(n1, peer); len(got) != 0 {
			t.Errorf("node1 still has dirty entries for %s after syncing deletions: %q", peer, got)
		}
	}
}

func TestPeerDownThenCatchUp(t *testing.T) {
	e := newEnv(t, 3)
	n1, n2, n3 := e.node(1), e.node(2), e.node(3)
	e.writeFile(n1, dataDir+"/a.txt", "version 1\n", 0o644)
	e.writeFile(n1, dataDir+"/b.txt", "unchanged\n", 0o644)
	e.mustSync(n1)

	if err := n3.StopSSHD(); err != nil {
		t.Fatal(err)
	}
	e.writeFile(n1, dataDir+"/a.txt", "version 2, longer\n", 0o644)
	e.writeFile(n1, dataDir+"/new.txt", "new while node3 is down\n", 0o644)
	r := e.csync(n1, "sync")
	t.Logf("sync with node3 down: exit %d, stderr: %s", r.code, r.stderr)
	if r.code == 0 {
		t.Errorf("sync with node3's sshd down exited 0, want non-zero:\n%s", r)
	}
	if !strings.Contains(r.stderr, "node3") {
		t.Errorf("sync with node3 down: stderr does not name node3:\n%s", r)
	}
	if got := readFile(t, data(n2, "a.txt")); got != "version 2, longer\n" {
		t.Errorf("node2 did not get the change while node3 was down: a.txt = %q", got)
	}
	if got := readFile(t, data(n3, "a.txt")); got != "version 1\n" {
		t.Errorf("node3 (down) changed: a.txt = %q", got)
	}
	dirty := e.dirtyFor(n1, "node3")
	for _, want := range []string{dataDir + "/a.txt", dataDir + "/new.txt"} {
		if !contains(dirty, want) {
			t.Errorf("node1's dirty entries for node3 lack %s: %q", want, dirty)
		}
	}
	if got := e.dirtyFor(n1, "node2"); len(got) != 0 {
		t.Errorf("node1 has dirty entries for node2, which was up: %q", got)
	}

	if err := n3.StartSSHD(); err != nil {
		t.Fatal(err)
	}
	e.mustSync(n1)
	e.requireSame("node1", manifest(t, n1.Path(dataDir)), 2, 3)
	if got := e.dirtyFor(n1, "node3"); len(got) != 0 {
		t.Errorf("node1 still has dirty entries for node3 after it caught up: %q", got)
	}
}

func TestUnknownHostKey(t *testing.T) {
	e := newEnv(t, 3)
	n1, n2 := e.node(1), e.node(2)
	// node2's key disappears from every other node's known_hosts.
	if err := e.c.WriteKnownHosts(2); err != nil {
		t.Fatal(err)
	}
	e.writeFile(n1, dataDir+"/f.txt", "content\n", 0o644)
	before := manifest(t, n2.Path(dataDir))

	r := e.csync(n1, "sync")
	t.Logf("sync with node2's key unknown: exit %d, stderr: %s", r.code, r.stderr)
	if r.code == 0 {
		t.Fatalf("sync to a peer with an unknown host key exited 0:\n%s", r)
	}
	fp := e.c.HostKeyFingerprint(2)
	if !strings.Contains(r.stderr, fp) {
		t.Errorf("the error does not show node2's fingerprint %s:\n%s", fp, r)
	}
	m := regexp.MustCompile(`ocf-csync trust-host --peer \S+ --fingerprint SHA256:[A-Za-z0-9+/]+`).FindString(r.stderr)
	if m == "" {
		t.Fatalf("the error prints no trust-host command:\n%s", r)
	}
	if d := diffManifests("node2 before", before, "node2 after", manifest(t, n2.Path(dataDir))); d != "" {
		t.Errorf("the refused sync wrote on node2: %s", d)
	}
	if got := readFile(t, data(e.node(3), "f.txt")); got != "content\n" {
		t.Errorf("node3, whose key is known, did not get f.txt: %q", got)
	}

	// Run the printed command as printed; the environment says which
	// config and node, as an administrator's shell profile would.
	ctx := t.Context()
	cmd := n1.Command(ctx, "sh", "-c", m)
	cmd.Env = append(cmd.Env, "OCF_CSYNC_CONFIG="+cfgPath, "OCF_CSYNC_NODE=node1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the printed trust command %q failed: %v\n%s", m, err, out)
	}
	kh, err := os.ReadFile(n1.Path(cluster.KnownHosts))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(kh), "node2") {
		t.Errorf("after trust-host, node1's known_hosts has no line for node2:\n%s", kh)
	}

	e.mustSync(n1)
	if got := readFile(t, data(n2, "f.txt")); got != "content\n" {
		t.Errorf("after trust-host and sync, node2's f.txt = %q, want %q", got, "content\n")
	}
}

func TestWrongGroupKeyRefused(t *testing.T) {
	e := newEnv(t, 3)
	n1, n2 := e.node(1), e.node(2)
	e.writeFile(n2, keyPath, groupKey(99)+"\n", 0o600)
	e.writeFile(n1, dataDir+"/f.txt", "content\n", 0o644)
	e.writeFile(n1, dataDir+"/d/g.txt", "more\n", 0o644)
	before := manifest(t, n2.Path(dataDir))

	r := e.csync(n1, "sync")
	t.Logf("sync with a wrong key on node2: exit %d, stderr: %s", r.code, r.stderr)
	if r.code == 0 {
		t.Fatalf("sync to a peer with another group key exited 0:\n%s", r)
	}
	if !strings.Contains(r.stderr, "node2") || !strings.Contains(r.stderr, "group "+groupName) {
		t.Errorf("the error does not name node2 and group %s:\n%s", groupName, r)
	}
	if d := diffManifests("node2 before", before, "node2 after", manifest(t, n2.Path(dataDir))); d != "" {
		t.Errorf("the refused push wrote on node2: %s", d)
	}
	dirty := e.dirtyFor(n1, "node2")
	for _, want := range []string{dataDir + "/f.txt", dataDir + "/d/g.txt"} {
		if !contains(dirty, want) {
			t.Errorf("after the refused push node1's dirty entries for node2 lack %s: %q", want, dirty)
		}
	}
	if got := readFile(t, data(e.node(3), "d/g.txt")); got != "more\n" {
		t.Errorf("node3, with the right key, did not get d/g.txt: %q", got)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(b)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
