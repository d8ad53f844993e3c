package tests

// HA acceptance (issue 9): the histories real clusters go through, under
// real corosync+Pacemaker, configured as the README shows with crmsh. The
// scenarios are chained on one cluster (each starts from where the last
// ended) to keep make test short; each ends by checking the trees on
// every node (manifests), `status` on every node, the notify log, and that
// no conflict or guard remains that an admin would not expect.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ocf-csync/ha"
	"ocf-csync/tests/pcmk"
)

// newCrmHA starts a cluster of n nodes with ocf-csync configured on each
// (watch off: only a start, a stop, `ocf-csync sync` and the daemon's
// retries push, so a test knows what is unsynced) and nothing in the CIB.
func newCrmHA(t *testing.T, n int) *haEnv {
	t.Helper()
	pcmk.RequireRoot(t)
	installAgent(t)
	c := pcmk.New(t, pcmk.Options{Nodes: n, SSHD: true})
	e := &haEnv{t: t, c: c, vip: c.SubnetPrefix() + ".100", rsc: "p_mirror"}
	key := groupKey(9)
	var hosts []string
	for _, nd := range c.Nodes() {
		hosts = append(hosts, nd.Name)
	}
	cfg := strings.Replace(e.configText(haOpts{noWatch: true}), "host node1 node2;", "host "+strings.Join(hosts, " ")+";", 1)
	for _, nd := range c.Nodes() {
		e.write(nd, haCfg, cfg, 0o644)
		e.write(nd, haKey, key+"\n", 0o600)
		e.write(nd, haNotify, "#!/bin/sh\necho \"$EVENT node=$NODE peer=$PEER detail=$DETAIL\" >>"+haNotifyLog+"\n", 0o755)
		if err := os.MkdirAll(nd.Path(haData), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("cluster of %d nodes up in %v", n, c.UpIn.Round(time.Millisecond))
	saveLogsOnFailure(t, c)
	return e
}

// saveLogsOnFailure copies every node's pacemaker.log and notify log into
// $OCF_CSYNC_TEST_LOGS/<test>/ when the test failed (the cluster's own
// directory goes with it).
func saveLogsOnFailure(t *testing.T, c *pcmk.Cluster) {
	dir := os.Getenv("OCF_CSYNC_TEST_LOGS")
	if dir == "" {
		return
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		out := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_"))
		if err := os.MkdirAll(out, 0o755); err != nil {
			t.Logf("save logs: %v", err)
			return
		}
		for _, n := range c.Nodes() {
			for name, p := range map[string]string{"pacemaker.log": n.LogPath(pcmk.PacemakerLog), "notify.log": n.Path(haNotifyLog)} {
				if b, err := os.ReadFile(p); err == nil {
					_ = os.WriteFile(filepath.Join(out, n.Name+"."+name), b, 0o644)
				}
			}
		}
		t.Logf("logs of every node saved in %s", out)
	})
}

// crm runs crm on n and fails the test if it fails; it logs what crm said.
func (e *haEnv) crm(n *pcmk.Node, args ...string) {
	e.t.Helper()
	r := e.run(n, "crm", args...)
	e.t.Logf("# crm %s\n%s", strings.Join(args, " "), r.stdout+r.stderr)
	if r.code != 0 {
		e.t.Fatalf("crm %s failed:\n%s", strings.Join(args, " "), r)
	}
}

// readmeVIP and readmeMirror are the README's crm lines (Using it with
// Pacemaker), with this cluster's address and config path.
func (e *haEnv) readmeVIP(n *pcmk.Node) {
	e.crm(n, "configure", "primitive", "vip", "ocf:heartbeat:IPaddr2", "params", "ip="+e.vip, "cidr_netmask=24", "nic=eth0",
		"op", "monitor", "interval=10s")
}

func (e *haEnv) readmeMirror(n *pcmk.Node) {
	e.crm(n, "configure", "primitive", "p_mirror", "ocf:csync:mirror", "params", "config="+haCfg, "cluster_ip="+e.vip,
		"op", "monitor", "interval=30s", "op", "stop", "timeout=300s")
	e.crm(n, "configure", "group", "g", "vip", "p_mirror")
}

// readmeSequence configures the README's crm lines one at a time on a
// cluster with nothing in the CIB (crm starts p_mirror alone first,
// wherever Pacemaker puts it). With content, the node where vip starts,
// the first active node, holds a tree before the mirror is configured.
// It ends with the scenario check and returns the active node.
func (e *haEnv) readmeSequence(what string, content bool) *pcmk.Node {
	e.t.Helper()
	n1 := e.c.Node(1)
	m := e.notifyMark()
	e.readmeVIP(n1)
	var seed *pcmk.Node
	if content {
		seed = e.waitStarted(n1, "vip")
		for i := range 20 {
			e.writeData(seed, fmt.Sprintf("content/f%02d.txt", i), fmt.Sprintf("file %d on the first active node\n", i))
		}
		e.writeData(seed, "content/sub/deep.txt", "a file in a subdirectory\n")
		if err := os.Symlink("f00.txt", seed.Path(haData+"/content/link")); err != nil {
			e.t.Fatal(err)
		}
	}
	e.readmeMirror(n1)
	act := e.waitGroup(n1, "")
	if seed != nil && act != seed {
		e.t.Fatalf("%s: the group started on %s, not on %s where vip was", what, act.Name, seed.Name)
	}
	e.waitDaemonSynced(act)
	e.settled(what, act, m, expect{})
	if content {
		for _, n := range e.others(act) {
			if got, _ := e.read(n, haData+"/content/f07.txt"); got != "file 7 on the first active node\n" {
				e.t.Errorf("%s: content/f07.txt on %s is %q", what, n.Name, got)
			}
		}
	}
	return act
}

// waitStarted waits until resource id is Started on one node and returns it.
func (e *haEnv) waitStarted(from *pcmk.Node, id string) *pcmk.Node {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), haWait)
	defer cancel()
	var where string
	if _, err := from.WaitStatus(ctx, id+" Started", func(s *ha.ClusterStatus) bool {
		started, other, _, _ := s.Placement(id)
		if len(started) == 1 && len(other) == 0 {
			where = started[0]
			return true
		}
		return false
	}); err != nil {
		e.t.Fatal(err)
	}
	return e.byName(where)
}

