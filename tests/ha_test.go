package tests

// HA acceptance tests (issue 6): ocf-csync as the OCF agent ocf:csync:mirror
// in a real 2-node corosync+Pacemaker cluster of network namespaces (see
// tests/pcmk), with a real sshd per node, in the group
// g = { vip (IPaddr2 in the nodes' subnet), mirror }.

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ocf-csync/ha"
	"ocf-csync/tests/pcmk"
)

// In-node paths of the HA tests.
const (
	haCfg       = pcmk.EtcDir + "/ocf-csync.cfg"
	haKey       = pcmk.EtcDir + "/group.key"
	haNotify    = pcmk.EtcDir + "/notify.sh"
	haNotifyLog = pcmk.VarDir + "/notify.log"
	haData      = pcmk.DataDir
	haAgentDir  = "/usr/lib/ocf/resource.d/csync"
	haStopTO    = 60 * time.Second
)

// haWait bounds waits for the cluster to settle (start, move, takeover).
const haWait = 60 * time.Second

type haEnv struct {
	t   *testing.T
	c   *pcmk.Cluster
	vip string
	rsc string // the mirror primitive's id; "mirror" when empty
}

// mirrorID is the id of the ocf:csync:mirror primitive.
func (e *haEnv) mirrorID() string {
	if e.rsc == "" {
		return "mirror"
	}
	return e.rsc
}

type haOpts struct {
	rescan  int  // seconds, the mirror's rescan_interval
	noWatch bool // ha { watch no; }: only cycles (rescan, signal, stop) push
}

// newHA starts the cluster, configures ocf-csync on both nodes and the group
// g, and waits until g is Started on one node.
func newHA(t *testing.T, o haOpts) *haEnv {
	t.Helper()
	pcmk.RequireRoot(t)
	installAgent(t)
	c := pcmk.New(t, pcmk.Options{Nodes: 2, SSHD: true})
	e := &haEnv{t: t, c: c, vip: c.SubnetPrefix() + ".100"}
	key := groupKey(6)
	for _, n := range c.Nodes() {
		e.write(n, haCfg, e.configText(o), 0o644)
		e.write(n, haKey, key+"\n", 0o600)
		e.write(n, haNotify, "#!/bin/sh\necho \"$EVENT node=$NODE peer=$PEER detail=$DETAIL\" >>"+haNotifyLog+"\n", 0o755)
		e.write(n, haData+"/base.txt", "base\n", 0o644)
	}
	t.Logf("cluster up in %v", c.UpIn.Round(time.Millisecond))
	e.cib(c.Node(1), e.groupXML(o))
	return e
}

// configText is the config both nodes read: one group of both nodes over
// /srv/ocf-csync, the cluster IP in the ha block (so that the CLI on a
// standby gates like the daemon), and the notify hook.
func (e *haEnv) configText(o haOpts) string {
	watch := "yes"
	if o.noWatch {
		watch = "no"
	}
	return fmt.Sprintf(`# written by the ocf-csync HA acceptance tests
group data {
	host node1 node2;
	key %s;
	include %s;
}

ssh {
	identity %s;
	known-hosts %s;
	remote-command "%s serve";
	connect-timeout 5;
}

ha {
	cluster-ip %s;
	notify "%s";
	watch %s;
}
`, haKey, haData, pcmk.ClientKey, pcmk.KnownHosts, binary, e.vip, haNotify, watch)
}

