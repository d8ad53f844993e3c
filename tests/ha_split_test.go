package tests

// HA acceptance test (issue 6): split brain of a 2-node cluster without
// fencing, then merge. Uses the helpers of ha_test.go.

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"ocf-csync/ha"
	"ocf-csync/tests/pcmk"
)

// TestHASplitBrain: g runs on node1; the link between the nodes is cut;
// both partitions keep quorum (two_node, no fencing) and run g. While
// split, node1 edits a.txt, node2 edits b.txt and both edit c.txt
// differently. After the merge Pacemaker sees g active on two nodes and
// stops it on both (multiple-active=stop_start), then starts it on one.
// No edit may be lost: a.txt and b.txt keep their edits at least where
// they were made, and both versions of c.txt survive (one per node).
func TestHASplitBrain(t *testing.T) {
	// A short rescan with watch: both daemons push as eagerly as they
	// can, the worst case for the merge.
	e := newHA(t, haOpts{rescan: 2})
	n1, n2 := e.c.Node(1), e.c.Node(2)
	if a := e.waitGroup(n1, ""); a != n1 {
		// Both nodes are equal here; the roles below follow where g is.
		n1, n2 = a, e.other(a)
	}
	e.waitDaemonSynced(n1)

	// The agreed versions, on both nodes before the split.
	files := []string{"a.txt", "b.txt", "c.txt"}
	for _, f := range files {
		e.write(n1, haData+"/"+f, "agreed "+f+"\n", 0o644)
	}
	for _, f := range files {
		e.waitFile(n2, haData+"/"+f, "agreed "+f+"\n", 15*time.Second)
	}
	// One more cycle, so that node1's state records the agreed versions
	// as synced before the link goes.
	time.Sleep(3 * time.Second)

	// The split: cut node2 off the bridge.
	t0 := time.Now()
	if err := n2.SetLink(false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n2.SetLink(true) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*haWait)
	defer cancel()
	startedOn := func(n *pcmk.Node) func(*ha.ClusterStatus) bool {
		return func(s *ha.ClusterStatus) bool {
			vs, _, _, _ := s.Placement("vip")
			ms, _, _, _ := s.Placement("mirror")
			return s.Quorum && len(vs) == 1 && vs[0] == n.Name && len(ms) == 1 && ms[0] == n.Name
		}
	}
	if _, err := n2.WaitStatus(ctx, "g Started on "+n2.Name+" in its own partition", startedOn(n2)); err != nil {
		t.Fatalf("split brain: %v\n%s's log:\n%s", err, n2.Name, n2.LogTail(40))
	}
	if _, err := n1.WaitStatus(ctx, "g still Started on "+n1.Name+" in its own partition", startedOn(n1)); err != nil {
		t.Fatal(err)
	}
	split := time.Since(t0)
	s2 := e.waitDaemonSynced(n2)
	t.Logf("split brain: g Started on both sides %v after the cut (both partitions have quorum); %s's daemon: role %s epoch %d",
		split.Round(time.Millisecond), n2.Name, s2.Role, s2.Epoch)

	// Different edits on each side while split.
	want := map[string]map[string]string{ // file -> node -> content
		"a.txt": {n1.Name: "a edited on " + n1.Name + " during the split\n"},
		"b.txt": {n2.Name: "b edited on " + n2.Name + " during the split\n"},
		"c.txt": {n1.Name: "c edited on " + n1.Name + " during the split\n", n2.Name: "c edited on " + n2.Name + " during the split\n"},
	}
	for f, byNode := range want {
		for name, data := range byNode {
			n := n1
			if name == n2.Name {
				n = n2
			}
			e.write(n, haData+"/"+f, data, 0o644)
		}
	}
	// Let both daemons see and try to push the edits (their peer is gone).
	time.Sleep(4 * time.Second)

	// The merge.
	logFrom := map[string]int64{n1.Name: logSize(n1), n2.Name: logSize(n2)}
	t1 := time.Now()
	if err := n2.SetLink(true); err != nil {
		t.Fatal(err)
	}
	var sawMulti time.Duration
	if _, err := n1.WaitStatus(ctx, "both nodes online, g on one node", func(s *ha.ClusterStatus) bool {
		if _, _, multi, _ := s.Placement("vip"); multi && sawMulti == 0 {
			sawMulti = time.Since(t1)
		}
		if _, _, multi, _ := s.Placement("mirror"); multi && sawMulti == 0 {
			sawMulti = time.Since(t1)
		}
		a, b := s.Node(n1.Name), s.Node(n2.Name)
		return a != nil && b != nil && a.Online && b.Online && s.HasDC
	}); err != nil {
		t.Fatal(err)
	}
	act := e.waitGroup(n1, "")
	settled := time.Since(t1)
	sb := e.other(act)
	if sawMulti > 0 {
		t.Logf("merge: crm_mon on %s showed g active on 2 nodes %v after the link returned", n1.Name, sawMulti.Round(time.Millisecond))
	}
	t.Logf("merge: g Started on %s only, %v after the link returned", act.Name, settled.Round(time.Millisecond))
	for _, n := range e.c.Nodes() {
		t.Logf("%s's log since the merge:%s", n.Name, e.logLinesSince(n, logFrom[n.Name],
			"might be active", "multiple", "mirror", "final sync", "push", "guard", "conflict", "takeover", "stranded", "handoff"))
		t.Logf("mirror stops on %s: %v; starts: %v", n.Name, e.opTimes(n, "mirror", "stop"), e.opTimes(n, "mirror", "start"))
	}
	// A monitor's 190 (degraded: a blocked peer or a conflict, which a
	// split brain causes by design) is listed by crm_mon as a failure
	// too; only the others are failed actions.
	var failed, degraded []string
	for _, f := range e.crmFailures(act) {
		if strings.Contains(f, "OCF_DEGRADED") {
			degraded = append(degraded, f)
		} else {
			failed = append(failed, f)
		}
	}
	if len(failed) > 0 {
		t.Errorf("crm_mon shows failed actions after the merge: %v", failed)
	}
	t.Logf("degraded monitor results crm_mon lists: %v", degraded)
	// Neither node pushes during the stop that follows the merge: the
	// final sync is skipped while vip is active on both nodes.
	for _, n := range e.c.Nodes() {
		if stops := e.opTimes(n, "mirror", "stop"); len(stops) == 0 {
			t.Errorf("no mirror stop on %s after the merge: Pacemaker did not stop it on both nodes", n.Name)
		}
		if l := e.logLinesSince(n, logFrom[n.Name], "final sync", "nothing pushed"); !strings.Contains(l, "split brain, nobody pushes") {
			t.Errorf("the stop on %s after the merge did not skip its final sync for the split brain; its log:%s", n.Name, l)
		}
	}

	// The cron path once more on the active node, and time for the
	// daemon's cycles (rescan 2 s) and the failover guard's reconciliation:
	// whatever the product does after a merge has happened before we look.
	e.waitDaemonSynced(act)
	if r := e.csync(act, "sync"); r.code != 0 {
		t.Logf("sync on the active node %s after the merge (reported, not asserted):\n%s", act.Name, r)
	}
	time.Sleep(5 * time.Second)

	// No file lost.
	got := map[string]map[string]string{}
	for _, f := range files {
		got[f] = map[string]string{}
		for _, n := range e.c.Nodes() {
			data, ok := e.read(n, haData+"/"+f)
			if !ok {
				data = "<missing>"
			}
			got[f][n.Name] = data
			t.Logf("after the merge %s on %s: %q", f, n.Name, data)
		}
	}
	for _, f := range []string{"a.txt", "b.txt"} {
		for name, data := range want[f] {
			if got[f][name] != data {
				t.Errorf("%s on %s, where it was edited during the split, is %q after the merge, want %q: the edit was lost",
					f, name, got[f][name], data)
			}
		}
	}
	c1, c2 := want["c.txt"][n1.Name], want["c.txt"][n2.Name]
	have := map[string]bool{got["c.txt"][n1.Name]: true, got["c.txt"][n2.Name]: true}
	if !have[c1] || !have[c2] {
		kept := backupsOf(e, "c.txt", c1, c2)
		t.Errorf("c.txt after the merge is %q on %s and %q on %s: both sides' edits (%q, %q) must survive; copies elsewhere on the nodes: %v",
			got["c.txt"][n1.Name], n1.Name, got["c.txt"][n2.Name], n2.Name, c1, c2, kept)
	}

	// What the nodes record about the divergence (reported: the data
	// assertions above are what must hold).
	for _, n := range []*pcmk.Node{act, sb} {
		s := e.status(n)
		t.Logf("status on %s: role %s epoch %d; conflicts %v; stranded %v; peers %s",
			n.Name, s.Role, s.Epoch, s.Conflicts, s.Stranded, peersText(s))
		if r := e.csync(n, "conflicts", "--json"); r.code == 0 {
			t.Logf("conflicts --json on %s: %s", n.Name, strings.TrimSpace(r.stdout))
		} else {
			t.Logf("conflicts --json on %s:\n%s", n.Name, r)
		}
	}
	// b.txt's edit on the side that lost the group is not lost, and the
	// active node must see it: the restart after the merge is guarded, and
	// the reconciliation reports it as stranded (or a conflict).
	for name, data := range want["b.txt"] {
		if name == act.Name || got["b.txt"][act.Name] == data {
			continue
		}
		var s haStatus
		deadline := time.Now().Add(20 * time.Second)
		for {
			e.csync(act, "sync")
			s = e.status(act)
			seen := strings.Contains(strings.Join(s.Stranded, "\n"), "b.txt") || strings.Contains(strings.Join(s.Conflicts, "\n"), "b.txt")
			if seen {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("b.txt edited on %s during the split is invisible on the active node %s: not stranded, not a conflict (status %+v)", name, act.Name, s)
				break
			}
			time.Sleep(time.Second)
		}
	}
	t.Logf("notify log on %s:\n%s", act.Name, e.notifications(act))
	t.Logf("notify log on %s:\n%s", sb.Name, e.notifications(sb))
}

