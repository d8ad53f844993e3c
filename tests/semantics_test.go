package tests

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"ocf-csync/tests/cluster"
)

// Acceptance tests of the csync2 semantics (issue 4): conflicts and force,
// auto policies, slaves, prefixes, sync networks, actions, backups,
// compare/diff and several groups, on namespace nodes with real sshd.

// writeConfig writes the same config on every node of e: groups is the text
// of the group and prefix blocks; the ssh block is the one of newEnv. KEY
// stands for the group key file.
func (e *env) writeConfig(groups string) {
	e.t.Helper()
	text := strings.ReplaceAll(groups, "KEY", keyPath) + fmt.Sprintf(`
ssh {
	identity %s;
	known-hosts %s;
	remote-command "%s serve";
	connect-timeout 5;
}
`, cluster.ClientKey, cluster.KnownHosts, binary)
	e.writeRawConfig(text)
}

// writeRawConfig writes text as the config of every node.
func (e *env) writeRawConfig(text string) {
	e.t.Helper()
	for _, n := range e.c.Nodes() {
		e.writeFile(n, cfgPath, text, 0o644)
	}
}

// expectCode runs ocf-csync on n and fails unless it exits with code.
func (e *env) expectCode(code int, n *cluster.Node, args ...string) result {
	e.t.Helper()
	r := e.csync(n, args...)
	if r.code != code {
		e.t.Fatalf("want exit %d:\n%s", code, r)
	}
	return r
}

func setMtime(t *testing.T, p string, tm time.Time) {
	t.Helper()
	if err := os.Chtimes(p, tm, tm); err != nil {
		t.Fatal(err)
	}
}

func gone(p string) bool {
	_, err := os.Lstat(p)
	return os.IsNotExist(err)
}