// resetCluster makes the cluster fresh again: the resources stopped and
// deleted, every node's tree, state dir and csync node attributes gone.
func (e *haEnv) resetCluster() {
	e.t.Helper()
	n1 := e.c.Node(1)
	e.crm(n1, "resource", "stop", "g")
	ctx, cancel := context.WithTimeout(context.Background(), haWait)
	defer cancel()
	if _, err := n1.WaitStatus(ctx, "g stopped", func(s *ha.ClusterStatus) bool {
		for _, id := range []string{"vip", e.mirrorID()} {
			if started, other, _, _ := s.Placement(id); len(started)+len(other) > 0 {
				return false
			}
		}
		return true
	}); err != nil {
		e.t.Fatal(err)
	}
	// -F: ids that were never configured (the location rule) are no error.
	e.crm(n1, "-F", "configure", "delete", "l_g_current", "p_snap", "g", "vip", e.mirrorID())
	e.run(n1, "crm_resource", "--cleanup")
	for _, n := range e.c.Nodes() {
		for _, a := range []struct{ name, life string }{{ha.EpochAttribute, "forever"}, {ha.CurrentAttribute, "forever"},
			{ha.PendingAttribute, "reboot"}, {ha.ConflictsAttribute, "reboot"}} {
			e.run(n1, "crm_attribute", "-N", n.Name, "-n", a.name, "-l", a.life, "-D")
		}
		wipe(e.t, n)
	}
}

func (e *haEnv) byName(name string) *pcmk.Node {
	for _, n := range e.c.Nodes() {
		if n.Name == name {
			return n
		}
	}
	e.t.Fatalf("no node %q", name)
	return nil
}

// others are the nodes that are not n.
func (e *haEnv) others(n *pcmk.Node) []*pcmk.Node {
	var out []*pcmk.Node
	for _, m := range e.c.Nodes() {
		if m != n {
			out = append(out, m)
		}
	}
	return out
}

// notifyMark is how much of each node's notify log a scenario already saw.
type notifyMark map[string]int

func (e *haEnv) notifyMark() notifyMark {
	m := notifyMark{}
	for _, n := range e.c.Nodes() {
		m[n.Name] = len(e.notifications(n))
	}
	return m
}

// notifiedSince is what n's notify hook got since the mark.
func (e *haEnv) notifiedSince(n *pcmk.Node, m notifyMark) string {
	s := e.notifications(n)
	if m[n.Name] > len(s) {
		return s
	}
	return s[m[n.Name]:]
}

// expect is what a scenario may leave behind.
type expect struct {
	events   []string // notify events allowed since the mark (start and stop always are)
	stranded int      // stranded changes the active node reports
	degraded bool     // monitor of the active node may be 190
}

