package ha

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"ocf-csync/syncer/engine"
	"ocf-csync/syncer/state"
)

// Catch-up (DESIGN §7, like DRBD resyncing before promotion): a node that
// becomes active with data that is not current first pulls what it lacks
// from a current peer, so that the services ordered after the mirror start
// on current data, and it never pushes a stale or empty tree over newer
// data.

// CatchUpNeed says whether this node, just become active, must catch up
// first, and why. hadState is false when its state database held nothing
// before this term (a new node, or a disk lost and replaced). A fresh
// cluster (no earlier term anywhere) never needs it: the first active
// node's tree is the seed.
func CatchUpNeed(ctx context.Context, pcmk Pacemaker, self string, prev Term, hadState bool) (bool, string) {
	if prev.Node == "" {
		return false, "a fresh cluster: this node's tree is the seed"
	}
	if !hadState {
		return true, "this node has no state: its data cannot be trusted to be current"
	}
	if prev.Node == self {
		return false, "this node held the last term"
	}
	if pcmk == nil {
		return false, "no Pacemaker: csync-current is unknown"
	}
	v, ok, err := pcmk.GetNodeAttribute(ctx, "", CurrentAttribute, Forever)
	switch {
	case err != nil:
		return false, "csync-current unreadable: " + err.Error()
	case ok && v == "0":
		return true, fmt.Sprintf("csync-current is 0: the last active node (%s) did not bring this node up to date", prev.Node)
	}
	return false, "csync-current is 1"
}

// CurrentPeers lists the peers to catch up from, best first: online nodes
// whose csync-current is 1, the previous active node first (it had the
// latest data), then by name.
func CurrentPeers(ctx context.Context, pcmk Pacemaker, self string, prev Term, peers []string) []string {
	if pcmk == nil {
		return nil
	}
	st, err := pcmk.Status(ctx)
	if err != nil {
		return nil
	}
	var out []string
	for _, p := range peers {
		n := st.Node(p)
		if p == self || n == nil || !n.Online {
			continue
		}
		if v, ok, err := pcmk.GetNodeAttribute(ctx, p, CurrentAttribute, Forever); err != nil || !ok || v != "1" {
			continue
		}
		out = append(out, p)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i] == prev.Node && out[j] != prev.Node })
	return out
}

// CatchUpResult is what a catch-up from one peer did.
type CatchUpResult struct {
	Peer      string
	Pulled    []string // now as on the peer
	Kept      []string // changed only here: pushed later
	Conflicts []string // changed on both sides: kept here, recorded
	Problems  []string // could not be pulled
}

// CatchUp compares this node with a current peer and pulls what it lacks:
// every entry the peer changed since they last agreed (or that this node
// knows nothing about) takes the peer's version; an entry only this node
// changed is kept (the next push carries it); one both changed is kept
// and recorded as a conflict.
func CatchUp(ctx context.Context, o engine.CompareOptions, st *state.Store, peer, tempDir string) (CatchUpResult, error) {
	out := CatchUpResult{Peer: peer}
	o.Store, o.Peers, o.Paths = st, []string{peer}, nil
	cr := engine.Compare(ctx, o)
	if len(cr.Errors) > 0 {
		return out, fmt.Errorf("compare with %s: %w", peer, errors.Join(cr.Errors...))
	}
	var pull []string
	now := time.Now().UnixNano()
	for _, d := range cr.Diffs {
		base, hasBase, err := st.GetBase(peer, d.Path)
		if err != nil {
			return out, err
		}
		_, known, err := st.GetFile(d.Path)
		if err != nil {
			return out, err
		}
		var bp *state.FileRecord
		if hasBase {
			bp = &base
		}
		v := Sort(d.Local, d.Remote, bp, o.Ignore)
		if !hasBase && d.Local != nil && d.Remote != nil && d.Local.SameContent(d.Remote) {
			// The same content, never agreed on (directories, mostly):
			// the current node's metadata wins.
			v = VerdictStranded
		}
		if v == VerdictConflict && !hasBase && !known {
			// This node never recorded its copy: nothing of its own to
			// protect against the current peer.
			v = VerdictStranded
		}
		switch v {
		case VerdictStranded: // the peer's change: take it
			pull = append(pull, d.Path)
		case VerdictPush:
			out.Kept = append(out.Kept, d.Path)
		default:
			out.Conflicts = append(out.Conflicts, d.Path)
			c := conflictOf(d, now, "changed here and on the current node while this node was not current")
			if err := st.PutConflict(c); err != nil {
				return out, err
			}
		}
	}
	pr, err := engine.Pull(ctx, o, tempDir, peer, pull)
	out.Pulled, out.Problems = pr.Pulled, pr.Problems
	return out, err
}