// TestConflictForceAndAuto: a conflict is shown on both nodes and resolved by
// force; an identical edit is no conflict; deletion versus edit; then auto
// younger, including its deletion rule.
func TestConflictForceAndAuto(t *testing.T) {
	e := newEnv(t, 2)
	n1, n2 := e.node(1), e.node(2)
	e.writeFile(n1, dataDir+"/f", "v1\n", 0o644)
	e.writeFile(n1, dataDir+"/g", "g1\n", 0o644)
	e.mustSync(n1)

	// Both edit f: conflict, nothing written, exit 1, both nodes record it.
	e.writeFile(n1, dataDir+"/f", "from node1\n", 0o644)
	e.writeFile(n2, dataDir+"/f", "from node2, longer\n", 0o644)
	r := e.expectCode(1, n1, "sync")
	if !strings.Contains(r.stdout, "CONFLICT") || !strings.Contains(r.stderr, "1 conflict(s)") {
		t.Errorf("sync does not report the conflict:\n%s", r)
	}
	if got := readFile(t, data(n2, "f")); got != "from node2, longer\n" {
		t.Fatalf("a conflict overwrote node2's copy: %q", got)
	}
	r = e.expectCode(0, n1, "conflicts")
	f := dataDir + "/f"
	for _, want := range []string{
		f + "\twith node2 (group data): changed on both sides",
		"node1 (here):        reg 11 B, mtime ",
		"node2 (peer):        reg 19 B, mtime ",
		"sha256 " + sha256Hex("from node1\n"),
		"sha256 " + sha256Hex("from node2, longer\n"),
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("conflicts on node1 lacks %q:\n%s", want, r.stdout)
		}
	}
	r = e.expectCode(0, n2, "--json", "conflicts")
	var cjs []struct {
		Path, Peer    string
		Local, Remote struct {
			Size   int64 `json:"size_bytes"`
			SHA256 string
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &cjs); err != nil || len(cjs) != 1 {
		t.Fatalf("conflicts --json on node2: %d conflicts, %v; want 1\n%s", len(cjs), err, r.stdout)
	}
	cj := cjs[0]
	if cj.Path != f || cj.Peer != "node1" ||
		cj.Local.Size != 19 || cj.Remote.SHA256 != sha256Hex("from node1\n") {
		t.Errorf("conflicts --json on node2 (the receiver records it too): %+v\n%s", cj, r.stdout)
	}

	// force on node1: its version wins, and both nodes forget the conflict.
	e.expectCode(0, n1, "force", f)
	e.mustSync(n1)
	if got := readFile(t, data(n2, "f")); got != "from node1\n" {
		t.Fatalf("after force, node2 has %q", got)
	}
	for _, n := range []*cluster.Node{n1, n2} {
		if r := e.expectCode(0, n, "conflicts"); strings.TrimSpace(r.stdout) != "no conflicts" {
			t.Errorf("%s still lists conflicts after force:\n%s", n.Name, r.stdout)
		}
	}

	// The same edit on both sides is not a conflict.
	e.writeFile(n1, dataDir+"/f", "same edit\n", 0o644)
	e.writeFile(n2, dataDir+"/f", "same edit\n", 0o644)
	e.mustSync(n1)

	// Deletion versus edit: a conflict; force makes the deletion win.
	if err := os.Remove(data(n1, "g")); err != nil {
		t.Fatal(err)
	}
	e.writeFile(n2, dataDir+"/g", "edited on node2\n", 0o644)
	r = e.expectCode(1, n1, "sync")
	if gone(data(n2, "g")) {
		t.Fatal("a conflicting deletion removed node2's edited file")
	}
	r = e.expectCode(0, n1, "conflicts")
	if !strings.Contains(r.stdout, "node1 (here):        deleted") {
		t.Errorf("conflicts does not show the local deletion:\n%s", r.stdout)
	}
	e.expectCode(0, n1, "force", dataDir+"/g")
	e.mustSync(n1)
	if !gone(data(n2, "g")) {
		t.Fatal("force did not push the deletion")
	}

	// auto younger: node2's younger edit wins; node1's push loses (exit 1,
	// nothing written), node2's push then wins, and node1's next push is a
	// no-op.
	e.writeRawConfig(strings.Replace(e.configText(), "include "+dataDir+";", "include "+dataDir+"; auto younger;", 1))
	now := time.Now()
	e.writeFile(n1, dataDir+"/f", "older on node1\n", 0o644)
	setMtime(t, data(n1, "f"), now.Add(-time.Hour))
	e.writeFile(n2, dataDir+"/f", "younger on node2\n", 0o644)
	setMtime(t, data(n2, "f"), now.Add(-time.Minute))
	r = e.expectCode(1, n1, "sync")
	if !strings.Contains(r.stderr, "the peer's version wins") {
		t.Errorf("the losing push does not say the peer wins:\n%s", r)
	}
	if got := readFile(t, data(n2, "f")); got != "younger on node2\n" {
		t.Fatalf("the losing push wrote on node2: %q", got)
	}
	e.mustSync(n2)
	if got := readFile(t, data(n1, "f")); got != "younger on node2\n" {
		t.Fatalf("the winner's push did not reach node1: %q", got)
	}
	e.mustSync(n1)
	if got := readFile(t, data(n2, "f")); got != "younger on node2\n" {
		t.Fatalf("the loser's next push changed node2: %q", got)
	}
	// A deletion never wins under younger, however young.
	if err := os.Remove(data(n1, "f")); err != nil {
		t.Fatal(err)
	}
	e.writeFile(n2, dataDir+"/f", "edited again\n", 0o644)
	setMtime(t, data(n2, "f"), now.Add(-30*time.Minute))
	// f is the only file: deleting it empties the include root, which
	// takes --allow-mass-delete (safety_test.go); the conflict is the point here.
	e.expectCode(1, n1, "sync", "--allow-mass-delete")
	if got := readFile(t, data(n2, "f")); got != "edited again\n" {
		t.Fatalf("a deletion won under auto younger: node2 has %q", got)
	}
	r = e.expectCode(0, n1, "conflicts")
	if !strings.Contains(r.stdout, "never lets a deletion win") {
		t.Errorf("conflicts does not say why younger did not resolve it:\n%s", r.stdout)
	}
}

