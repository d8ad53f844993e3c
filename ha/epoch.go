package ha

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"ocf-csync/syncer/state"
)

var (
	_ Pacemaker = (*CLI)(nil)
	_ Pacemaker = (*Fake)(nil)
)

// ErrPublish marks a TakeEpoch error where the epoch was taken and stored
// durably but could not be published as a Pacemaker node attribute. The
// returned epoch is valid; the caller should log and carry on.
var ErrPublish = errors.New("epoch stored but not published to Pacemaker")

// TakeEpoch makes this node's new epoch: one more than the highest one
// known from the local store, the handoff records in it, the epochs peers
// reported (peersEpochs) and, when Pacemaker runs, the csync-epoch node
// attribute of every node. It records the epoch durably in st and then
// publishes it with `crm_attribute -N <node> -n csync-epoch -v E -l
// forever`. pcmk may be nil (no cluster manager).
//
// When only publishing fails the epoch is returned with an error matching
// ErrPublish; any other error returns 0 and nothing was stored.
func TakeEpoch(ctx context.Context, st *state.Store, pcmk Pacemaker, peersEpochs []uint64) (uint64, error) {
	cur, err := st.Epoch()
	if err != nil {
		return 0, fmt.Errorf("take epoch: %w", err)
	}
	hs, err := st.Handoffs()
	if err != nil {
		return 0, fmt.Errorf("take epoch: %w", err)
	}
	max := cur
	for _, h := range hs {
		max = maxU(max, h.Epoch)
	}
	for _, e := range peersEpochs {
		max = maxU(max, e)
	}
	present := false
	if pcmk != nil {
		attrs, err := pcmk.NodeAttributes(ctx, EpochAttribute)
		switch {
		case errors.Is(err, ErrNotRunning):
		case err != nil:
			// Taking an epoch lower than one the cluster already knows would
			// make a later failover look clean when it was not.
			return 0, fmt.Errorf("take epoch: read the %s attributes: %w", EpochAttribute, err)
		default:
			present = true
			for node, v := range attrs {
				e, err := strconv.ParseUint(v, 10, 64)
				if err != nil {
					return 0, fmt.Errorf("take epoch: node %s has %s=%q, not a number; fix it with crm_attribute -N %s -n %s -D",
						node, EpochAttribute, v, node, EpochAttribute)
				}
				max = maxU(max, e)
			}
		}
	}
	e := max + 1
	if err := st.SetEpoch(e); err != nil {
		return 0, fmt.Errorf("take epoch %d: %w", e, err)
	}
	if !present {
		return e, nil
	}
	node, err := pcmk.NodeName(ctx)
	if err == nil {
		err = pcmk.SetNodeAttribute(ctx, node, EpochAttribute, strconv.FormatUint(e, 10), Forever)
	}
	if err != nil {
		return e, fmt.Errorf("take epoch %d: %w: %w", e, ErrPublish, err)
	}
	return e, nil
}

func maxU(a, b uint64) uint64 {
	if b > a {
		return b
	}
	return a
}

// Failover policies (config ha { failover-policy … }).
const (
	PolicyGuard     = "guard"
	PolicySkipFirst = "skip-first"
	PolicyOff       = "off"
)

// Failover is what a node that just became active must do about the node
// that was active before it.
type Failover struct {
	// Clean: the previous active node handed off cleanly (or there was
	// none); sync normally.
	Clean bool
	// Guarded lists the peers that pushes must not reach until a
	// reconciliation compared both sides (policy guard).
	Guarded []string
	// SkipFirst: skip the first sync after takeover (policy skip-first).
	SkipFirst bool
	// Reason says why, for logs, status and the notify hook.
	Reason string
}

// FailoverDecision decides how a node that just became active treats the
// previous term prev (the highest (epoch, node) known before it took its
// epoch). The handoff was clean when prev.Node left a handoff record with
// Clean=true for prev.Epoch or later: then sync is normal. Otherwise policy
// applies: guard blocks pushes to prev.Node, skip-first skips the first
// sync, off does nothing. An unknown policy is treated as guard, the safe
// choice. No previous term (a fresh cluster), or a previous term of this
// very node (a restart in place), means nothing to guard.
func FailoverDecision(handoffs []state.Handoff, prev Term, self, policy string) Failover {
	switch {
	case prev.Node == "":
		return Failover{Clean: true, Reason: "no node was active before: a fresh cluster, normal sync"}
	case prev.Node == self:
		return Failover{Clean: true, Reason: fmt.Sprintf("this node held the last term (epoch %d): normal sync", prev.Epoch)}
	}
	var seen *state.Handoff
	for i, h := range handoffs {
		if h.From != prev.Node {
			continue
		}
		seen = &handoffs[i]
		if h.Clean && h.Epoch >= prev.Epoch {
			return Failover{Clean: true, Reason: fmt.Sprintf("%s handed off cleanly at epoch %d: normal sync", prev.Node, h.Epoch)}
		}
	}
	why := fmt.Sprintf("no handoff record from %s", prev.Node)
	switch {
	case seen != nil && !seen.Clean:
		why = fmt.Sprintf("%s's handoff at epoch %d was not clean", prev.Node, seen.Epoch)
	case seen != nil:
		why = fmt.Sprintf("%s's last clean handoff is for epoch %d, not %d", prev.Node, seen.Epoch, prev.Epoch)
	}
	switch policy {
	case PolicySkipFirst:
		return Failover{SkipFirst: true, Reason: why + ": skipping the first sync (failover-policy skip-first)"}
	case PolicyOff:
		return Failover{Reason: why + ": not guarded (failover-policy off)"}
	case PolicyGuard:
		return Failover{Guarded: []string{prev.Node}, Reason: why + ": pushes to " + prev.Node + " blocked until reconciled (failover-policy guard)"}
	default:
		return Failover{Guarded: []string{prev.Node}, Reason: fmt.Sprintf("%s: pushes to %s blocked until reconciled (unknown failover-policy %q, treated as guard)", why, prev.Node, policy)}
	}
}