func (e *haEnv) groupXML(o haOpts) string {
	return fmt.Sprintf(`<group id="g">
  <meta_attributes id="g-meta"><nvpair id="g-stick" name="resource-stickiness" value="100"/></meta_attributes>
  <primitive id="vip" class="ocf" provider="heartbeat" type="IPaddr2">
    <instance_attributes id="vip-ia">
      <nvpair id="vip-ip" name="ip" value="%s"/>
      <nvpair id="vip-mask" name="cidr_netmask" value="24"/>
      <nvpair id="vip-nic" name="nic" value="eth0"/>
    </instance_attributes>
    <operations><op id="vip-mon" name="monitor" interval="5s" timeout="20s"/></operations>
  </primitive>
  <primitive id="mirror" class="ocf" provider="csync" type="mirror">
    <instance_attributes id="mirror-ia">
      <nvpair id="mirror-config" name="config" value="%s"/>
      <nvpair id="mirror-ip" name="cluster_ip" value="%s"/>
      <nvpair id="mirror-rescan" name="rescan_interval" value="%d"/>
    </instance_attributes>
    <operations>
      <op id="mirror-start" name="start" interval="0" timeout="60s"/>
      <op id="mirror-stop" name="stop" interval="0" timeout="%ds"/>
      <op id="mirror-mon" name="monitor" interval="5s" timeout="30s"/>
    </operations>
  </primitive>
</group>`, e.vip, haCfg, e.vip, o.rescan, int(haStopTO/time.Second))
}

// installAgent links the test binary as /usr/lib/ocf/resource.d/csync/mirror
// (Pacemaker's executor looks there; the nodes share the host's /usr) and
// restores what was there in cleanup. Register it before the cluster, so
// the cluster closes first.
func installAgent(t *testing.T) {
	lockAgentLink(t)
	t.Helper()
	link := filepath.Join(haAgentDir, "mirror")
	old, err := os.Readlink(link)
	switch {
	case err == nil:
		t.Cleanup(func() { os.Remove(link); os.Symlink(old, link) })
	case errors.Is(err, os.ErrNotExist):
		if _, err := os.Stat(haAgentDir); errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(haAgentDir, 0o755); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Remove(haAgentDir) })
		}
		t.Cleanup(func() { os.Remove(link) })
	default:
		t.Skipf("%s exists and is not a link (%v); not replacing it", link, err)
	}
	// pacemaker-controld reads the meta-data as hacluster: the binary's
	// directory (a 0700 temp dir by default) must be searchable.
	if err := os.Chmod(filepath.Dir(binary), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := link + ".ha-test"
	os.Remove(tmp)
	if err := os.Symlink(binary, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		t.Fatal(err)
	}
}

// write writes an in-node file through its host-side path.
func (e *haEnv) write(n *pcmk.Node, inNode, data string, mode os.FileMode) {
	e.t.Helper()
	p := n.Path(inNode)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		e.t.Fatalf("create parent of %s on %s: %v", inNode, n.Name, err)
	}
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		e.t.Fatalf("write %s on %s: %v", inNode, n.Name, err)
	}
	if err := os.Chmod(p, mode); err != nil {
		e.t.Fatal(err)
	}
}

// read returns an in-node file's content, "" (and false) when missing.
func (e *haEnv) read(n *pcmk.Node, inNode string) (string, bool) {
	b, err := os.ReadFile(n.Path(inNode))
	return string(b), err == nil
}