// TestSlavePushRefusedThenOverwritten: host node1 (node2). node2 does not
// push; if it tries anyway (a config that calls it a master), node1 refuses
// it; node1's next push overwrites node2's change.
func TestSlavePushRefusedThenOverwritten(t *testing.T) {
	e := newEnv(t, 2)
	n1, n2 := e.node(1), e.node(2)
	slaveCfg := strings.Replace(e.configText(), "host node1 node2;", "host node1 (node2);", 1)
	e.writeRawConfig(slaveCfg)
	e.writeFile(n1, dataDir+"/f", "master v1\n", 0o644)
	e.mustSync(n1)

	e.writeFile(n2, dataDir+"/f", "slave's edit\n", 0o644)
	r := e.csync(n2, "sync")
	if got := readFile(t, data(n1, "f")); got != "master v1\n" {
		t.Fatalf("the slave's push reached the master: %q\n%s", got, r)
	}
	// A slave that believes it is a master is refused by the receiver.
	e.writeFile(n2, cfgPath, strings.Replace(readFile(t, n2.Path(cfgPath)), "host node1 (node2);", "host node1 node2;", 1), 0o644)
	r = e.expectCode(1, n2, "sync")
	if !regexp.MustCompile(`(?i)permission denied for slave`).MatchString(r.stderr) {
		t.Errorf("the refusal does not say why:\n%s", r)
	}
	if got := readFile(t, data(n1, "f")); got != "master v1\n" {
		t.Fatalf("a refused slave push wrote on the master: %q", got)
	}
	e.writeRawConfig(slaveCfg)

	e.writeFile(n1, dataDir+"/f", "master v2\n", 0o644)
	e.mustSync(n1)
	if got := readFile(t, data(n2, "f")); got != "master v2\n" {
		t.Fatalf("the master's push did not overwrite the slave's change: %q", got)
	}
}