// settled ends a scenario: the trees are identical on every node, status
// answers on every node with no conflict and no blocked peer (and only
// the expected stranded changes), and the notify hooks got only the
// expected events. It waits up to 60 s for the daemon's cycles (trees
// identical and no peer blocked on the active node).
func (e *haEnv) settled(what string, act *pcmk.Node, m notifyMark, x expect) {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var diff string
	for {
		diff = ""
		ref := manifest(e.t, act.Path(haData))
		for _, n := range e.others(act) {
			if d := diffManifests(act.Name, ref, n.Name, manifest(e.t, n.Path(haData))); d != "" {
				diff += d + "\n"
			}
		}
		blocked := false
		if diff == "" {
			for _, p := range e.status(act).Peers {
				blocked = blocked || p.Blocked
			}
		}
		if (diff == "" && !blocked) || time.Now().After(deadline) {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if diff != "" {
		e.t.Errorf("%s: the trees differ:\n%s", what, diff)
	}
	for _, n := range e.c.Nodes() {
		s := e.status(n)
		if len(s.Conflicts) > 0 {
			e.t.Errorf("%s: status on %s shows conflicts: %v", what, n.Name, s.Conflicts)
		}
		for _, p := range s.Peers {
			if p.Blocked {
				e.t.Errorf("%s: status on %s shows %s blocked by the failover guard", what, n.Name, p.Name)
			}
		}
		want := 0
		if n == act {
			want = x.stranded
			if s.Role != "active" || s.Daemon != "running" {
				e.t.Errorf("%s: status on the active node %s: role %q daemon %q", what, n.Name, s.Role, s.Daemon)
			}
		} else if s.Role != "standby" {
			e.t.Errorf("%s: status on %s: role %q, want standby", what, n.Name, s.Role)
		}
		if len(s.Stranded) != want {
			e.t.Errorf("%s: status on %s shows %d stranded changes, want %d: %v", what, n.Name, len(s.Stranded), want, s.Stranded)
		}
		allowed := append([]string{ha.EventStart, ha.EventStop}, x.events...)
		for _, l := range strings.Split(strings.TrimSpace(e.notifiedSince(n, m)), "\n") {
			if ev, _, _ := strings.Cut(l, " "); l != "" && !slices.Contains(allowed, ev) {
				e.t.Errorf("%s: unexpected notification on %s: %s", what, n.Name, l)
			}
		}
	}
	if rc, r := e.agentRC(act, "force-check"); rc != 0 && !(x.degraded && rc == 190) {
		e.t.Errorf("%s: monitor of p_mirror on %s = %d\n%s", what, act.Name, rc, r)
	}
}

// writeData writes a file below the data root of n.
func (e *haEnv) writeData(n *pcmk.Node, rel, content string) {
	e.t.Helper()
	e.write(n, haData+"/"+rel, content, 0o644)
}

// crash is a power loss of n: kill -9 of its daemon, corosync, Pacemaker
// and sshd, and what a reboot clears (the VIP, /run) cleared.
func (e *haEnv) crash(n *pcmk.Node) {
	e.t.Helper()
	if s := e.status(n); s.DaemonPid > 0 {
		_ = syscall.Kill(s.DaemonPid, syscall.SIGKILL)
	}
	if err := n.Crash(); err != nil {
		e.t.Fatal(err)
	}
	if err := n.StopSSHD(); err != nil {
		e.t.Fatal(err)
	}
	e.run(n, "sh", "-c", "ip addr del "+e.vip+"/24 dev eth0 2>/dev/null; rm -f /run/resource-agents/*; tc qdisc del dev eth0 root 2>/dev/null; true")
}

// powerOn boots n again: its sshd first (as init would), then corosync and
// Pacemaker; it returns when the cluster formed.
func (e *haEnv) powerOn(n *pcmk.Node) time.Time {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), haWait)
	defer cancel()
	if err := n.StartSSHD(ctx); err != nil {
		e.t.Fatal(err)
	}
	back := time.Now()
	if err := n.StartStack(ctx); err != nil {
		e.t.Fatal(err)
	}
	if err := e.c.WaitFormed(ctx); err != nil {
		e.t.Fatal(err)
	}
	return back
}

// daemonPid is the mirror daemon's pid on n, from status.
func (e *haEnv) daemonPid(n *pcmk.Node) int {
	e.t.Helper()
	s := e.status(n)
	if s.DaemonPid <= 0 {
		e.t.Fatalf("no daemon pid in status on %s:\n%s", n.Name, s.Raw)
	}
	return s.DaemonPid
}