// logSize is the current size of n's pacemaker.log (0 when missing).
func logSize(n *pcmk.Node) int64 {
	fi, err := os.Stat(n.LogPath(pcmk.PacemakerLog))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logLinesSince is logLines for the part of n's pacemaker.log from byte
// offset from on.
func (e *haEnv) logLinesSince(n *pcmk.Node, from int64, subs ...string) string {
	b, _ := os.ReadFile(n.LogPath(pcmk.PacemakerLog))
	if from > int64(len(b)) {
		from = 0
	}
	var out []string
	for _, l := range strings.Split(string(b[from:]), "\n") {
		for _, s := range subs {
			if strings.Contains(l, s) {
				out = append(out, "\n\t"+strings.TrimSpace(l))
				break
			}
		}
	}
	return strings.Join(out, "")
}

// backupsOf lists the files under each node's /srv and /var/lib whose
// content is one of wants (a version of name kept somewhere else, e.g. a
// backup), as "node:path".
func backupsOf(e *haEnv, name string, wants ...string) []string {
	var out []string
	for _, n := range e.c.Nodes() {
		for _, root := range []string{pcmk.VarDir, pcmk.DataDir} {
			out = append(out, findContent(n, n.Path(root), name, wants)...)
		}
	}
	return out
}

func findContent(n *pcmk.Node, dir, name string, wants []string) []string {
	var out []string
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	for _, de := range ents {
		p := dir + "/" + de.Name()
		if de.IsDir() {
			out = append(out, findContent(n, p, name, wants)...)
			continue
		}
		if !de.Type().IsRegular() || !strings.Contains(de.Name(), strings.TrimSuffix(name, ".txt")) {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, w := range wants {
			if string(b) == w {
				out = append(out, fmt.Sprintf("%s:%s (%q)", n.Name, p, w))
			}
		}
	}
	return out
}

func peersText(s haStatus) string {
	var parts []string
	for _, p := range s.Peers {
		parts = append(parts, fmt.Sprintf("%s pending %d blocked %v last %s", p.Name, p.Pending, p.Blocked, p.LastOK))
	}
	return strings.Join(parts, "; ")
}
