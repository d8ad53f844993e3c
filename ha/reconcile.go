package ha

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"ocf-csync/syncer/config"
	"ocf-csync/syncer/engine"
	"ocf-csync/syncer/state"
)

// ReconcileResult sorts the differences with a guarded peer (DESIGN §7).
type ReconcileResult struct {
	Peer      string
	Push      []string // changed only here since we last agreed: pushed normally
	Stranded  []string // changed only there: a stranded change
	Conflicts []string // changed on both sides
}

// Verdict is where the reconciliation sorts one difference.
type Verdict int

const (
	VerdictPush     Verdict = iota // ours goes to the peer
	VerdictStranded                // the peer's change is kept and reported
	VerdictConflict                // both changed: nothing moves
)

// Sort decides one difference between this node (local) and a peer
// (remote), nil meaning absent, against the base both last agreed on
// (hasBase false: none). It is the reconciliation policy; the engine only
// found the difference.
func Sort(local, remote, base *state.FileRecord, ig config.Ignore) Verdict {
	if (base == nil || base.Kind == state.KindNone) && local != nil && remote != nil && local.SameContent(remote) {
		// Never agreed, but the same content (or a directory on both
		// sides, e.g. two mkdirs of a fresh cluster): nothing conflicts;
		// the active node's metadata wins.
		return VerdictPush
	}
	differs := func(r *state.FileRecord) bool {
		if base == nil || base.Kind == state.KindNone {
			return r != nil
		}
		return r == nil || !r.SameContent(base)
	}
	localChanged, remoteChanged := differs(local), differs(remote)
	if !localChanged && !remoteChanged {
		// Same content on both sides, only metadata differs. A
		// directory's mtime moves with its entries, so ours wins there;
		// otherwise a metadata change made only there is stranded.
		hasBase := base != nil && base.Kind != state.KindNone
		remoteMeta := remote != nil && hasBase && !remote.SameMeta(base, ig)
		localMeta := local != nil && hasBase && !local.SameMeta(base, ig)
		isDir := local != nil && local.Kind == state.KindDir
		remoteChanged = remoteMeta && !localMeta && !isDir
		localChanged = !remoteChanged
	}
	switch {
	case remoteChanged && !localChanged:
		return VerdictStranded
	case localChanged && !remoteChanged:
		return VerdictPush
	}
	return VerdictConflict
}

// Reconcile compares a peer the failover guard blocks with what both sides
// last agreed on (the bases), and sorts every difference (Sort). Changes
// made only here are marked dirty for the peer; changes made only there are
// recorded as stranded (and, with policy discard, marked forced so our
// version wins; the receiver keeps a backup when backups are configured);
// changes on both sides are recorded as conflicts. It returns an error when
// the peer cannot be compared: the peer then stays blocked.
func Reconcile(ctx context.Context, o engine.CompareOptions, st *state.Store, peer string, policy config.Stranded) (ReconcileResult, error) {
	out := ReconcileResult{Peer: peer}
	o.Store, o.Peers = st, []string{peer}
	cr := engine.Compare(ctx, o)
	if len(cr.Errors) > 0 {
		return out, fmt.Errorf("compare with %s: %w", peer, errors.Join(cr.Errors...))
	}
	b := st.NewBatch()
	defer b.Cancel()
	now := time.Now().UnixNano()
	empty, err := peerHoldsNothing(st, o.View.Roots(), cr.Diffs)
	if err != nil {
		return out, err
	}
	for _, d := range cr.Diffs {
		base, hasBase, err := st.GetBase(peer, d.Path)
		if err != nil {
			return out, err
		}
		var bp *state.FileRecord
		if hasBase {
			bp = &base
		}
		verdict := Sort(d.Local, d.Remote, bp, o.Ignore)
		if empty && d.Local != nil && d.Remote == nil {
			// The peer holds none of our entries: an empty or replaced
			// disk, not deletions (as a root found empty never becomes
			// deletions, DESIGN §6). Everything goes to it as new.
			b.DeleteBase(peer, d.Path)
			verdict = VerdictPush
		}
		switch verdict {
		case VerdictStranded:
			out.Stranded = append(out.Stranded, d.Path)
			s := state.Stranded{Path: d.Path, Peer: peer, RemoteExists: d.Remote != nil, DetectedNs: now}
			if d.Remote != nil {
				s.Remote = *d.Remote
			}
			if err := st.PutStranded(s); err != nil {
				return out, err
			}
			if policy == config.StrandedDiscard {
				b.MarkDirty(peer, d.Path, state.DirtyRecord{Forced: true, MarkedNs: now})
			}
		case VerdictPush:
			out.Push = append(out.Push, d.Path)
			if bp == nil && d.Local != nil && d.Remote != nil && d.Local.SameContent(d.Remote) {
				b.PutBase(peer, d.Path, d.Remote) // agreed content: only metadata travels
			}
			b.MarkDirty(peer, d.Path, state.DirtyRecord{MarkedNs: now})
		default:
			out.Conflicts = append(out.Conflicts, d.Path)
			if err := st.PutConflict(conflictOf(d, now, "changed on both sides around a failover")); err != nil {
				return out, err
			}
		}
	}
	if err := b.CommitDurable(); err != nil {
		return out, fmt.Errorf("record reconciliation with %s: %w", peer, err)
	}
	return out, nil
}