// waitStatus polls status on n until ok holds, for up to within.
func (e *haEnv) waitStatus(n *pcmk.Node, what string, within time.Duration, ok func(haStatus) bool) (haStatus, time.Duration) {
	e.t.Helper()
	t0 := time.Now()
	for {
		s := e.status(n)
		if ok(s) {
			return s, time.Since(t0)
		}
		if time.Since(t0) > within {
			e.t.Fatalf("status on %s: not %s after %v:\n%s", n.Name, what, within, s.Raw)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func strandedNames(s haStatus) string { return strings.Join(s.Stranded, "\n") }

// TestHACrmHistory: the README's crmsh sequence on a 2-node cluster with
// empty trees, then one cluster's life: content, `sync` with the daemon,
// switchover and back, a restart of the group, kill -9 of the daemon, a
// crash of the active node with unsynced edits, new files and deletions,
// a crash of the standby, a crash in the middle of the final sync, and a
// node that returns with an empty disk and is made active, with and
// without a current peer to catch up from.
func TestHACrmHistory(t *testing.T) {
	e := newCrmHA(t, 2)

	// The README, verbatim: one primitive, the other, then the group. crm
	// starts the mirror alone first, wherever Pacemaker puts it. On empty
	// trees, then again on a fresh cluster with content on the node that
	// becomes active first.
	act := e.readmeSequence("README sequence on empty trees", false)
	sb := e.other(act)
	t.Logf("%s's log of the start: %s", act.Name, e.logLines(act, "became active", "standby", "takeover", "running"))
	t.Logf("%s's log of the start: %s", sb.Name, e.logLines(sb, "became active", "standby", "takeover", "running"))
	e.resetCluster()
	act = e.readmeSequence("README sequence with content on the first active node", true)
	sb = e.other(act)

	// Content on the active node; `ocf-csync sync` with the daemon running:
	// the change is on the peer when it returns, and it says so.
	m := e.notifyMark()
	e.writeData(act, "www/index.html", "<h1>v1</h1>\n")
	e.writeData(act, "etc/app.conf", "workers = 4\n")
	e.writeData(act, "doomed.txt", "deleted later\n")
	e.writeData(act, "www/doomed.html", "<p>deleted later too</p>\n")
	t0 := time.Now()
	r := e.csync(act, "sync")
	took := time.Since(t0)
	if r.code != 0 || !regexp.MustCompile(sb.Name+`: ok: [1-9]\d* updated`).MatchString(r.stdout) {
		t.Errorf("sync on the active node with the daemon running:\n%s", r)
	}
	if got, _ := e.read(sb, haData+"/etc/app.conf"); got != "workers = 4\n" {
		t.Errorf("etc/app.conf on %s right after `sync` returned: %q", sb.Name, got)
	}
	t.Logf("`ocf-csync sync` through the daemon took %v:\n%s", took.Round(time.Millisecond), r.stdout)
	e.settled("sync with the daemon", act, m, expect{})

	// Switchover and back: clean, no guard.
	for range 2 {
		m = e.notifyMark()
		e.writeData(act, "moved-from-"+act.Name+".txt", "written before the move\n")
		t0 := time.Now()
		e.standby(act, act, true)
		nw := e.waitGroup(sb, act.Name)
		t.Logf("switchover %s -> %s in %v; p_mirror stop took %v, its final sync %v", act.Name, nw.Name,
			time.Since(t0).Round(time.Millisecond), e.lastOpTime(act, e.mirrorID(), "stop"), e.finalSyncTook(act))
		e.standby(act, act, false)
		act, sb = nw, act
		e.waitDaemonSynced(act)
		e.settled("switchover to "+act.Name, act, m, expect{})
	}

	// A restart of the group on the same node, and a kill -9 of only the
	// daemon (p_mirror's recurring monitor finds it dead and Pacemaker
	// restarts it in place): the node held the last term itself, so
	// nothing is guarded.
	m = e.notifyMark()
	e.crm(act, "resource", "restart", "g")
	if got := e.waitGroup(act, ""); got != act {
		t.Fatalf("after crm resource restart g the group runs on %s", got.Name)
	}
	e.waitDaemonSynced(act)
	e.settled("crm resource restart g", act, m, expect{})
	m = e.notifyMark()
	pid := e.daemonPid(act)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e.waitStatus(act, "running with a new daemon", 120*time.Second, func(s haStatus) bool {
		return s.Daemon == "running" && s.DaemonPid > 0 && s.DaemonPid != pid && s.LastSync != ""
	})
	e.settled("kill -9 of the daemon", act, m, expect{})

	// Crash of the active node with unsynced edits, new files and
	// deletions. The survivor takes over guarded; it reports each change
	// stranded within 40 s of the node's return, without anyone running
	// sync; its own change after the takeover reaches the returning node;
	// nothing of the failed node's work is lost.
	m = e.notifyMark()
	failed, surv := act, sb
	edit := "workers = 8   # edited on " + failed.Name + ", never synced\n"
	e.writeData(failed, "etc/app.conf", edit)
	e.writeData(failed, "new-on-failed.txt", "new, never synced\n")
	e.writeData(failed, "www/new-page.html", "<p>a new page, never synced</p>\n")
	for _, f := range []string{"doomed.txt", "www/doomed.html"} {
		if err := os.Remove(failed.Path(haData + "/" + f)); err != nil {
			t.Fatal(err)
		}
	}
	work := []string{"etc/app.conf", "new-on-failed.txt", "www/new-page.html", "doomed.txt", "www/doomed.html"}
	t0 = time.Now()
	e.crash(failed)
	act = e.waitGroup(surv, failed.Name)
	t.Logf("crash of %s: group Started on %s %v after the kill", failed.Name, act.Name, time.Since(t0).Round(time.Millisecond))
	s := e.waitDaemonSynced(act)
	if !e.peerBlocked(s, failed.Name) {
		t.Errorf("after the crash %s does not block %s:\n%s", act.Name, failed.Name, s.Raw)
	}
	takeover := "written on " + act.Name + " after the takeover\n"
	e.writeData(act, "after-takeover.txt", takeover)
	back := e.powerOn(failed)
	s, _ = e.waitStatus(act, "reporting the stranded changes and no guard", 90*time.Second, func(s haStatus) bool {
		for _, f := range work {
			if !strings.Contains(strandedNames(s), haData+"/"+f+" ") {
				return false
			}
		}
		return !e.peerBlocked(s, failed.Name)
	})
	// The node's return is its boot: its sshd starts first, as init's would.
	if d := time.Since(back); d > 40*time.Second {
		t.Errorf("%s reported the stranded changes %v after %s returned, want within 40 s", act.Name, d.Round(time.Millisecond), failed.Name)
	}
	t.Logf("%s returned; %s reported its stranded changes %v after the return, no one ran sync:\n%s",
		failed.Name, act.Name, time.Since(back).Round(time.Millisecond), strandedNames(s))
	if len(s.Stranded) != len(work) {
		t.Errorf("%s reports %d stranded changes, want the %d of %s:\n%s", act.Name, len(s.Stranded), len(work), failed.Name, strandedNames(s))
	}
	t.Logf("%s's log of the takeover: %s", act.Name, e.logLines(act, "became active", "failover guard", "reconciled"))
	t.Logf("# ocf-csync status (on %s)\n%s", act.Name, e.csync(act, "status").stdout)
	t.Logf("# ocf-csync diff %s/etc/app.conf (on %s)\n%s", haData, act.Name, e.csync(act, "diff", haData+"/etc/app.conf").stdout)
	e.waitFileOrLog(failed, haData+"/after-takeover.txt", takeover, 20*time.Second, act)
	if got, _ := e.read(failed, haData+"/etc/app.conf"); got != edit {
		t.Errorf("the failed node's edit was overwritten: %q", got)
	}
	for _, f := range []string{"doomed.txt", "www/doomed.html"} {
		if _, ok := e.read(failed, haData+"/"+f); ok {
			t.Errorf("the failed node's deletion of %s was undone", f)
		}
	}
	if n := e.notifiedSince(act, m); !strings.Contains(n, "takeover-unclean") || !strings.Contains(n, "stranded") {
		t.Errorf("notify on %s did not get takeover-unclean and stranded:\n%s", act.Name, n)
	}
	e.settledStranded(act, failed, m, work)
	// Nothing lost: the failed node's work and the survivor's change are
	// on both nodes now.
	for _, n := range []*pcmk.Node{act, failed} {
		for f, want := range map[string]string{"etc/app.conf": edit, "new-on-failed.txt": "new, never synced\n",
			"www/new-page.html": "<p>a new page, never synced</p>\n", "after-takeover.txt": takeover} {
			if got, _ := e.read(n, haData+"/"+f); got != want {
				t.Errorf("after the failed node's work was taken over, %s on %s is %q, want %q", f, n.Name, got, want)
			}
		}
		for _, f := range []string{"doomed.txt", "www/doomed.html"} {
			if _, ok := e.read(n, haData+"/"+f); ok {
				t.Errorf("after the failed node's work was taken over, %s still exists on %s", f, n.Name)
			}
		}
	}
	sb = failed

	// Crash of the standby: the active node's change reaches it after its
	// return, without anyone running sync (the daemon retries).
	m = e.notifyMark()
	e.crash(sb)
	e.writeData(act, "while-standby-down.txt", "written while the standby was down\n")
	if r := e.csync(act, "sync"); r.code != 1 || !strings.Contains(r.stdout, sb.Name+": FAILED") {
		t.Errorf("sync with the standby down: want exit 1 and %s FAILED:\n%s", sb.Name, r)
	}
	back = e.powerOn(sb)
	e.waitFile(sb, haData+"/while-standby-down.txt", "written while the standby was down\n", 90*time.Second)
	t.Logf("the standby %s got the change %v after it was back, no one ran sync", sb.Name, time.Since(back).Round(time.Millisecond))
	e.settled("crash of the standby", act, m, expect{events: []string{ha.EventPeerUnreachable}})

	// A crash in the middle of the final sync: the link is throttled so the
	// final sync of a 2 MiB file is caught in flight.
	m = e.notifyMark()
	big := make([]byte, 2<<20)
	_, _ = rand.Read(big)
	e.write(act, haData+"/big.bin", string(big), 0o644)
	if r := e.run(act, "tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "256kbit", "burst", "16kbit", "latency", "400ms"); r.code != 0 {
		t.Fatalf("throttle %s's link:\n%s", act.Name, r)
	}
	logFrom := logSize(act)
	e.standby(act, act, true)
	waitLog(t, act, logFrom, "final sync started", 30*time.Second)
	// In flight: the receiver's temp file of big.bin holds part of it.
	got := e.waitTemp(sb, haData, "big.bin", 60*time.Second)
	if b, _ := os.ReadFile(act.LogPath(pcmk.PacemakerLog)); strings.Contains(string(b[logFrom:]), "final sync done") {
		t.Fatalf("the final sync on %s ended before the crash; it was to be caught in flight", act.Name)
	}
	t.Logf("crash of %s during its final sync, with %d of %d bytes of big.bin in %s's temp file", act.Name, got, len(big), sb.Name)
	failed = act
	e.crash(failed)
	act = e.waitGroup(sb, failed.Name)
	e.powerOn(failed)
	e.standby(act, failed, false)
	s, _ = e.waitStatus(act, "reporting big.bin stranded", 90*time.Second, func(s haStatus) bool {
		return strings.Contains(strandedNames(s), "big.bin") && !e.peerBlocked(s, failed.Name)
	})
	if got, ok := e.read(act, haData+"/big.bin"); ok && got != string(big) {
		t.Errorf("a partial big.bin on %s (%d of %d bytes): the final sync left a mix", act.Name, len(got), len(big))
	}
	e.settledStranded(act, failed, m, []string{"big.bin"})
	sb = failed

	// A node returns from a power loss with an empty disk (tree and state
	// wiped while it was down) and is made active: it never pushes its
	// empty tree; its start pulls what it lacks from a current peer before
	// it returns, so p_snap, a service after the mirror in the group,
	// starts on current data.
	e.addSnap(act)
	e.waitSnap(act)
	m = e.notifyMark()
	before := manifest(t, act.Path(haData))
	beforeSnap := e.snapshot(act)
	e.crash(sb)
	wipe(t, sb)
	os.Remove(sb.Path(snapOut))
	e.powerOn(sb)
	t0 = time.Now()
	logFrom = logSize(sb)
	e.standby(act, act, true)
	nw := e.waitGroup(sb, act.Name)
	snap := e.waitSnap(nw)
	status, took := e.lastOp(nw, logFrom, e.mirrorID(), "start")
	t.Logf("empty-disk node %s made active: group Started %v after the move; p_mirror start exited %d after %v",
		nw.Name, time.Since(t0).Round(time.Millisecond), status, took)
	t.Logf("%s's log of the start: %s", nw.Name, e.logLines(nw, "not current", "caught up", "catch-up", "became active"))
	if status != 0 {
		t.Errorf("p_mirror's start on the empty-disk node %s exited %d", nw.Name, status)
	}
	for _, f := range e.crmFailures(nw) {
		if strings.HasPrefix(f, e.mirrorID()+"_start_") {
			t.Errorf("crm_mon shows a failed start of p_mirror (a start past its timeout is one): %s", f)
		}
	}
	if snap != beforeSnap {
		t.Errorf("p_snap, after p_mirror in the group, started on %s on data that was not current:\n got: %s\nwant: %s", nw.Name, snap, beforeSnap)
	}
	if d := diffManifests("before", before, nw.Name, manifest(t, nw.Path(haData))); d != "" {
		t.Errorf("after p_mirror's start on %s its tree was not current:\n%s", nw.Name, d)
	}
	if d := diffManifests("before", before, act.Name, manifest(t, act.Path(haData))); d != "" {
		t.Errorf("the empty node pushed over %s's tree:\n%s", act.Name, d)
	}
	e.standby(act, act, false)
	act, sb = nw, act
	// The old active node's final sync could not hand off to a node that
	// holds no state (it refuses a clean handoff), so the takeover is
	// guarded until the reconciliation found both sides equal.
	if n := e.notifiedSince(sb, m); !strings.Contains(n, ha.EventFinalSyncIncomplete+" node="+sb.Name+" peer="+act.Name) || !strings.Contains(n, "no synced state") {
		t.Errorf("%s's final sync to the empty-disk node %s was not notified incomplete:\n%s", sb.Name, act.Name, n)
	}
	e.settled("empty disk made active", act, m, expect{events: []string{ha.EventFinalSyncIncomplete, ha.EventTakeoverUnclean}})

	// The same with no current peer reachable (its sshd is down): the
	// start does not fail; it is degraded (190) and notified, and it
	// catches up once the peer answers again.
	m = e.notifyMark()
	e.crash(sb)
	wipe(t, sb)
	e.powerOn(sb)
	if err := act.StopSSHD(); err != nil {
		t.Fatal(err)
	}
	e.standby(act, act, true)
	nw = e.waitGroup(sb, act.Name)
	e.waitMonitor(nw, 190, 10*time.Second, "active without a current peer to catch up from")
	if n := e.notifiedSince(nw, m); !strings.Contains(n, ha.EventNotCurrent) {
		t.Errorf("no not-current notification on %s:\n%s", nw.Name, n)
	}
	if d := diffManifests("before", before, act.Name, manifest(t, act.Path(haData))); d != "" {
		t.Errorf("the empty node pushed over %s's tree:\n%s", act.Name, d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), haWait)
	defer cancel()
	if err := act.StartSSHD(ctx); err != nil {
		t.Fatal(err)
	}
	e.standby(nw, act, false)
	act, sb = nw, act
	e.waitStatus(act, "caught up", 45*time.Second, func(s haStatus) bool { return s.Daemon == "running" })
	d := e.waitMonitor(act, 0, 60*time.Second, "after its current peer answered again")
	t.Logf("%s caught up %v after its current peer's sshd was back; its log: %s", act.Name, d.Round(time.Millisecond),
		e.logLines(act, "caught up", "catch-up", "not current"))
	// The stopping node's sshd was down, so its final sync may not finish,
	// and a node without state refuses a clean handoff anyway: the
	// takeover is unclean, guarded and reconciled (settled checks that no
	// guard is left).
	e.settled("empty disk, no current peer at first", act, m, expect{events: []string{ha.EventNotCurrent, ha.EventPeerUnreachable,
		ha.EventFinalSyncIncomplete, ha.EventTakeoverUnclean}})
	if fs := e.crmFailures(act); len(fs) > 0 {
		t.Logf("crm_mon lists these operation results: %v", fs)
	}
}

// snapAgent is a service ordered after the mirror in the group: its start
// records what the mirror's tree holds at that moment (path and sha256 of
// every file), so a test sees the data the services after the mirror
// started on.
const snapAgent = `#!/bin/sh
state=/run/resource-agents/snap.state
case "$1" in
meta-data) cat <<'EOF'
<?xml version="1.0"?>
<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">
<resource-agent name="snap" version="1.0">
<version>1.0</version>
<longdesc lang="en">Test service: its start records the tree it starts on.</longdesc>
<shortdesc lang="en">tree snapshot at start</shortdesc>
<parameters>
<parameter name="dir" required="1"><longdesc lang="en">tree</longdesc><shortdesc lang="en">tree</shortdesc><content type="string"/></parameter>
<parameter name="out" required="1"><longdesc lang="en">snapshot file</longdesc><shortdesc lang="en">snapshot</shortdesc><content type="string"/></parameter>
</parameters>
<actions>
<action name="start" timeout="20s"/><action name="stop" timeout="20s"/>
<action name="monitor" timeout="20s" interval="10s"/><action name="meta-data" timeout="5s"/>
</actions>
</resource-agent>
EOF
	exit 0;;
start)
	(cd "$OCF_RESKEY_dir" && find . -type f ! -name '.*' -exec sha256sum {} + | sort -k2) >"$OCF_RESKEY_out.tmp" &&
		mv "$OCF_RESKEY_out.tmp" "$OCF_RESKEY_out" && mkdir -p /run/resource-agents && touch "$state"
	exit $?;;
stop) rm -f "$state"; exit 0;;
monitor) [ -f "$state" ] && exit 0; exit 7;;
validate-all) exit 0;;
*) exit 3;;
esac
`

// snapOut is where p_snap's start writes its snapshot, on each node.
const snapOut = pcmk.VarDir + "/snap.txt"

// addSnap installs the snap agent and appends p_snap to the group g.
func (e *haEnv) addSnap(n *pcmk.Node) {
	e.t.Helper()
	p := filepath.Join(haAgentDir, "snap")
	if err := os.WriteFile(p, []byte(snapAgent), 0o755); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { os.Remove(p) })
	e.crm(n, "configure", "primitive", "p_snap", "ocf:csync:snap", "params", "dir="+haData, "out="+snapOut,
		"op", "monitor", "interval=10s")
	e.crm(n, "configure", "modgroup", "g", "add", "p_snap")
}

// snapshot is path → sha256 of the regular files of n's tree, as p_snap
// records it.
func (e *haEnv) snapshot(n *pcmk.Node) string {
	e.t.Helper()
	var lines []string
	root := n.Path(haData)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || strings.HasPrefix(d.Name(), ".") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		lines = append(lines, fmt.Sprintf("%x  ./%s", sha256.Sum256(b), rel))
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	slices.SortFunc(lines, func(a, b string) int { return strings.Compare(a[66:], b[66:]) })
	return strings.Join(lines, "\n") + "\n"
}

// waitSnap waits until p_snap is Started on n and returns the snapshot its
// start wrote there.
func (e *haEnv) waitSnap(n *pcmk.Node) string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), haWait)
	defer cancel()
	if _, err := n.WaitStatus(ctx, "p_snap Started on "+n.Name, func(s *ha.ClusterStatus) bool {
		started, other, _, _ := s.Placement("p_snap")
		return len(started) == 1 && started[0] == n.Name && len(other) == 0
	}); err != nil {
		e.t.Fatal(err)
	}
	got, ok := e.read(n, snapOut)
	if !ok {
		e.t.Fatalf("p_snap started on %s but wrote no snapshot", n.Name)
	}
	return got
}

