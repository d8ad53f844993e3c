package pcmk

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"ocf-csync/ha"
	"ocf-csync/syncer/config"
	"ocf-csync/syncer/state"
)

// The test binary doubles as a helper run inside a node (nsenter), so the
// ha package's CLI adapter is exercised against that node's own Pacemaker.
const helperEnv = "OCF_CSYNC_PCMK_HELPER"

// captureEnv names a directory to save crm_mon XML samples in (for
// ha/testdata).
const captureEnv = "OCF_CSYNC_PCMK_CAPTURE"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "gate":
		os.Exit(helperGate())
	case "epoch":
		os.Exit(helperEpoch())
	default:
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", helperEnv, os.Getenv(helperEnv))
		os.Exit(2)
	}
}

type gateResult struct {
	ha.Decision
	Err string
}

func helperGate() int {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	g := ha.NewGate(config.HA{ClusterIP: os.Getenv("HA_CLUSTER_IP"), IPResource: os.Getenv("HA_IP_RESOURCE")}, nil, nil)
	d, err := g.Active(ctx)
	r := gateResult{Decision: d}
	if err != nil {
		r.Err = err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(r)
	return 0
}

func helperEpoch() int {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := state.Open(ctx, state.Options{Dir: os.Getenv("HA_STATE_DIR")})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer st.Close()
	e, err := ha.TakeEpoch(ctx, st, ha.NewCLI(), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(e)
	return 0
}

// gate runs the ha gate inside node n.
func gate(ctx context.Context, t *testing.T, n *Node, clusterIP, ipResource string) gateResult {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := n.Command(ctx, exe)
	cmd.Env = append(cmd.Env, helperEnv+"=gate", "HA_CLUSTER_IP="+clusterIP, "HA_IP_RESOURCE="+ipResource)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gate helper on %s: %v", n.Name, err)
	}
	var r gateResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("gate helper on %s printed %q: %v", n.Name, out, err)
	}
	return r
}

// gates runs the gate on every node at the same time.
func gates(ctx context.Context, t *testing.T, c *Cluster, clusterIP, ipResource string) []gateResult {
	t.Helper()
	rs := make([]gateResult, len(c.Nodes()))
	var wg sync.WaitGroup
	for i, n := range c.Nodes() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs[i] = gate(ctx, t, n, clusterIP, ipResource)
		}()
	}
	wg.Wait()
	return rs
}

func activeNodes(rs []gateResult) []string {
	var a []string
	for _, r := range rs {
		if r.Active {
			a = append(a, r.Node)
		}
	}
	return a
}

