package ha

import (
	"context"
	"strings"
	"testing"

	"ocf-csync/syncer/state"
)

// cluster simulates the term history of a few nodes: each has its own
// store, the Pacemaker attributes are shared (one CIB).
type termCluster struct {
	t      *testing.T
	stores map[string]*state.Store
	attrs  map[string]map[Lifetime]map[string]string
	pcmk   bool
}

func newTermCluster(t *testing.T, pcmk bool, names ...string) *termCluster {
	c := &termCluster{t: t, stores: map[string]*state.Store{}, attrs: map[string]map[Lifetime]map[string]string{}, pcmk: pcmk}
	for _, n := range names {
		st, err := state.Open(context.Background(), state.Options{Dir: t.TempDir(), Node: n})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		// Every node has synced something: a clean handoff needs state.
		b := st.NewBatch()
		b.PutFile("/data", &state.FileRecord{})
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		c.stores[n] = st
	}
	return c
}

func (c *termCluster) fake(node string) Pacemaker {
	if !c.pcmk {
		return nil
	}
	return &Fake{Running: true, Node: node, Attrs: c.attrs}
}

// activate makes node active and returns what BecomeActive decided.
func (c *termCluster) activate(node string) Activation {
	c.t.Helper()
	a, err := BecomeActive(context.Background(), c.stores[node], c.fake(node), node, PolicyGuard)
	if err != nil {
		c.t.Fatalf("%s becomes active: %v", node, err)
	}
	return a
}

// handoff writes from's handoff record (clean or a mark) on to, through
// the receiver's check.
func (c *termCluster) handoff(from, to string, epoch uint64, clean bool) error {
	h := state.Handoff{From: from, Epoch: epoch, Clean: clean}
	if err := AcceptHandoff(context.Background(), c.stores[to], c.fake(to), to, h); err != nil {
		return err
	}
	return c.stores[to].PutHandoff(h)
}

func (c *termCluster) mustHandoff(from, to string, epoch uint64, clean bool) {
	c.t.Helper()
	if err := c.handoff(from, to, epoch, clean); err != nil {
		c.t.Fatal(err)
	}
}

func guarded(a Activation) string { return strings.Join(a.Failover.Guarded, ",") }

func TestTermHistories(t *testing.T) {
	for _, pcmk := range []bool{true, false} {
		name := "without Pacemaker"
		if pcmk {
			name = "with Pacemaker"
		}
		t.Run(name, func(t *testing.T) {
			c := newTermCluster(t, pcmk, "node1", "node2")
			// Fresh cluster: nothing to guard.
			a := c.activate("node1")
			if a.Epoch != 1 || guarded(a) != "" || a.Previous != (Term{}) {
				t.Fatalf("fresh: %+v", a)
			}
			c.mustHandoff("node1", "node2", 1, false) // the mark of the new term
			// Restart in place (crm resource restart, daemon killed and
			// restarted): the previous term is this node's.
			a = c.activate("node1")
			if a.Epoch != 2 || guarded(a) != "" || a.Previous != (Term{"node1", 1}) {
				t.Fatalf("restart in place: %+v", a)
			}
			c.mustHandoff("node1", "node2", 2, false)
			// Clean switchover to node2, and back.
			c.mustHandoff("node1", "node2", 2, true)
			a = c.activate("node2")
			if a.Epoch != 3 || guarded(a) != "" || a.Previous != (Term{"node1", 2}) {
				t.Fatalf("switchover: %+v", a)
			}
			c.mustHandoff("node2", "node1", 3, false)
			c.mustHandoff("node2", "node1", 3, true)
			a = c.activate("node1")
			if a.Epoch != 4 || guarded(a) != "" {
				t.Fatalf("switchover back: %+v", a)
			}
			c.mustHandoff("node1", "node2", 4, false)
			// node1 crashes: node2 guards it.
			a = c.activate("node2")
			if a.Epoch != 5 || guarded(a) != "node1" || !strings.Contains(a.Failover.Reason, "not clean") {
				t.Fatalf("crash: %+v", a)
			}
			if g, _ := BlockedPeers(c.stores["node2"]); g["node1"] == "" {
				t.Errorf("node1 not blocked in node2's store: %v", g)
			}
			// The old active node cannot write a handoff any more.
			if err := c.handoff("node1", "node2", 4, true); err == nil {
				t.Errorf("a clean handoff from node1 at epoch 4 was accepted while node2 holds epoch 5")
			}
		})
	}
}

func TestTermTieOrder(t *testing.T) {
	// A partition: both sides took epoch 3.
	ts := []Term{{"node2", 3}, {"node1", 3}, {"node3", 2}}
	if got := Latest(ts); got != (Term{"node2", 3}) {
		t.Errorf("Latest = %v, want node2 at 3 (epoch, then node name)", got)
	}
}

func TestAcceptHandoffNeedsTheCurrentTerm(t *testing.T) {
	c := newTermCluster(t, true, "node1", "node2", "node3")
	c.activate("node1")
	c.mustHandoff("node1", "node3", 1, false)
	c.activate("node2") // node1 crashed; node2 holds epoch 2
	for _, h := range []state.Handoff{
		{From: "node1", Epoch: 1, Clean: true},  // the old holder
		{From: "node1", Epoch: 2, Clean: true},  // the old holder claiming the new epoch
		{From: "node1", Epoch: 99, Clean: true}, // a made-up epoch
		{From: "node3", Epoch: 2, Clean: true},  // a node that was never active
	} {
		if err := AcceptHandoff(context.Background(), c.stores["node3"], c.fake("node3"), "node3", h); err == nil {
			t.Errorf("handoff %+v accepted; only node2 at epoch 2 may write one", h)
		}
	}
	if err := c.handoff("node2", "node3", 2, true); err != nil {
		t.Errorf("the holder's handoff refused: %v", err)
	}
}

// A node whose state is gone (a new or wiped disk) takes the mark of a
// new term, but no clean handoff: it holds none of the bases the sender
// believes it has.
func TestAcceptHandoffNeedsState(t *testing.T) {
	c := newTermCluster(t, true, "node1", "node2")
	c.activate("node1")
	empty, err := state.Open(context.Background(), state.Options{Dir: t.TempDir(), Node: "node2"})
	if err != nil {
		t.Fatal(err)
	}
	defer empty.Close()
	if err := AcceptHandoff(context.Background(), empty, c.fake("node2"), "node2", state.Handoff{From: "node1", Epoch: 1}); err != nil {
		t.Errorf("the mark of node1's term refused by a node without state: %v", err)
	}
	err = AcceptHandoff(context.Background(), empty, c.fake("node2"), "node2", state.Handoff{From: "node1", Epoch: 1, Clean: true})
	if err == nil || !strings.Contains(err.Error(), "no synced state") {
		t.Errorf("a clean handoff to a node without state: err = %v, want a refusal", err)
	}
	if err := c.handoff("node1", "node2", 1, true); err != nil {
		t.Errorf("a clean handoff to a node with state refused: %v", err)
	}
}
