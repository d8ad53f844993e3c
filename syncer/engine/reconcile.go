package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"ocf-csync/syncer/state"
)

// Stranded policies (config ha { stranded … }).
const (
	StrandedKeep    = "keep"
	StrandedPull    = "pull"
	StrandedDiscard = "discard"
)

// ReconcileResult sorts the differences with a guarded peer (DESIGN §7).
type ReconcileResult struct {
	Peer      string
	Push      []string // changed only here since we last agreed: pushed normally
	Stranded  []string // changed only there: a stranded change
	Conflicts []string // changed on both sides
}

// Reconcile compares a peer the failover guard blocks with what both sides
// last agreed on (the bases), and sorts every difference. Changes made only
// here are marked dirty for the peer; changes made only there are recorded
// as stranded (and, with policy discard, marked forced so our version wins;
// the receiver keeps a backup when backups are configured); changes on both
// sides are recorded as conflicts. It returns an error when the peer cannot
// be compared: the peer then stays blocked.
func Reconcile(ctx context.Context, o CompareOptions, st *state.Store, peer, policy string) (ReconcileResult, error) {
	out := ReconcileResult{Peer: peer}
	o.Store, o.Peers = st, []string{peer}
	cr := Compare(ctx, o)
	if len(cr.Errors) > 0 {
		return out, fmt.Errorf("compare with %s: %w", peer, errors.Join(cr.Errors...))
	}
	b := st.NewBatch()
	defer b.Cancel()
	now := time.Now().UnixNano()
	for _, d := range cr.Diffs {
		base, hasBase, err := st.GetBase(peer, d.Path)
		if err != nil {
			return out, err
		}
		differs := func(r *state.FileRecord) bool {
			if !hasBase || base.Kind == state.KindNone {
				return r != nil
			}
			return r == nil || !r.SameContent(&base)
		}
		localChanged, remoteChanged := differs(d.Local), differs(d.Remote)
		if !localChanged && !remoteChanged {
			// Same content on both sides, only metadata differs. A
			// directory's mtime moves with its entries, so ours wins there;
			// otherwise a metadata change made only there is stranded.
			remoteMeta := d.Remote != nil && hasBase && !d.Remote.SameMeta(&base, o.Ignore)
			localMeta := d.Local != nil && hasBase && !d.Local.SameMeta(&base, o.Ignore)
			isDir := d.Local != nil && d.Local.Kind == state.KindDir
			remoteChanged = remoteMeta && !localMeta && !isDir
			localChanged = !remoteChanged
		}
		switch {
		case remoteChanged && !localChanged:
			out.Stranded = append(out.Stranded, d.Path)
			s := state.Stranded{Path: d.Path, Peer: peer, RemoteExists: d.Remote != nil, DetectedNs: now}
			if d.Remote != nil {
				s.Remote = *d.Remote
			}
			if err := st.PutStranded(s); err != nil {
				return out, err
			}
			if policy == StrandedDiscard {
				b.MarkDirty(peer, d.Path, state.DirtyRecord{Forced: true, MarkedNs: now})
			}
		case localChanged && !remoteChanged:
			out.Push = append(out.Push, d.Path)
			b.MarkDirty(peer, d.Path, state.DirtyRecord{MarkedNs: now})
		default:
			out.Conflicts = append(out.Conflicts, d.Path)
			c := state.Conflict{Path: d.Path, Peer: peer, Group: d.Group, RemoteExists: d.Remote != nil,
				DetectedNs: now, Reason: "changed on both sides around a failover"}
			if d.Local != nil {
				c.Local = *d.Local
			}
			if d.Remote != nil {
				c.Remote = *d.Remote
			}
			if err := st.PutConflict(c); err != nil {
				return out, err
			}
		}
	}
	if err := b.CommitDurable(); err != nil {
		return out, fmt.Errorf("record reconciliation with %s: %w", peer, err)
	}
	return out, nil
}