func capture(t *testing.T, n *Node, name string) {
	dir := os.Getenv(captureEnv)
	if dir == "" {
		return
	}
	out, _, err := n.Run(context.Background(), "crm_mon", "-1", "--output-as=xml")
	if err != nil && out == "" {
		t.Logf("capture %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(dir, name+".xml"), []byte(out), 0o644); err != nil {
		t.Logf("capture %s: %v", name, err)
	}
}

func vipXML(id, ip string) string {
	return `<primitive id="` + id + `" class="ocf" provider="heartbeat" type="IPaddr2">` +
		`<instance_attributes id="` + id + `-ia">` +
		`<nvpair id="` + id + `-ip" name="ip" value="` + ip + `"/>` +
		`<nvpair id="` + id + `-cidr" name="cidr_netmask" value="24"/>` +
		`<nvpair id="` + id + `-nic" name="nic" value="eth0"/>` +
		`</instance_attributes><operations>` +
		`<op id="` + id + `-mon" name="monitor" interval="2s" timeout="20s"/>` +
		`</operations></primitive>`
}

// TestClusterGate forms a 2-node cluster, runs an IPaddr2 VIP on it and
// checks that the ha gate, run inside each node, follows the VIP through
// a switchover and what it says during a split brain and the merge.
func TestClusterGate(t *testing.T) {
	c := New(t, Options{Nodes: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	n1, n2 := c.Node(1), c.Node(2)
	t.Logf("timing: cluster up (DC, quorum, 2 online) in %v", c.UpIn.Round(time.Millisecond))

	s, err := n2.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !s.HasDC || !s.Quorum || len(s.OnlineNodes()) != 2 {
		t.Fatalf("node2 sees DC %q quorum %v online %v; want a DC, quorum and 2 online nodes", s.DC, s.Quorum, s.OnlineNodes())
	}
	capture(t, n1, "idle")

	// Without a resource the gate is closed everywhere: the IP is nowhere.
	vip := c.SubnetPrefix() + ".100"
	for _, r := range gates(ctx, t, c, vip, "") {
		if r.Active || !r.PacemakerPresent || !r.Quorum {
			t.Errorf("before the VIP exists, gate on %s = %+v; want standby with Pacemaker and quorum", r.Node, r)
		}
	}

	// Stickiness keeps the VIP where it is when a node comes back.
	if _, _, err := n1.Run(ctx, "crm_attribute", "--type", "rsc_defaults", "-n", "resource-stickiness", "-v", "100"); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if _, _, err := n1.Run(ctx, "cibadmin", "-C", "-o", "resources", "-X", vipXML("vip", vip)); err != nil {
		t.Fatal(err)
	}
	s, err = n1.WaitStatus(ctx, "vip Started", func(s *ha.ClusterStatus) bool {
		st, _, _, _ := s.Placement("vip")
		return len(st) == 1
	})
	if err != nil {
		t.Fatal(err)
	}
	started, _, _, _ := s.Placement("vip")
	holder := started[0]
	t.Logf("timing: vip Started on %s %v after cibadmin -C", holder, time.Since(t0).Round(time.Millisecond))
	capture(t, n1, "vip-started")

	check := func(when string, want string) {
		t.Helper()
		for _, mode := range []struct{ ip, res string }{{vip, ""}, {"", "vip"}, {vip, "vip"}} {
			rs := gates(ctx, t, c, mode.ip, mode.res)
			got := activeNodes(rs)
			if len(got) != 1 || got[0] != want {
				t.Errorf("%s, cluster-ip %q ip-resource %q: active on %v, want only %s; decisions %+v", when, mode.ip, mode.res, got, want, rs)
			}
			for _, r := range rs {
				if r.IPHolder != want {
					t.Errorf("%s: %s reports IP holder %q, want %q", when, r.Node, r.IPHolder, want)
				}
			}
		}
	}
	check("after start", holder)

	// Epochs: each node takes max+1 and publishes it; the other node sees it.
	e1 := takeEpoch(ctx, t, n1)
	e2 := takeEpoch(ctx, t, n2)
	if e1 != 1 || e2 != 2 {
		t.Errorf("epochs taken on node1, node2 = %d, %d; want 1, 2 (node2 must see node1's csync-epoch attribute)", e1, e2)
	}
	if out, _, err := n1.Run(ctx, "crm_attribute", "-N", "node2", "-n", ha.EpochAttribute, "-G", "-q", "-l", "forever"); err != nil || strings.TrimSpace(out) != "2" {
		t.Errorf("node1 reads node2's %s as %q (%v), want 2", ha.EpochAttribute, out, err)
	}

	// Switchover: standby the holder; the gate follows the VIP.
	other := map[string]string{"node1": "node2", "node2": "node1"}[holder]
	oldN, newN := n1, n2
	if holder == "node2" {
		oldN, newN = n2, n1
	}
	t0 = time.Now()
	if _, _, err := n1.Run(ctx, "crm_standby", "-N", holder, "-v", "on"); err != nil {
		t.Fatal(err)
	}
	for {
		r := gate(ctx, t, newN, vip, "vip")
		if r.Active {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("gate on %s never opened after standby of %s: %+v", other, holder, r)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("timing: switchover (crm_standby -N %s on → gate active on %s) %v", holder, other, time.Since(t0).Round(time.Millisecond))
	if r := gate(ctx, t, oldN, vip, "vip"); r.Active {
		t.Errorf("after the switchover the old holder %s is still active: %+v", holder, r)
	}
	check("after switchover", other)
	if _, _, err := n1.Run(ctx, "crm_standby", "-N", holder, "-v", "off"); err != nil {
		t.Fatal(err)
	}
	if _, err := n1.WaitStatus(ctx, "both nodes out of standby", func(s *ha.ClusterStatus) bool {
		a, b := s.Node("node1"), s.Node("node2")
		return a != nil && b != nil && !a.Standby && !b.Standby && a.Online && b.Online
	}); err != nil {
		t.Fatal(err)
	}
	check("after standby off (stickiness keeps the VIP)", other)

	splitBrain(ctx, t, c, vip)
}

func takeEpoch(ctx context.Context, t *testing.T, n *Node) uint64 {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := n.Command(ctx, exe)
	cmd.Env = append(cmd.Env, helperEnv+"=epoch", "HA_STATE_DIR="+filepath.Join(n.Dir, "state"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("take epoch on %s: %v: %s", n.Name, err, out)
	}
	e, err := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		t.Fatalf("take epoch on %s printed %q", n.Name, out)
	}
	return e
}

// splitBrain cuts the link between the two nodes (two_node: 1, no
// fencing), waits until both hold the VIP, merges and watches the gate.
func splitBrain(ctx context.Context, t *testing.T, c *Cluster, vip string) {
	n1, n2 := c.Node(1), c.Node(2)
	t0 := time.Now()
	if err := n2.SetLink(false); err != nil {
		t.Fatal(err)
	}
	var rs []gateResult
	for {
		rs = gates(ctx, t, c, vip, "vip")
		if len(activeNodes(rs)) == 2 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("split brain: the VIP never ran on both sides: %+v", rs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// What really happens with two_node and no fencing: each side keeps
	// quorum, starts the VIP and sees it only on itself, so the gate
	// (rightly, from what it can know) opens on both.
	t.Logf("timing: split brain (link cut → gate active on both) %v", time.Since(t0).Round(time.Millisecond))
	for _, r := range rs {
		if !r.Quorum || r.MultipleActive {
			t.Errorf("during the partition %s reports quorum %v multiple %v; want quorum (two_node) and no multiple-active (it sees only itself)", r.Node, r.Quorum, r.MultipleActive)
		}
	}
	capture(t, n1, "partition-node1")

	// Merge: poll crm_mon on node1 and the gates until one node is left.
	t0 = time.Now()
	if err := n2.SetLink(true); err != nil {
		t.Fatal(err)
	}
	var sawMultiXML, sawMultiGate, sawBoth time.Duration
	var multiNote string
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		captured := false
		for {
			select {
			case <-done:
				return
			default:
			}
			out, _, err := n1.Run(ctx, "crm_mon", "-1", "--output-as=xml")
			if err == nil {
				if s, err := ha.ParseStatus([]byte(out)); err == nil {
					if _, _, multi, _ := s.Placement("vip"); multi && sawMultiXML == 0 {
						sawMultiXML = time.Since(t0)
						if dir := os.Getenv(captureEnv); dir != "" && !captured {
							os.WriteFile(filepath.Join(dir, "multiple-active.xml"), []byte(out), 0o644)
							captured = true
						}
					}
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	var final []gateResult
	stableSince := time.Duration(0)
	for {
		rs := gates(ctx, t, c, vip, "vip")
		el := time.Since(t0)
		for _, r := range rs {
			if r.MultipleActive && sawMultiGate == 0 {
				sawMultiGate, multiNote = el, r.Node+": "+r.Reason
			}
		}
		a := activeNodes(rs)
		if len(a) == 2 && el > 0 {
			sawBoth = el
		}
		s1, err1 := n1.Status(ctx)
		merged := err1 == nil && len(s1.OnlineNodes()) == 2
		if merged && len(a) == 1 {
			if stableSince == 0 {
				stableSince = el
			}
			if el-stableSince > 2*time.Second {
				final = rs
				break
			}
		} else {
			stableSince = 0
		}
		if ctx.Err() != nil {
			t.Fatalf("after the merge the gate never settled on one node: %+v", rs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(done)
	wg.Wait()
	t.Logf("timing: merge (link up → one active node, stable 2 s) %v", (stableSince).Round(time.Millisecond))
	t.Logf("merge: crm_mon showed vip on 2 nodes at %v; a gate reported MultipleActive at %v (%s); both gates still active until %v",
		sawMultiXML.Round(time.Millisecond), sawMultiGate.Round(time.Millisecond), multiNote, sawBoth.Round(time.Millisecond))
	a := activeNodes(final)
	if len(a) != 1 {
		t.Fatalf("after the merge active on %v, want exactly one node", a)
	}
	if sawMultiXML == 0 {
		t.Errorf("after the merge crm_mon never showed the VIP on 2 nodes; the split-brain guard (MultipleActive) cannot rely on it")
	}
	// The VIP itself must be on exactly one node again.
	holders := 0
	for _, n := range c.Nodes() {
		out, _, err := n.Run(ctx, "ip", "-o", "addr", "show", "dev", "eth0")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, " "+vip+"/") {
			holders++
		}
	}
	if holders != 1 {
		t.Errorf("after the merge the VIP address is on %d nodes' eth0, want 1", holders)
	}
}

// TestClusterQuorumAndPending uses 3 nodes (no two_node): a cut-off node
// loses quorum and its gate closes although it still holds its resource
// for a moment; and a resource whose start is slow is "Starting", which
// the gate must not take for "Started".
func TestClusterQuorumAndPending(t *testing.T) {
	c := New(t, Options{Nodes: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	n1, n3 := c.Node(1), c.Node(3)
	t.Logf("timing: 3-node cluster up in %v", c.UpIn.Round(time.Millisecond))

	// A Dummy that sleeps 4 s in start, pinned to node3.
	slow := `<primitive id="slow" class="ocf" provider="pacemaker" type="Dummy">` +
		`<instance_attributes id="slow-ia"><nvpair id="slow-sleep" name="op_sleep" value="4"/></instance_attributes>` +
		`<meta_attributes id="slow-meta"><nvpair id="slow-role" name="target-role" value="Stopped"/></meta_attributes>` +
		`<operations><op id="slow-start" name="start" interval="0" timeout="30s"/></operations></primitive>`
	pin := `<rsc_location id="slow-on-3" rsc="slow" node="node3" score="INFINITY"/>`
	// Created stopped, pinned, then started: so it starts on node3 only.
	if _, _, err := n1.Run(ctx, "cibadmin", "-C", "-o", "resources", "-X", slow); err != nil {
		t.Fatal(err)
	}
	if _, _, err := n1.Run(ctx, "cibadmin", "-C", "-o", "constraints", "-X", pin); err != nil {
		t.Fatal(err)
	}
	if _, _, err := n1.Run(ctx, "crm_resource", "-r", "slow", "--meta", "-p", "target-role", "-v", "Started"); err != nil {
		t.Fatal(err)
	}
	if _, err := n3.WaitStatus(ctx, "slow Starting", func(s *ha.ClusterStatus) bool {
		_, other, _, _ := s.Placement("slow")
		return len(other) == 1 && other[0] == "node3"
	}); err != nil {
		t.Fatal(err)
	}
	capture(t, n3, "starting")
	r := gate(ctx, t, n3, "", "slow")
	if r.Active || !strings.Contains(r.Reason, "pending") {
		t.Errorf("while slow is Starting on node3 its gate says %+v; want standby because the start is pending", r)
	}
	// crm_resource --locate already names node3 (the reference's trap).
	if out, _, err := n1.Run(ctx, "crm_resource", "--locate", "-r", "slow", "-Q"); err == nil {
		t.Logf("crm_resource --locate while Starting: %q", strings.TrimSpace(out))
	}
	if _, err := n3.WaitStatus(ctx, "slow Started", func(s *ha.ClusterStatus) bool {
		st, _, _, _ := s.Placement("slow")
		return len(st) == 1
	}); err != nil {
		t.Fatal(err)
	}
	if r := gate(ctx, t, n3, "", "slow"); !r.Active {
		t.Errorf("once slow is Started on node3 its gate says %+v; want active", r)
	}

	// Cut node3 off: it loses quorum (1 of 3 votes) and must close its gate.
	t0 := time.Now()
	if err := n3.SetLink(false); err != nil {
		t.Fatal(err)
	}
	for {
		r = gate(ctx, t, n3, "", "slow")
		if !r.Quorum && r.PacemakerPresent {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("node3 never lost quorum after the cut: %+v", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("timing: link cut → node3 without quorum %v", time.Since(t0).Round(time.Millisecond))
	capture(t, n3, "no-quorum")
	if r.Active || !strings.Contains(r.Reason, "quorum") {
		t.Errorf("node3 without quorum: gate %+v; want standby for lack of quorum", r)
	}
	if err := n3.SetLink(true); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitFormed(ctx); err != nil {
		t.Fatal(err)
	}

	// Crash and restart node3's stack: the others see it go and come back.
	t0 = time.Now()
	if err := n3.Crash(); err != nil {
		t.Fatal(err)
	}
	if n3.StackRunning() {
		t.Fatal("node3's stack still runs after Crash")
	}
	if _, err := n1.WaitStatus(ctx, "node3 offline", func(s *ha.ClusterStatus) bool {
		n := s.Node("node3")
		return n != nil && !n.Online && s.Quorum
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("timing: kill -9 of node3's stack → node1 sees it offline %v", time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	if err := n3.StartStack(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitFormed(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("timing: node3's stack restarted and rejoined in %v", time.Since(t0).Round(time.Millisecond))
}
