package ha

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
)

func sample(t *testing.T, name string) ClusterStatus {
	t.Helper()
	data, err := os.ReadFile("testdata/crm_mon-" + name + ".xml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseStatus(data)
	if err != nil {
		t.Fatal(err)
	}
	return *s
}

func addrs(ips ...string) func() ([]net.Addr, error) {
	return func() ([]net.Addr, error) {
		var out []net.Addr
		for _, s := range ips {
			_, n, _ := net.ParseCIDR(s)
			ip, _, _ := net.ParseCIDR(s)
			out = append(out, &net.IPNet{IP: ip, Mask: n.Mask})
		}
		return out, nil
	}
}

func TestGate(t *testing.T) {
	const vip = "127.1.63.100"
	started := sample(t, "vip-started")   // vip Started on node1
	multi := sample(t, "multiple-active") // vip on node1 and node2
	partition := sample(t, "partition-node1")
	noDC := ClusterStatus{Nodes: started.Nodes}
	noQuorum := started
	noQuorum.Quorum = false
	starting := started
	starting.Resource = []ResourceStatus{{ID: "vip", Role: "Starting", Active: true, NodesRunningOn: 1, Nodes: []string{"node1"}}}

	tests := []struct {
		name     string
		ip, res  string
		running  bool
		st       ClusterStatus
		node     string
		local    []string
		pcmkErr  error
		active   bool
		multiple bool
		holder   string
		reason   string // substring
		wantErr  bool
	}{
		{name: "no gate", active: true, reason: "every node pushes"},
		{name: "ip local, no pacemaker", ip: vip, local: []string{vip + "/24"}, active: true, holder: "local", reason: "no Pacemaker"},
		{name: "ip with prefix", ip: vip + "/24", local: []string{vip + "/24"}, active: true},
		{name: "ip elsewhere, no pacemaker", ip: vip, local: []string{"127.1.63.2/24"}, reason: "not on a local interface"},
		{name: "resource, no pacemaker", res: "vip", reason: "Pacemaker is not running"},
		{name: "resource started here", res: "vip", running: true, st: started, node: "node1", active: true, holder: "node1"},
		{name: "resource started elsewhere", res: "vip", running: true, st: started, node: "node2", holder: "node1", reason: "not Started on node2"},
		{name: "resource starting here", res: "vip", running: true, st: starting, node: "node1", reason: "pending"},
		{name: "ip local and resource here", ip: vip, res: "vip", running: true, st: started, node: "node1", local: []string{vip + "/24"}, active: true, holder: "node1"},
		{name: "ip local, found by address", ip: vip, running: true, st: started, node: "node1", local: []string{vip + "/24"}, active: true, holder: "node1"},
		{name: "ip not local although resource here", ip: vip, running: true, st: started, node: "node1", reason: "not on a local interface"},
		{name: "leftover ip, resource elsewhere", ip: vip, running: true, st: started, node: "node2", local: []string{vip + "/24"}, reason: "not Started on node2"},
		{name: "no quorum", res: "vip", running: true, st: noQuorum, node: "node1", holder: "node1", reason: "no quorum"},
		{name: "no DC", res: "vip", running: true, st: noDC, node: "node1", reason: "no DC"},
		{name: "multiple active", ip: vip, res: "vip", running: true, st: multi, node: "node1", local: []string{vip + "/24"}, multiple: true, reason: "split brain"},
		{name: "partition side sees only itself", res: "vip", running: true, st: partition, node: "node1", active: true, holder: "node1"},
		{name: "resource unknown", res: "nope", running: true, st: started, node: "node1", reason: "not in the cluster configuration"},
		{name: "pacemaker error", res: "vip", running: true, st: started, node: "node1", pcmkErr: errors.New("crm_mon: timeout"), wantErr: true, reason: "timeout"},
		{name: "bad cluster ip", ip: "not-an-ip", wantErr: true, reason: "not an IP address"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &Fake{Running: tc.running, Node: tc.node, St: tc.st, Err: tc.pcmkErr, IPRes: map[string]string{vip: "vip"}}
			g := &Gate{ClusterIP: tc.ip, IPResource: tc.res, Pacemaker: f, LocalAddrs: addrs(tc.local...)}
			d, err := g.Active(context.Background())
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if d.Active != tc.active || d.MultipleActive != tc.multiple || (tc.holder != "" && d.IPHolder != tc.holder) {
				t.Errorf("decision %+v; want active %v multiple %v holder %q", d, tc.active, tc.multiple, tc.holder)
			}
			if !strings.Contains(d.Reason, tc.reason) {
				t.Errorf("reason %q, want it to mention %q", d.Reason, tc.reason)
			}
			if tc.running && !tc.wantErr && (!d.PacemakerPresent || d.Quorum != tc.st.Quorum) {
				t.Errorf("decision %+v: want PacemakerPresent and Quorum %v", d, tc.st.Quorum)
			}
			if (tc.ip != "" || tc.res != "") != d.Gated {
				t.Errorf("Gated = %v", d.Gated)
			}
		})
	}
}

// TestGateChecksNow: the interface check is made at every call.
func TestGateChecksNow(t *testing.T) {
	local := []string{"10.0.0.1/24"}
	g := &Gate{ClusterIP: "10.0.0.9", Pacemaker: &Fake{},
		LocalAddrs: func() ([]net.Addr, error) { return addrs(local...)() }}
	if d, _ := g.Active(context.Background()); d.Active {
		t.Fatalf("active without the IP: %+v", d)
	}
	local = append(local, "10.0.0.9/24")
	if d, _ := g.Active(context.Background()); !d.Active {
		t.Fatalf("not active with the IP: %+v", d)
	}
	local = local[:1]
	if d, _ := g.Active(context.Background()); d.Active {
		t.Fatalf("still active after the IP went: %+v", d)
	}
}
