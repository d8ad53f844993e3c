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
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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
	return e
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
// expected events. It waits up to 30 s for the daemon's cycles.
func (e *haEnv) settled(what string, act *pcmk.Node, m notifyMark, x expect) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var diff string
	for {
		diff = ""
		ref := manifest(e.t, act.Path(haData))
		for _, n := range e.others(act) {
			if d := diffManifests(act.Name, ref, n.Name, manifest(e.t, n.Path(haData))); d != "" {
				diff += d + "\n"
			}
		}
		if diff == "" || time.Now().After(deadline) {
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
	n1 := e.c.Node(1)
	m := e.notifyMark()

	// The README, verbatim: one primitive, the other, then the group. crm
	// starts the mirror alone first, wherever Pacemaker puts it.
	e.readmeVIP(n1)
	e.readmeMirror(n1)
	act := e.waitGroup(n1, "")
	sb := e.other(act)
	e.waitDaemonSynced(act)
	e.settled("README sequence on empty trees", act, m, expect{})
	if n := e.notifications(act) + e.notifications(sb); strings.Contains(n, "takeover-unclean") || strings.Contains(n, "final-sync-incomplete") {
		t.Errorf("the README sequence notified a takeover or an incomplete final sync:\n%s", n)
	}
	t.Logf("%s's log of the start: %s", act.Name, e.logLines(act, "became active", "standby", "takeover", "running"))
	t.Logf("%s's log of the start: %s", sb.Name, e.logLines(sb, "became active", "standby", "takeover", "running"))

	// Content on the active node; `ocf-csync sync` with the daemon running:
	// the change is on the peer when it returns, and it says so.
	m = e.notifyMark()
	e.writeData(act, "www/index.html", "<h1>v1</h1>\n")
	e.writeData(act, "etc/app.conf", "workers = 4\n")
	e.writeData(act, "doomed.txt", "deleted later\n")
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
	// daemon (Pacemaker's probe finds it dead and restarts it): the node
	// held the last term itself, so nothing is guarded.
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
	e.run(act, "crm_resource", "--refresh", "-r", "p_mirror")
	e.waitStatus(act, "running with a new daemon", 40*time.Second, func(s haStatus) bool {
		return s.Daemon == "running" && s.DaemonPid > 0 && s.DaemonPid != pid && s.LastSync != ""
	})
	e.settled("kill -9 of the daemon", act, m, expect{})

	// Crash of the active node with unsynced edits, a new file and a
	// deletion. The survivor takes over guarded; it reports each change
	// stranded within 40 s of the node's return, without anyone running
	// sync; its own change after the takeover reaches the returning node;
	// nothing of the failed node's work is lost.
	m = e.notifyMark()
	failed, surv := act, sb
	e.writeData(failed, "etc/app.conf", "workers = 8   # edited on "+failed.Name+", never synced\n")
	e.writeData(failed, "new-on-failed.txt", "new, never synced\n")
	if err := os.Remove(failed.Path(haData + "/doomed.txt")); err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	e.crash(failed)
	act = e.waitGroup(surv, failed.Name)
	t.Logf("crash of %s: group Started on %s %v after the kill", failed.Name, act.Name, time.Since(t0).Round(time.Millisecond))
	s := e.waitDaemonSynced(act)
	if !e.peerBlocked(s, failed.Name) {
		t.Errorf("after the crash %s does not block %s:\n%s", act.Name, failed.Name, s.Raw)
	}
	e.writeData(act, "after-takeover.txt", "written on "+act.Name+" after the takeover\n")
	back := e.powerOn(failed)
	s, d := e.waitStatus(act, "reporting the 3 stranded changes and no guard", 40*time.Second, func(s haStatus) bool {
		return len(s.Stranded) == 3 && !e.peerBlocked(s, failed.Name)
	})
	t.Logf("%s returned; %s reported its stranded changes %v after the return (%v after its sshd, stack and cluster were up):\n%s",
		failed.Name, act.Name, time.Since(back).Round(time.Millisecond), d.Round(time.Millisecond), strandedNames(s))
	for _, f := range []string{"etc/app.conf", "new-on-failed.txt", "doomed.txt"} {
		if !strings.Contains(strandedNames(s), f) {
			t.Errorf("%s is not reported stranded:\n%s", f, s.Raw)
		}
	}
	e.waitFileOrLog(failed, haData+"/after-takeover.txt", "written on "+act.Name+" after the takeover\n", 20*time.Second, act)
	if got, _ := e.read(failed, haData+"/etc/app.conf"); !strings.Contains(got, "never synced") {
		t.Errorf("the failed node's edit was overwritten: %q", got)
	}
	if _, ok := e.read(failed, haData+"/doomed.txt"); ok {
		t.Errorf("the failed node's deletion was undone")
	}
	if n := e.notifiedSince(act, m); !strings.Contains(n, "takeover-unclean") || !strings.Contains(n, "stranded") {
		t.Errorf("notify on %s did not get takeover-unclean and stranded:\n%s", act.Name, n)
	}
	e.settledStranded(act, failed, m, []string{"etc/app.conf", "new-on-failed.txt", "doomed.txt"})
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
	d = e.waitFile(sb, haData+"/while-standby-down.txt", "written while the standby was down\n", 40*time.Second)
	t.Logf("the standby %s got the change %v after it was back", sb.Name, (time.Since(back) - 0).Round(time.Millisecond))
	_ = d
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
	time.Sleep(time.Second)
	failed = act
	e.crash(failed)
	act = e.waitGroup(sb, failed.Name)
	e.powerOn(failed)
	e.standby(act, failed, false)
	s, _ = e.waitStatus(act, "reporting big.bin stranded", 40*time.Second, func(s haStatus) bool {
		return strings.Contains(strandedNames(s), "big.bin") && !e.peerBlocked(s, failed.Name)
	})
	if got, ok := e.read(act, haData+"/big.bin"); ok && got != string(big) {
		t.Errorf("a partial big.bin on %s (%d of %d bytes): the final sync left a mix", act.Name, len(got), len(big))
	}
	e.settledStranded(act, failed, m, []string{"big.bin"})
	sb = failed

	// A node returns from a power loss with an empty disk (tree and state
	// wiped while it was down) and is made active: it never pushes its
	// empty tree; its start pulls what it lacks from a current peer.
	m = e.notifyMark()
	before := manifest(t, act.Path(haData))
	e.crash(sb)
	wipe(t, sb)
	e.powerOn(sb)
	t0 = time.Now()
	e.standby(act, act, true)
	nw := e.waitGroup(sb, act.Name)
	t.Logf("empty-disk node %s made active: group Started %v after the move; p_mirror start took %v",
		nw.Name, time.Since(t0).Round(time.Millisecond), e.lastOpTime(nw, e.mirrorID(), "start"))
	t.Logf("%s's log of the start: %s", nw.Name, e.logLines(nw, "not current", "caught up", "catch-up", "became active"))
	if d := diffManifests("before", before, nw.Name, manifest(t, nw.Path(haData))); d != "" {
		t.Errorf("when p_mirror's start returned on %s its tree was not current:\n%s", nw.Name, d)
	}
	if d := diffManifests("before", before, act.Name, manifest(t, act.Path(haData))); d != "" {
		t.Errorf("the empty node pushed over %s's tree:\n%s", act.Name, d)
	}
	e.standby(act, act, false)
	act, sb = nw, act
	e.settled("empty disk made active", act, m, expect{})

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
	d = e.waitMonitor(act, 0, 60*time.Second, "after its current peer answered again")
	t.Logf("%s caught up %v after its current peer's sshd was back; its log: %s", act.Name, d.Round(time.Millisecond),
		e.logLines(act, "caught up", "catch-up", "not current"))
	// The stopping node's sshd was down, so its final sync may not finish:
	// then the takeover is unclean, guarded and reconciled (settled checks
	// that no guard is left).
	e.settled("empty disk, no current peer at first", act, m, expect{events: []string{ha.EventNotCurrent, ha.EventPeerUnreachable, ha.EventFinalSyncIncomplete, ha.EventTakeoverUnclean}})
	if fs := e.crmFailures(act); len(fs) > 0 {
		t.Logf("crm_mon lists these operation results: %v", fs)
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

// TestHACrmThreeNodes: the README's crmsh sequence on 3 nodes, with
// content on the node that becomes active first: every tree ends
// identical, with no conflict, guard or takeover. Then a switchover: the
// new active node pushes to the third node without conflicts.
func TestHACrmThreeNodes(t *testing.T) {
	e := newCrmHA(t, 3)
	n1 := e.c.Node(1)
	m := e.notifyMark()
	e.readmeVIP(n1)
	ctx, cancel := context.WithTimeout(context.Background(), haWait)
	defer cancel()
	var first string
	if _, err := n1.WaitStatus(ctx, "vip Started", func(s *ha.ClusterStatus) bool {
		vs, _, _, _ := s.Placement("vip")
		if len(vs) == 1 {
			first = vs[0]
		}
		return len(vs) == 1
	}); err != nil {
		t.Fatal(err)
	}
	seed := e.byName(first)
	for i := range 20 {
		e.writeData(seed, fmt.Sprintf("content/f%02d.txt", i), fmt.Sprintf("file %d on the first active node\n", i))
	}
	e.readmeMirror(n1)
	act := e.waitGroup(n1, "")
	if act != seed {
		t.Fatalf("the group started on %s, not on %s where vip was", act.Name, seed.Name)
	}
	e.waitDaemonSynced(act)
	e.settled("README sequence on 3 nodes with content", act, m, expect{})
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

	m = e.notifyMark()
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