// TestPrefixSyncNetworkActions: %web% maps to different paths on the two
// nodes; hosts are reached through their -back interface names (the plain
// names point nowhere); an action runs once for two files with real paths,
// do-local on both nodes, do-local-only on the origin only.
func TestPrefixSyncNetworkActions(t *testing.T) {
	e := newEnv(t, 2)
	n1, n2 := e.node(1), e.node(2)
	// /etc/hosts: nodeN-back is the real address, nodeN a dead one.
	for _, n := range e.c.Nodes() {
		var b strings.Builder
		b.WriteString("127.0.0.1\tlocalhost\n")
		for _, m := range e.c.Nodes() {
			dead := regexp.MustCompile(`\.\d+$`).ReplaceAllString(m.Addr, ".250")
			fmt.Fprintf(&b, "%s\t%s-back\n%s\t%s\n", m.Addr, m.Name, dead, m.Name)
		}
		e.writeFile(n, "/etc/hosts", b.String(), 0o644)
		kh := n.Path(cluster.KnownHosts)
		old := readFile(t, kh)
		var lines []string
		for _, line := range strings.Split(strings.TrimSpace(old), "\n") {
			name, rest, _ := strings.Cut(line, ",")
			lines = append(lines, name+"-back,"+rest)
		}
		e.writeFile(n, cluster.KnownHosts, strings.Join(lines, "\n")+"\n", 0o644)
	}
	e.writeConfig(`prefix web {
	on node1: /srv/ocf-csync/site-a;
	on node2: /srv/ocf-csync/other/site-b;
}
group web {
	host node1@node1-back node2@node2-back;
	key KEY;
	include %web%;
	action {
		pattern %web%/conf;
		exec "echo changed %% >> /var/lib/ocf-csync/run.log";
		logfile /var/lib/ocf-csync/run.out;
	}
	action { exec "echo local %% >> /var/lib/ocf-csync/local.log"; do-local; }
	action { exec "echo only %% >> /var/lib/ocf-csync/only.log"; do-local-only; }
}
`)
	e.writeFile(n1, "/srv/ocf-csync/site-a/conf/one.conf", "1\n", 0o644)
	e.writeFile(n1, "/srv/ocf-csync/site-a/conf/two.conf", "2\n", 0o644)
	e.writeFile(n1, "/srv/ocf-csync/site-a/index.html", "<h1>hi</h1>\n", 0o644)
	// Everything (dirs included) exists before the first sync on node2 too,
	// so only the files are changes there.
	for _, d := range []string{"/srv/ocf-csync/other/site-b/conf"} {
		if err := os.MkdirAll(n2.Path(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r := e.mustSync(n1)
	t.Logf("sync: %s", strings.TrimSpace(r.stdout))
	for _, rel := range []string{"conf/one.conf", "conf/two.conf", "index.html"} {
		want := readFile(t, n1.Path("/srv/ocf-csync/site-a/"+rel))
		if got := readFile(t, n2.Path("/srv/ocf-csync/other/site-b/"+rel)); got != want {
			t.Errorf("node2 other/site-b/%s = %q, want %q", rel, got, want)
		}
	}
	if !gone(n2.Path("/srv/ocf-csync/site-a")) {
		t.Errorf("node2 got node1's path instead of its own prefix path")
	}
	logLines := func(n *cluster.Node, name string) []string {
		s := strings.TrimSpace(readFile(t, n.Path("/var/lib/ocf-csync/"+name)))
		if strings.HasPrefix(s, "<") {
			return nil
		}
		return strings.Split(s, "\n")
	}
	b2 := "/srv/ocf-csync/other/site-b"
	if got := logLines(n2, "run.log"); len(got) != 1 || got[0] != "changed "+b2+"/conf/one.conf "+b2+"/conf/two.conf" {
		t.Errorf("node2 run.log (one run, both files, real paths): %q", got)
	}
	if got := logLines(n1, "run.log"); got != nil {
		t.Errorf("an action without do-local ran on the origin: %q", got)
	}
	if got := logLines(n2, "local.log"); len(got) != 1 || !strings.Contains(got[0], b2+"/index.html") {
		t.Errorf("node2 local.log: %q", got)
	}
	a1 := "/srv/ocf-csync/site-a"
	if got := logLines(n1, "local.log"); len(got) != 1 || !strings.Contains(got[0], a1+"/conf/one.conf "+a1+"/conf/two.conf") {
		t.Errorf("do-local did not run once on the origin: %q", got)
	}
	if got := logLines(n1, "only.log"); len(got) != 1 || !strings.Contains(got[0], a1+"/index.html") {
		t.Errorf("do-local-only did not run once on the origin: %q", got)
	}
	if got := logLines(n2, "only.log"); got != nil {
		t.Errorf("do-local-only ran on the receiver: %q", got)
	}
}

// TestBackupRotation: backup-generations 3 keeps the three most recent
// replaced versions over five edits, with their mode.
func TestBackupRotation(t *testing.T) {
	e := newEnv(t, 2)
	n1, n2 := e.node(1), e.node(2)
	e.writeRawConfig(strings.Replace(e.configText(), "include "+dataDir+";",
		"include "+dataDir+"; backup-directory /var/lib/ocf-csync/backup; backup-generations 3;", 1))
	for v := 1; v <= 5; v++ {
		e.writeFile(n1, dataDir+"/f", fmt.Sprintf("version %d\n", v), 0o640)
		e.mustSync(n1)
	}
	bk := n2.Path("/var/lib/ocf-csync/backup" + dataDir + "/f")
	want := map[string]string{bk: "version 4\n", bk + ".1": "version 3\n", bk + ".2": "version 2\n"}
	for p, w := range want {
		if got := readFile(t, p); got != w {
			t.Errorf("%s = %q, want %q", p, got, w)
		}
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm() != 0o640 {
			t.Errorf("%s has mode %v, want 0640", p, fi.Mode().Perm())
		}
	}
	if !gone(bk+".3") || !gone(bk+".0") {
		t.Errorf("more than 3 generations kept")
	}
	if got := readFile(t, data(n2, "f")); got != "version 5\n" {
		t.Errorf("node2 has %q", got)
	}
}

// TestCompareAndDiff: compare lists L, R and X from both real trees with
// diff(1) exit codes; diff shows the peer's version against ours; compare
// --mark plus update fixes L and X; a peer down is trouble (exit 2).
func TestCompareAndDiff(t *testing.T) {
	e := newEnv(t, 2)
	n1, n2 := e.node(1), e.node(2)
	e.writeFile(n1, dataDir+"/x", "line 1\nold line\n", 0o644)
	e.writeFile(n1, dataDir+"/same", "same\n", 0o644)
	e.mustSync(n1)
	e.expectCode(0, n1, "compare")
	e.expectCode(0, n1, "compare", "node2")

	e.writeFile(n1, dataDir+"/x", "line 1\nnew line\n", 0o644)
	e.writeFile(n1, dataDir+"/only-here", "a\n", 0o644)
	e.writeFile(n2, dataDir+"/only-there", "b\n", 0o644)
	r := e.expectCode(1, n1, "compare")
	for _, want := range []string{
		"X\tnode1\tnode2\t" + dataDir + "/x\n",
		"L\tnode1\tnode2\t" + dataDir + "/only-here\n",
		"R\tnode1\tnode2\t" + dataDir + "/only-there\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("compare lacks %q:\n%s", want, r)
		}
	}
	if strings.Contains(r.stdout, "/same") {
		t.Errorf("compare lists an equal file:\n%s", r.stdout)
	}
	r = e.expectCode(1, n1, "compare", "node2", dataDir+"/x")
	if r.stdout != "X\tnode1\tnode2\t"+dataDir+"/x\n" {
		t.Errorf("compare of one path:\n%s", r)
	}
	e.expectCode(0, n1, "compare", dataDir+"/same")

	r = e.expectCode(1, n1, "diff", dataDir+"/x")
	wantDiff := "--- node2:" + dataDir + "/x\n+++ node1:" + dataDir + "/x\n@@ -1,2 +1,2 @@\n line 1\n-old line\n+new line\n"
	if r.stdout != wantDiff {
		t.Errorf("diff output:\n%s\nwant:\n%s", r.stdout, wantDiff)
	}
	r = e.expectCode(1, n1, "diff", "--peer", "node2", dataDir+"/only-here")
	if !strings.Contains(r.stdout, "+a\n") {
		t.Errorf("diff of a file the peer lacks:\n%s", r)
	}
	r = e.expectCode(0, n1, "diff", dataDir+"/same")
	if r.stdout != "" {
		t.Errorf("diff of equal files printed %q", r.stdout)
	}

	// compare --mark (csync2 -TI), then update without a check.
	e.expectCode(0, n1, "compare", "--mark")
	e.expectCode(0, n1, "update")
	if got := readFile(t, data(n2, "x")); got != "line 1\nnew line\n" {
		t.Errorf("after compare --mark and update, node2 x = %q", got)
	}
	if got := readFile(t, data(n2, "only-here")); got != "a\n" {
		t.Errorf("after compare --mark and update, node2 only-here = %q", got)
	}
	r = e.expectCode(1, n1, "compare")
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if !strings.HasSuffix(l, "\t"+dataDir) { // the root dir's mtime may differ
			lines = append(lines, l)
		}
	}
	sort.Strings(lines)
	if strings.Join(lines, "\n") != "R\tnode1\tnode2\t"+dataDir+"/only-there" {
		t.Errorf("after mark and update, compare still lists:\n%s", r.stdout)
	}

	if err := n2.StopSSHD(); err != nil {
		t.Fatal(err)
	}
	r = e.expectCode(2, n1, "compare")
	if !strings.Contains(r.stderr, "node2") {
		t.Errorf("compare with a peer down does not name it:\n%s", r)
	}
	e.expectCode(2, n1, "diff", dataDir+"/x")
}

// TestThreeGroups: the layout of lab-three-groups.cfg (node1..4 stand for
// telnet, ftp, ssh, apache): each group's files reach exactly its hosts.
func TestThreeGroups(t *testing.T) {
	e := newEnv(t, 4)
	keys := map[string]string{}
	for i, g := range []string{"g1", "g2", "g3"} {
		keys[g] = cluster.EtcDir + "/" + g + ".key"
		for _, n := range e.c.Nodes() {
			e.writeFile(n, keys[g], groupKey(uint64(10+i))+"\n", 0o600)
		}
	}
	e.writeConfig(fmt.Sprintf(`group g1 {
	host node1 node2;
	key %s;
	include /srv/ocf-csync/xinetd.d;
}
group g2 {
	host node3 node4;
	key %s;
	include /srv/ocf-csync/apache;
	include /srv/ocf-csync/ssh;
}
group g3 {
	host node1 node2 node3 node4;
	key %s;
	include /srv/ocf-csync/hosts;
}
`, keys["g1"], keys["g2"], keys["g3"]))
	n1, n3 := e.node(1), e.node(3)
	e.writeFile(n1, dataDir+"/xinetd.d/telnet", "service telnet\n", 0o644)
	e.writeFile(n1, dataDir+"/hosts", "127.0.0.1 localhost\n", 0o644)
	e.writeFile(n3, dataDir+"/apache/httpd.conf", "Listen 80\n", 0o644)
	e.writeFile(n3, dataDir+"/ssh/sshd_config", "Port 22\n", 0o644)
	e.mustSync(n1)
	e.mustSync(n3)
	want := map[string][]int{
		"xinetd.d/telnet":   {1, 2},
		"hosts":             {1, 2, 3, 4},
		"apache/httpd.conf": {3, 4},
		"ssh/sshd_config":   {3, 4},
	}
	for rel, on := range want {
		for _, n := range e.c.Nodes() {
			has := !gone(data(n, rel))
			should := false
			for _, i := range on {
				should = should || i == n.Index
			}
			if has != should {
				t.Errorf("%s on %s: present %v, want %v", rel, n.Name, has, should)
			}
		}
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