// waitFile waits until the file on n has content want.
func (e *haEnv) waitFile(n *pcmk.Node, inNode, want string, within time.Duration) time.Duration {
	e.t.Helper()
	t0 := time.Now()
	for {
		got, _ := e.read(n, inNode)
		if got == want {
			return time.Since(t0)
		}
		if time.Since(t0) > within {
			e.t.Fatalf("%s on %s is %q after %v, want %q", inNode, n.Name, got, within, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cib adds xml to the resources section, on node n.
func (e *haEnv) cib(n *pcmk.Node, x string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, _, err := n.Run(ctx, "cibadmin", "--create", "-o", "resources", "--xml-text", x); err != nil {
		e.t.Fatalf("configure the group: %v", err)
	}
}

// other is the node that is not n.
func (e *haEnv) other(n *pcmk.Node) *pcmk.Node {
	if n.Index == 1 {
		return e.c.Node(2)
	}
	return e.c.Node(1)
}

// waitGroup waits, as seen from node from, until vip and mirror are both
// Started on one node (not on several, nothing pending) and returns it;
// notOn excludes a node (the one g must leave).
func (e *haEnv) waitGroup(from *pcmk.Node, notOn string) *pcmk.Node {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), haWait)
	defer cancel()
	var where string
	_, err := from.WaitStatus(ctx, "group g Started on one node", func(s *ha.ClusterStatus) bool {
		vs, vo, vm, _ := s.Placement("vip")
		ms, mo, mm, _ := s.Placement(e.mirrorID())
		if len(vs) != 1 || len(ms) != 1 || vs[0] != ms[0] || vm || mm || len(vo)+len(mo) > 0 || vs[0] == notOn {
			return false
		}
		where = vs[0]
		return true
	})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, n := range e.c.Nodes() {
		if n.Name == where {
			return n
		}
	}
	e.t.Fatalf("group runs on unknown node %q", where)
	return nil
}

// haResult is what one command on a node did.
type haResult struct {
	cmd            string
	stdout, stderr string
	code           int
}

func (r haResult) String() string {
	return fmt.Sprintf("`%s` exited %d\nstdout:\n%s\nstderr:\n%s", r.cmd, r.code, r.stdout, r.stderr)
}

// run runs a command on node n and returns what it did (never fails the
// test for a non-zero exit).
func (e *haEnv) run(n *pcmk.Node, name string, args ...string) haResult {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := n.Command(ctx, name, args...)
	var o, er bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &er
	err := cmd.Run()
	r := haResult{cmd: n.Name + "$ " + name + " " + strings.Join(args, " "), stdout: o.String(), stderr: er.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		e.t.Fatalf("%s: %v", r.cmd, err)
	}
	return r
}

// csync runs ocf-csync on n with the test config.
func (e *haEnv) csync(n *pcmk.Node, args ...string) haResult {
	e.t.Helper()
	return e.run(n, binary, append([]string{"--config", haCfg, "--node", n.Name}, args...)...)
}

// haStatus is the part of `ocf-csync status --json` the tests read.
type haStatus struct {
	Node      string `json:"node"`
	Role      string `json:"role"`
	Reason    string `json:"reason"`
	Epoch     uint64 `json:"epoch"`
	Daemon    string `json:"daemon"`
	DaemonPid int    `json:"daemon_pid"`
	LastSync  string `json:"last_sync"`
	Peers     []struct {
		Name    string `json:"name"`
		Pending int    `json:"pending"`
		Blocked bool   `json:"blocked"`
		LastOK  string `json:"last_sync"`
	} `json:"peers"`
	Conflicts []string        `json:"conflicts"`
	Stranded  []string        `json:"stranded"`
	Raw       json.RawMessage `json:"-"`
}

func (e *haEnv) status(n *pcmk.Node) haStatus {
	e.t.Helper()
	r := e.csync(n, "status", "--json")
	if r.code != 0 {
		e.t.Fatalf("status on %s failed:\n%s", n.Name, r)
	}
	var s haStatus
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		e.t.Fatalf("status --json on %s: %v\n%s", n.Name, err, r)
	}
	s.Raw = json.RawMessage(r.stdout)
	return s
}

// waitDaemonSynced waits until n's daemon reports a finished cycle (its
// first one runs right after start).
func (e *haEnv) waitDaemonSynced(n *pcmk.Node) haStatus {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := e.status(n)
		if s.Daemon == "running" && s.LastSync != "" {
			return s
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("daemon on %s has not finished a cycle after 30 s:\n%s", n.Name, s.Raw)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// standby puts node target in standby (or takes it out), from node from.
func (e *haEnv) standby(from, target *pcmk.Node, on bool) {
	e.t.Helper()
	v := "off"
	if on {
		v = "on"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, _, err := from.Run(ctx, "crm_standby", "-N", target.Name, "-v", v); err != nil {
		e.t.Fatal(err)
	}
}

// crmFailures lists the failed operations crm_mon shows on n
// ("mirror_stop_0 on node1: …").
func (e *haEnv) crmFailures(n *pcmk.Node) []string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _, err := n.Run(ctx, "crm_mon", "-1", "--output-as=xml")
	if err != nil {
		e.t.Fatal(err)
	}
	var doc struct {
		Failures []struct {
			OpKey      string `xml:"op_key,attr"`
			Node       string `xml:"node,attr"`
			ExitStatus string `xml:"exitstatus,attr"`
			ExitReason string `xml:"exitreason,attr"`
		} `xml:"failures>failure"`
	}
	if err := xml.Unmarshal([]byte(out), &doc); err != nil {
		e.t.Fatalf("parse crm_mon XML of %s: %v", n.Name, err)
	}
	var fs []string
	for _, f := range doc.Failures {
		fs = append(fs, fmt.Sprintf("%s on %s: %s (%s)", f.OpKey, f.Node, f.ExitStatus, f.ExitReason))
	}
	return fs
}

// execRe matches pacemaker-execd's line for a finished operation, e.g.
// "mirror stop (call 22, PID 1234) exited with status 0 (execution time 120ms, queue time 0ms)".
var execRe = regexp.MustCompile(`(\S+) (\S+) \(call (\d+), PID \d+\) exited with status (\d+) \(execution time ([0-9.]+)(ms|s)`)

// opTimes returns the execution times of rsc's op on n (in log order), from
// n's pacemaker.log.
func (e *haEnv) opTimes(n *pcmk.Node, rsc, op string) []time.Duration {
	b, _ := os.ReadFile(n.LogPath(pcmk.PacemakerLog))
	var out []time.Duration
	for _, m := range execRe.FindAllStringSubmatch(string(b), -1) {
		if m[1] != rsc || m[2] != op {
			continue
		}
		v, _ := strconv.ParseFloat(m[5], 64)
		d := time.Duration(v * float64(time.Millisecond))
		if m[6] == "s" {
			d = time.Duration(v * float64(time.Second))
		}
		out = append(out, d)
	}
	return out
}

// lastOpTime is the latest execution time of rsc's op on n.
func (e *haEnv) lastOpTime(n *pcmk.Node, rsc, op string) time.Duration {
	e.t.Helper()
	ts := e.opTimes(n, rsc, op)
	if len(ts) == 0 {
		e.t.Fatalf("no %s %s in %s's pacemaker.log; tail:\n%s", rsc, op, n.Name, n.LogTail(30))
	}
	return ts[len(ts)-1]
}

// logLines returns the lines of n's pacemaker.log that contain any of
// subs, joined for a test log.
func (e *haEnv) logLines(n *pcmk.Node, subs ...string) string {
	b, _ := os.ReadFile(n.LogPath(pcmk.PacemakerLog))
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		for _, s := range subs {
			if strings.Contains(l, s) {
				out = append(out, "\n\t"+strings.TrimSpace(l))
				break
			}
		}
	}
	return strings.Join(out, "")
}

// finalSyncRe matches the daemon's "final sync done … took=590ms" line.
var finalSyncRe = regexp.MustCompile(`final sync done .*took=([0-9.]+(?:ms|s|µs))`)

// finalSyncTook is the duration of n's last final sync per its log.
func (e *haEnv) finalSyncTook(n *pcmk.Node) time.Duration {
	e.t.Helper()
	b, _ := os.ReadFile(n.LogPath(pcmk.PacemakerLog))
	m := finalSyncRe.FindAllStringSubmatch(string(b), -1)
	if len(m) == 0 {
		e.t.Fatalf("no \"final sync done\" line in %s's pacemaker.log", n.Name)
	}
	d, err := time.ParseDuration(m[len(m)-1][1])
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

// agentRC runs one action of the mirror through Pacemaker's executor on n,
// with the CIB's parameters, and returns its exit code.
func (e *haEnv) agentRC(n *pcmk.Node, op string) (int, haResult) {
	e.t.Helper()
	r := e.run(n, "crm_resource", "--"+op, "-r", e.mirrorID())
	return r.code, r
}

// notifications returns the notify log of n.
func (e *haEnv) notifications(n *pcmk.Node) string {
	s, _ := e.read(n, haNotifyLog)
	return s
}

// TestHAOnlyActivePushes: the group starts on one node; only that node
// pushes, a standby's `sync` is a no-op with exit 0.
func TestHAOnlyActivePushes(t *testing.T) {
	e := newHA(t, haOpts{rescan: 2})
	t0 := time.Now()
	act := e.waitGroup(e.c.Node(1), "")
	sb := e.other(act)
	t.Logf("group g Started on %s %v after configuring it", act.Name, time.Since(t0).Round(time.Millisecond))

	if rc, r := e.agentRC(act, "force-check"); rc != 0 {
		t.Errorf("monitor of mirror on the active node %s = %d, want 0\n%s", act.Name, rc, r)
	}
	if rc, r := e.agentRC(sb, "force-check"); rc != 7 {
		t.Errorf("monitor of mirror on the standby %s = %d, want 7 (not running)\n%s", sb.Name, rc, r)
	}
	if fs := e.crmFailures(act); len(fs) > 0 {
		t.Errorf("crm_mon shows failed actions: %v", fs)
	}
	if s := e.status(act); s.Role != "active" || s.Daemon != "running" || s.Epoch == 0 {
		t.Errorf("status on the active node: role %q daemon %q epoch %d, want active, running, > 0\n%s", s.Role, s.Daemon, s.Epoch, s.Raw)
	}
	if s := e.status(sb); s.Role != "standby" {
		t.Errorf("status on the standby: role %q, want standby\n%s", s.Role, s.Raw)
	}

	// The daemon's periodic cycle carries a new file to the standby.
	e.write(act, haData+"/from-active.txt", "written on the active node\n", 0o644)
	d := e.waitFile(sb, haData+"/from-active.txt", "written on the active node\n", 10*time.Second)
	t.Logf("file created on %s reached %s in %v (rescan_interval 2 s)", act.Name, sb.Name, d.Round(time.Millisecond))

	// A change on the standby is not pushed, not even by `sync` there.
	e.write(sb, haData+"/base.txt", "changed on the standby\n", 0o644)
	e.write(sb, haData+"/from-standby.txt", "new on the standby\n", 0o644)
	r := e.csync(sb, "sync", "-v")
	if r.code != 0 || !strings.Contains(r.stdout, "not the active node") {
		t.Errorf("sync -v on the standby: want exit 0 and \"not the active node\":\n%s", r)
	}
	// Several daemon cycles, and one `sync` asked of the active node's
	// daemon (it waits for the cycle).
	if r := e.csync(act, "sync", "-v"); r.code != 0 || !strings.Contains(r.stdout, "finished in") {
		t.Errorf("sync -v on the active node: want exit 0 and the cycle's report:\n%s", r)
	}
	time.Sleep(3 * time.Second)
	if got, _ := e.read(act, haData+"/base.txt"); got != "base\n" {
		t.Errorf("base.txt on the active node is %q: the standby's change was pushed", got)
	}
	if _, ok := e.read(act, haData+"/from-standby.txt"); ok {
		t.Errorf("from-standby.txt reached the active node: the standby pushed")
	}
}

// TestHAStopPeerUnreachable: the final sync with nothing pending is
// measured, and a stop whose peer is cut off still succeeds within its
// timeout and is notified.
func TestHAStopPeerUnreachable(t *testing.T) {
	e := newHA(t, haOpts{rescan: 2})
	a := e.waitGroup(e.c.Node(1), "")
	e.waitDaemonSynced(a)
	e.waitFile(e.other(a), haData+"/base.txt", "base\n", 10*time.Second)

	// Nothing pending: the stop's final sync is the budgeted case. Three
	// clean moves; reported, not asserted (no test fails on an absolute
	// time).
	var stops, syncs []string
	for range 3 {
		time.Sleep(3 * time.Second) // a periodic cycle with nothing to do
		e.standby(a, a, true)
		nb := e.waitGroup(a, a.Name)
		stops = append(stops, e.lastOpTime(a, "mirror", "stop").String())
		syncs = append(syncs, e.finalSyncTook(a).String())
		if fs := e.crmFailures(nb); len(fs) > 0 {
			t.Errorf("crm_mon shows failed actions after a clean move: %v", fs)
		}
		e.standby(a, a, false)
		e.waitDaemonSynced(nb)
		a = nb
	}
	t.Logf("stop of mirror with nothing pending, 3 moves: op %s; final sync %s (budget < 1 s, DESIGN §11)",
		strings.Join(stops, ", "), strings.Join(syncs, ", "))
	b, a := a, e.other(a)

	// Cut a off, then move the group away from b in b's partition.
	e.waitDaemonSynced(b)
	if err := a.SetLink(false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.SetLink(true) })
	ctx, cancel := context.WithTimeout(context.Background(), haWait)
	defer cancel()
	if _, err := b.WaitStatus(ctx, a.Name+" offline", func(s *ha.ClusterStatus) bool {
		ns := s.Node(a.Name)
		return s.Quorum && ns != nil && !ns.Online
	}); err != nil {
		t.Fatal(err)
	}
	e.write(b, haData+"/pending.txt", "pending when the peer was cut off\n", 0o644)
	t0 := time.Now()
	e.standby(b, b, true)
	if _, err := b.WaitStatus(ctx, "mirror stopped on "+b.Name, func(s *ha.ClusterStatus) bool {
		ms, mo, _, _ := s.Placement("mirror")
		return len(ms)+len(mo) == 0
	}); err != nil {
		t.Fatal(err)
	}
	took := time.Since(t0)
	stop := e.lastOpTime(b, "mirror", "stop")
	t.Logf("stop of mirror on %s with its peer cut off: %v (op), %v until crm_mon showed it stopped; stop timeout %v",
		b.Name, stop, took.Round(time.Millisecond), haStopTO)
	if fs := e.crmFailures(b); len(fs) > 0 {
		t.Errorf("crm_mon on %s shows failed actions after a stop with the peer cut off: %v", b.Name, fs)
	}
	t.Logf("%s's log of the stop: %s", b.Name, e.logLines(b, "final sync", "push failed", "stopped"))
	// A stop past its timeout would show above as a failed stop.
	if n := e.notifications(b); !strings.Contains(n, "final-sync-incomplete") && !strings.Contains(n, "peer-unreachable") {
		t.Errorf("a final sync that could not reach %s was not notified (want final-sync-incomplete or peer-unreachable); notify log on %s:\n%s", a.Name, b.Name, n)
	}
}

// logDirTimes logs the data root's mtime on every node.
func (e *haEnv) logDirTimes(when string) {
	var parts []string
	for _, n := range e.c.Nodes() {
		fi, err := os.Stat(n.Path(haData))
		if err != nil {
			parts = append(parts, n.Name+": "+err.Error())
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %s", n.Name, fi.ModTime().Format("15:04:05.000000000")))
	}
	e.t.Logf("%s mtime %s: %s", haData, when, strings.Join(parts, ", "))
}

func (e *haEnv) peerBlocked(s haStatus, peer string) bool {
	for _, p := range s.Peers {
		if p.Name == peer && p.Blocked {
			return true
		}
	}
	return false
}

// lockAgentLink serializes the test packages that install the agent at
// /usr/lib/ocf/resource.d/csync/mirror (go test runs packages in
// parallel); the lock is released when the test ends.
func lockAgentLink(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile("/run/ocf-csync-agent-link.lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatalf("open agent link lock: %v", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("lock agent link: %v", err)
	}
	t.Cleanup(func() { f.Close() })
}
