package ha

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"ocf-csync/syncer/state"
)

// A term is one node's time as the active node: it starts when the node
// first passes the gate in a run and takes the next epoch. Two nodes can
// hold the same epoch (each side of a partition has its own CIB, and
// crm_attribute has no compare-and-set), so terms are ordered by (epoch,
// node name) everywhere one is picked.
type Term struct {
	Node  string
	Epoch uint64
}

// After reports whether t is later than u in the total order.
func (t Term) After(u Term) bool {
	if t.Epoch != u.Epoch {
		return t.Epoch > u.Epoch
	}
	return t.Node > u.Node
}

func (t Term) String() string {
	if t.Node == "" {
		return "none"
	}
	return fmt.Sprintf("%s at epoch %d", t.Node, t.Epoch)
}

// KnownTerms lists every term this node knows of: its own last one (the
// stored epoch), the handoff records peers left here, and, when Pacemaker
// runs, every node's csync-epoch attribute. An unreadable attribute set
// (Pacemaker runs but does not answer) is an error: a term picked without
// it could be older than the real one.
func KnownTerms(ctx context.Context, st *state.Store, pcmk Pacemaker, self string) ([]Term, error) {
	local, cluster, err := knownTerms(ctx, st, pcmk, self)
	return append(local, cluster...), err
}

// knownTerms is KnownTerms split into the terms of this node's store and
// those of the cluster's attributes (nil without Pacemaker).
func knownTerms(ctx context.Context, st *state.Store, pcmk Pacemaker, self string) (local, cluster []Term, err error) {
	var out []Term
	own, err := st.Epoch()
	if err != nil {
		return nil, nil, err
	}
	if own > 0 {
		out = append(out, Term{self, own})
	}
	hs, err := st.Handoffs()
	if err != nil {
		return nil, nil, err
	}
	for _, h := range hs {
		if h.Epoch > 0 {
			out = append(out, Term{h.From, h.Epoch})
		}
	}
	if pcmk == nil {
		return out, nil, nil
	}
	attrs, err := pcmk.NodeAttributes(ctx, EpochAttribute)
	switch {
	case errors.Is(err, ErrNotRunning):
		return out, nil, nil
	case err != nil:
		return nil, nil, fmt.Errorf("read the %s node attributes: %w", EpochAttribute, err)
	}
	cluster = []Term{}
	for node, v := range attrs {
		e, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, nil, fmt.Errorf("node %s has %s=%q, not a number; fix it with crm_attribute -N %s -n %s -D",
				node, EpochAttribute, v, node, EpochAttribute)
		}
		if e > 0 {
			cluster = append(cluster, Term{node, e})
		}
	}
	return out, cluster, nil
}

// Latest is the highest term of ts; the zero Term when there is none.
func Latest(ts []Term) Term {
	var best Term
	for _, t := range ts {
		if t.After(best) {
			best = t
		}
	}
	return best
}

// Activation is what happened when this node became active.
type Activation struct {
	Epoch    uint64   // the new term's epoch
	Previous Term     // the term before it (self: a restart in place)
	Failover Failover // the decision about Previous
	// Published is false when the epoch is stored but Pacemaker did not
	// take the csync-epoch attribute (logged; not fatal).
	PublishErr error
}

// BecomeActive starts this node's term: it finds the previous term (the
// latest known, self included), takes and publishes the next epoch, decides
// about the previous active node and blocks the peers that decision guards.
// It is called once per daemon run, the first time the gate passes.
func BecomeActive(ctx context.Context, st *state.Store, pcmk Pacemaker, self, policy string) (Activation, error) {
	var a Activation
	terms, err := KnownTerms(ctx, st, pcmk, self)
	if err != nil {
		return a, fmt.Errorf("become active: %w", err)
	}
	a.Previous = Latest(terms)
	hs, err := st.Handoffs()
	if err != nil {
		return a, fmt.Errorf("become active: %w", err)
	}
	a.Epoch, err = TakeEpoch(ctx, st, pcmk, nil)
	if errors.Is(err, ErrPublish) {
		a.PublishErr, err = err, nil
	}
	if err != nil {
		return a, fmt.Errorf("become active: %w", err)
	}
	a.Failover = FailoverDecision(hs, a.Previous, self, policy)
	for _, p := range a.Failover.Guarded {
		if err := Block(st, p, a.Failover.Reason); err != nil {
			return a, err
		}
	}
	return a, nil
}

// AcceptHandoff decides whether a receiver records the handoff record h
// (a clean handoff, or the "I am active" mark of a new term) that the
// session's sender claims: only the node holding the current term may
// write one. With Pacemaker, h's term must be the latest csync-epoch term
// of the cluster; without it, it must not be older than any term this node
// knows. (Who the sender is, the transport and the SSH_CONNECTION check
// establish; this checks what it claims about the cluster.) A clean
// handoff is also refused by a node whose store holds no records at all.
func AcceptHandoff(ctx context.Context, st *state.Store, pcmk Pacemaker, self string, h state.Handoff) error {
	local, cluster, err := knownTerms(ctx, st, pcmk, self)
	if err != nil {
		return fmt.Errorf("cannot check the handoff of %s at epoch %d: %w", h.From, h.Epoch, err)
	}
	if h.Clean {
		// A clean handoff says this node holds every base the sender
		// has for it. A store with no records at all (a new node, or a
		// disk replaced while it was down) holds none, whatever the
		// sender believes: its next takeover must catch up and be
		// guarded, and the sender must learn it is not current.
		n, err := st.CountFiles()
		if err != nil {
			return fmt.Errorf("cannot check the handoff of %s at epoch %d: %w", h.From, h.Epoch, err)
		}
		if n == 0 {
			return fmt.Errorf("%s's clean handoff refused: this node holds no synced state (a new or wiped disk), so it is not up to date", h.From)
		}
	}
	claim := Term{h.From, h.Epoch}
	if len(cluster) > 0 {
		// The cluster says who holds the current term: every new active
		// node publishes its epoch before it writes anything.
		if latest := Latest(cluster); latest != claim {
			return fmt.Errorf("%s does not hold the current term (it claims epoch %d; Pacemaker's csync-epoch attributes say %s): handoff refused",
				h.From, h.Epoch, latest)
		}
		return nil
	}
	if latest := Latest(local); latest.After(claim) {
		return fmt.Errorf("%s does not hold the current term (it claims epoch %d; the latest known here is %s): handoff refused",
			h.From, h.Epoch, latest)
	}
	return nil
}