// peerHoldsNothing reports whether the compared peer lacks every entry
// this node tracks below its include roots (the roots themselves aside),
// with at least one such entry: its tree is empty.
func peerHoldsNothing(st *state.Store, roots []string, diffs []engine.Difference) (bool, error) {
	isRoot := map[string]bool{}
	for _, r := range roots {
		isRoot[r] = true
	}
	missing := 0
	for _, d := range diffs {
		switch {
		case isRoot[d.Path]:
		case d.Remote != nil:
			return false, nil
		case d.Local != nil:
			missing++
		}
	}
	tracked := 0
	for _, r := range roots {
		err := st.WalkFiles(r, func(p string, rec *state.FileRecord) error {
			if !isRoot[p] && rec.Kind != state.KindNone {
				tracked++
			}
			return nil
		})
		if err != nil {
			return false, err
		}
	}
	return tracked > 0 && missing == tracked, nil
}

// conflictOf is the conflict record of a difference found by comparing.
func conflictOf(d engine.Difference, now int64, reason string) state.Conflict {
	c := state.Conflict{Path: d.Path, Peer: d.Peer, Group: d.Group, RemoteExists: d.Remote != nil, DetectedNs: now, Reason: reason}
	if d.Local != nil {
		c.Local = *d.Local
	}
	if d.Remote != nil {
		c.Remote = *d.Remote
	}
	return c
}

// GuardOptions drive ReconcileGuarded.
type GuardOptions struct {
	Compare engine.CompareOptions // View, Connect, Ignore, Log
	Store   *state.Store
	Policy  config.Stranded
	TempDir string // the config's tempdir, for stranded pull
	// Notify reports an event (EventStranded, EventConflict) about peer.
	Notify func(event, peer, detail string)
}

// ReconcileGuarded reconciles every blocked peer it can reach and lifts the
// guard for it once each difference is sorted (DESIGN §7). A peer that
// cannot be compared stays blocked. It returns the peers it unblocked.
func ReconcileGuarded(ctx context.Context, o GuardOptions) []string {
	log := o.Compare.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	notify := o.Notify
	if notify == nil {
		notify = func(string, string, string) {}
	}
	guard, err := BlockedPeers(o.Store)
	if err != nil {
		log.Error("failover guard", "err", err)
		return nil
	}
	var lifted []string
	for peer := range guard {
		r, err := Reconcile(ctx, o.Compare, o.Store, peer, o.Policy)
		if err != nil {
			log.Warn("failover guard: cannot reconcile yet; pushes stay blocked", "peer", peer, "err", err)
			continue
		}
		log.Info("failover guard: reconciled", "peer", peer, "push", len(r.Push), "stranded", len(r.Stranded), "conflicts", len(r.Conflicts))
		if o.Policy == config.StrandedPull {
			co := o.Compare
			co.Store = o.Store
			for _, p := range r.Stranded {
				if err := engine.TakeRemote(ctx, co, o.TempDir, peer, p); err != nil {
					log.Warn("stranded pull failed; the change stays recorded", "peer", peer, "path", p, "err", err)
					continue
				}
				_ = o.Store.DeleteStranded(peer, p)
			}
		}
		if len(r.Stranded) > 0 {
			notify(EventStranded, peer, fmt.Sprintf("%d stranded change(s), first: %s", len(r.Stranded), r.Stranded[0]))
		}
		if len(r.Conflicts) > 0 {
			notify(EventConflict, peer, fmt.Sprintf("%d conflict(s) after failover, first: %s", len(r.Conflicts), r.Conflicts[0]))
		}
		if err := o.Store.DeleteBlocked(peer); err != nil {
			log.Error("lift the failover guard", "peer", peer, "err", err)
			continue
		}
		lifted = append(lifted, peer)
	}
	return lifted
}

// SettleConflicts drops every recorded conflict whose two sides agree
// again, whoever made them agree (a push, force, resolve, or an admin
// copying the file by hand): it compares each conflicted path with its
// peer, and where both hold the same content it records that as agreed and
// marks the path dirty, so that the next push (metadata only) settles the
// peer's record too. A peer that cannot be compared keeps its conflicts.
// It returns the paths it settled.
func SettleConflicts(ctx context.Context, o engine.CompareOptions, st *state.Store) ([]string, error) {
	byPeer := map[string][]string{}
	err := st.Conflicts(func(c state.Conflict) error {
		byPeer[c.Peer] = append(byPeer[c.Peer], c.Path)
		return nil
	})
	if err != nil {
		return nil, err
	}
	var settled []string
	now := time.Now().UnixNano()
	for peer, paths := range byPeer {
		co := o
		co.Store, co.Peers, co.Paths = st, []string{peer}, paths
		cr := engine.Compare(ctx, co)
		if len(cr.Errors) > 0 {
			continue
		}
		differ := map[string]*engine.Difference{}
		for i, d := range cr.Diffs {
			differ[d.Path] = &cr.Diffs[i]
		}
		b := st.NewBatch()
		var done []string
		for _, p := range paths {
			d, ok := differ[p]
			var agreed *state.FileRecord
			switch {
			case !ok:
				// Equal, or absent on both sides.
				rec, exists, err := st.GetFile(p)
				if err != nil {
					b.Cancel()
					return settled, err
				}
				if exists {
					agreed = &rec
				}
			case d.Local != nil && d.Remote != nil && d.Local.SameContent(d.Remote):
				agreed = d.Remote
			default:
				continue
			}
			if agreed != nil {
				b.PutBase(peer, p, agreed)
			} else {
				b.DeleteBase(peer, p)
			}
			b.MarkDirty(peer, p, state.DirtyRecord{MarkedNs: now})
			done = append(done, p)
		}
		if err := b.CommitDurable(); err != nil {
			return settled, err
		}
		for _, p := range done {
			if err := st.DeleteConflict(p, peer); err != nil {
				return settled, err
			}
			settled = append(settled, p)
		}
	}
	return settled, nil
}
