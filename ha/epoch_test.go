package ha

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"ocf-csync/syncer/state"
)

func openStore(t *testing.T) *state.Store {
	t.Helper()
	st, err := state.Open(context.Background(), state.Options{Dir: t.TempDir(), Node: "node1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestTakeEpoch(t *testing.T) {
	tests := []struct {
		name     string
		local    uint64
		handoffs []uint64
		peers    []uint64
		attrs    map[string]string // csync-epoch per node; nil: no Pacemaker
		readErr  error
		setErr   bool
		want     uint64
		wantErr  error // matched with errors.Is; nil: no error
		anyErr   bool
	}{
		{name: "first ever", want: 1},
		{name: "local store", local: 5, want: 6},
		{name: "handoff record", local: 2, handoffs: []uint64{7, 3}, want: 8},
		{name: "peer epochs", local: 2, peers: []uint64{4, 9}, want: 10},
		{name: "node attributes", local: 2, attrs: map[string]string{"node2": "12", "node3": "4"}, want: 13},
		{name: "pacemaker, no attributes yet", attrs: map[string]string{}, want: 1},
		{name: "attributes unreadable", local: 3, attrs: map[string]string{}, readErr: errors.New("cibadmin: timeout"), anyErr: true},
		{name: "attribute not a number", attrs: map[string]string{"node2": "x"}, anyErr: true},
		{name: "publish fails", local: 1, attrs: map[string]string{}, setErr: true, want: 2, wantErr: ErrPublish},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			st := openStore(t)
			if err := st.SetEpoch(tc.local); err != nil {
				t.Fatal(err)
			}
			for i, e := range tc.handoffs {
				if err := st.PutHandoff(state.Handoff{Epoch: e, From: []string{"node2", "node3"}[i], Clean: true}); err != nil {
					t.Fatal(err)
				}
			}
			f := &Fake{Node: "node1"}
			if tc.attrs != nil {
				f.Running = true
				for n, v := range tc.attrs {
					f.SetNodeAttribute(ctx, n, EpochAttribute, v, Forever)
				}
			}
			pf := &failingFake{Fake: f, readErr: tc.readErr, setErr: tc.setErr}
			e, err := TakeEpoch(ctx, st, pf, tc.peers)
			if tc.anyErr {
				if err == nil || e != 0 {
					t.Fatalf("TakeEpoch = %d, %v; want 0 and an error", e, err)
				}
				if got, _ := st.Epoch(); got != tc.local {
					t.Errorf("stored epoch changed to %d on error", got)
				}
				return
			}
			if e != tc.want || (tc.wantErr == nil) != (err == nil) || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
				t.Fatalf("TakeEpoch = %d, %v; want %d, %v", e, err, tc.want, tc.wantErr)
			}
			if got, _ := st.Epoch(); got != tc.want {
				t.Errorf("stored epoch %d, want %d", got, tc.want)
			}
			pub := f.AttrSnapshot("node1")[EpochAttribute]
			wantPub := ""
			if tc.attrs != nil && !tc.setErr {
				wantPub = strconv.FormatUint(tc.want, 10)
			}
			if pub != wantPub {
				t.Errorf("published csync-epoch %q, want %q (calls %v)", pub, wantPub, f.CallLog())
			}
			if tc.attrs == nil && slices.ContainsFunc(f.CallLog(), func(c string) bool { return strings.HasPrefix(c, "set ") }) {
				t.Errorf("published without Pacemaker: %v", f.CallLog())
			}
		})
	}
}

// failingFake injects errors into NodeAttributes and SetNodeAttribute.
type failingFake struct {
	*Fake
	readErr error
	setErr  bool
}

func (f *failingFake) NodeAttributes(ctx context.Context, name string) (map[string]string, error) {
	if f.readErr != nil {
		return nil, f.readErr
	}
	return f.Fake.NodeAttributes(ctx, name)
}

func (f *failingFake) SetNodeAttribute(ctx context.Context, node, name, value string, l Lifetime) error {
	if f.setErr {
		return errors.New("crm_attribute: connection lost")
	}
	return f.Fake.SetNodeAttribute(ctx, node, name, value, l)
}

func TestFailoverDecision(t *testing.T) {
	clean4 := state.Handoff{Epoch: 4, From: "node1", Clean: true}
	unclean4 := state.Handoff{Epoch: 4, From: "node1", Clean: false}
	old3 := state.Handoff{Epoch: 3, From: "node1", Clean: true}
	other := state.Handoff{Epoch: 4, From: "node3", Clean: true}
	tests := []struct {
		name      string
		handoffs  []state.Handoff
		prev      Term
		policy    string
		clean     bool
		guarded   []string
		skipFirst bool
		reason    string
	}{
		{name: "clean handoff", handoffs: []state.Handoff{clean4}, prev: Term{"node1", 4}, policy: "guard", clean: true, reason: "cleanly at epoch 4"},
		{name: "clean handoff, any policy", handoffs: []state.Handoff{other, clean4}, prev: Term{"node1", 4}, policy: "skip-first", clean: true},
		{name: "no previous active", prev: Term{}, policy: "guard", clean: true, reason: "fresh cluster"},
		{name: "no record, guard", prev: Term{"node1", 4}, policy: "guard", guarded: []string{"node1"}, reason: "no handoff record from node1"},
		{name: "unclean record, guard", handoffs: []state.Handoff{unclean4}, prev: Term{"node1", 4}, policy: "guard", guarded: []string{"node1"}, reason: "not clean"},
		{name: "stale record, guard", handoffs: []state.Handoff{old3}, prev: Term{"node1", 4}, policy: "guard", guarded: []string{"node1"}, reason: "epoch 3, not 4"},
		{name: "restart in place", handoffs: []state.Handoff{unclean4}, prev: Term{"node2", 4}, policy: "guard", clean: true, reason: "this node held the last term"},
		{name: "other node's record only", handoffs: []state.Handoff{other}, prev: Term{"node1", 4}, policy: "guard", guarded: []string{"node1"}},
		{name: "skip-first", prev: Term{"node1", 4}, policy: "skip-first", skipFirst: true, reason: "skip-first"},
		{name: "off", handoffs: []state.Handoff{unclean4}, prev: Term{"node1", 4}, policy: "off", reason: "not guarded"},
		{name: "unknown policy guards", prev: Term{"node1", 4}, policy: "yolo", guarded: []string{"node1"}, reason: "treated as guard"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := FailoverDecision(tc.handoffs, tc.prev, "node2", tc.policy)
			if got.Clean != tc.clean || !slices.Equal(got.Guarded, tc.guarded) || got.SkipFirst != tc.skipFirst {
				t.Errorf("got %+v; want clean %v guarded %v skip-first %v", got, tc.clean, tc.guarded, tc.skipFirst)
			}
			if !strings.Contains(got.Reason, tc.reason) {
				t.Errorf("reason %q, want it to mention %q", got.Reason, tc.reason)
			}
		})
	}
}