// lastOp is the exit status and execution time of rsc's latest op on n,
// from n's pacemaker.log past offset from (-1 when none exited there: a
// timeout, or no such op).
func (e *haEnv) lastOp(n *pcmk.Node, from int64, rsc, op string) (int, time.Duration) {
	e.t.Helper()
	b, _ := os.ReadFile(n.LogPath(pcmk.PacemakerLog))
	if int64(len(b)) < from {
		from = 0
	}
	b = b[from:]
	status, took := -1, time.Duration(0)
	for _, m := range execRe.FindAllStringSubmatch(string(b), -1) {
		if m[1] != rsc || m[2] != op {
			continue
		}
		status, _ = strconv.Atoi(m[4])
		v, _ := strconv.ParseFloat(m[5], 64)
		took = time.Duration(v * float64(time.Millisecond))
		if m[6] == "s" {
			took = time.Duration(v * float64(time.Second))
		}
	}
	return status, took
}

// waitTemp waits until a receiver's temp file of base (".base.ocf-csync.XXXXXX")
// in the in-node directory dir of n holds data, and returns its size.
func (e *haEnv) waitTemp(n *pcmk.Node, dir, base string, within time.Duration) int64 {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for {
		ents, _ := os.ReadDir(n.Path(dir))
		for _, de := range ents {
			if !strings.HasPrefix(de.Name(), "."+base+".ocf-csync.") {
				continue
			}
			if fi, err := de.Info(); err == nil && fi.Size() > 0 {
				return fi.Size()
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("no temp file of %s with data in %s on %s after %v", base, dir, n.Name, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitFileOrLog is waitFile that shows the daemon's log of logOf when the
// file does not arrive.
func (e *haEnv) waitFileOrLog(n *pcmk.Node, inNode, want string, within time.Duration, logOf *pcmk.Node) time.Duration {
	e.t.Helper()
	t0 := time.Now()
	for {
		if got, _ := e.read(n, inNode); got == want {
			return time.Since(t0)
		}
		if time.Since(t0) > within {
			got, _ := e.read(n, inNode)
			e.t.Fatalf("%s on %s is %q after %v, want %q; %s's daemon log:%s", inNode, n.Name, got, within, want,
				logOf.Name, e.logLines(logOf, "component=daemon", "mirror(p_mirror)"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitMonitor waits until the monitor of the mirror on n returns rc.
func (e *haEnv) waitMonitor(n *pcmk.Node, rc int, within time.Duration, what string) time.Duration {
	e.t.Helper()
	t0 := time.Now()
	for {
		got, r := e.agentRC(n, "force-check")
		if got == rc {
			return time.Since(t0)
		}
		if time.Since(t0) > within {
			e.t.Errorf("monitor on %s %s = %d after %v, want %d\n%s", n.Name, what, got, within, rc, r)
			return time.Since(t0)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// settledStranded has the admin take the failed node's stranded work
// (resolve --keep-remote on the active node), syncs, and checks the
// scenario settled.
func (e *haEnv) settledStranded(act, failed *pcmk.Node, m notifyMark, files []string) {
	e.t.Helper()
	e.waitMonitor(act, 190, 10*time.Second, "with stranded changes")
	for _, f := range files {
		if r := e.csync(act, "resolve", "--keep-remote", haData+"/"+f); r.code != 0 {
			e.t.Errorf("resolve --keep-remote %s on %s:\n%s", f, act.Name, r)
		}
	}
	if r := e.csync(act, "sync"); r.code != 0 {
		e.t.Errorf("sync on %s after resolve:\n%s", act.Name, r)
	}
	e.settled("after "+failed.Name+"'s crash, its work taken over", act, m,
		expect{events: []string{ha.EventTakeoverUnclean, ha.EventStranded, ha.EventPeerUnreachable, ha.EventFinalSyncIncomplete}})
}

// wipe empties n's data tree and state dir, as a replaced disk would.
func wipe(t *testing.T, n *pcmk.Node) {
	t.Helper()
	for _, d := range []string{haData, pcmk.VarDir + "/ocf-csync"} {
		ents, _ := os.ReadDir(n.Path(d))
		for _, de := range ents {
			if err := os.RemoveAll(filepath.Join(n.Path(d), de.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// waitLog waits until n's pacemaker.log has a line with sub after offset.
func waitLog(t *testing.T, n *pcmk.Node, from int64, sub string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		b, _ := os.ReadFile(n.LogPath(pcmk.PacemakerLog))
		if int64(len(b)) > from && strings.Contains(string(b[from:]), sub) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in %s's pacemaker.log after %v", sub, n.Name, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestHACrmThreeNodes: the README's crmsh sequence on 3 nodes, on empty
// trees, then on a fresh cluster with content on the node that becomes
// active first: every tree ends identical, with no conflict, guard or
// takeover. Then the location rule and a switchover: the new active node
// pushes to the third node without conflicts.
func TestHACrmThreeNodes(t *testing.T) {
	e := newCrmHA(t, 3)
	n1 := e.c.Node(1)
	e.readmeSequence("README sequence on 3 nodes, empty trees", false)
	e.resetCluster()
	act := e.readmeSequence("README sequence on 3 nodes with content", true)
	// The README's location rule (finite score) is valid crmsh and moves
	// nothing while the active node is current.
	e.crm(n1, "configure", "location", "l_g_current", "g", "rule", "100:", "csync-current", "eq", "1")
	if got := e.waitGroup(n1, ""); got != act {
		t.Errorf("the csync-current location rule moved the group to %s", got.Name)
	}
	mon, _, _ := n1.Run(context.Background(), "crm_mon", "-1", "-A", "-r")
	t.Logf("# crm_mon -1 -A -r\n%s", mon)
	for _, n := range e.c.Nodes() {
		if r := e.csync(n, "status"); true {
			t.Logf("# ocf-csync status (on %s)\n%s", n.Name, r.stdout)
		}
	}

	m := e.notifyMark()
	e.writeData(act, "content/last.txt", "before the move\n")
	e.standby(act, act, true)
	nw := e.waitGroup(n1, act.Name)
	e.writeData(nw, "content/after.txt", "after the move, on "+nw.Name+"\n")
	if r := e.csync(nw, "sync"); r.code != 0 {
		t.Errorf("sync on the new active node %s:\n%s", nw.Name, r)
	}
	e.standby(nw, act, false)
	e.settled("switchover on 3 nodes", nw, m, expect{})
}
