package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"ocf-csync/syncer/state"
)

// MarkUnsynced brings peers up to date with what they lack without it
// being dirty: a node added to a group later, or one that missed files,
// has no base (or one with other content) for entries the others agreed
// on, and the scan only marks what changes. For each of peers (nil: every
// peer) with such entries it compares both trees once: an entry the peer
// already holds with the same content gets the peer's copy as its base
// (nothing to send but metadata); the rest is marked dirty and goes with
// the next push. o.Store must be set. It returns how many entries it
// marked dirty per peer; a peer that cannot be compared gets all of its
// entries marked (the push then reports why it failed).
func MarkUnsynced(ctx context.Context, o CompareOptions, peers []string) (map[string]int, error) {
	st, view := o.Store, o.View
	if peers == nil {
		peers = AllPeers(view)
	}
	lacking := map[string]map[string]state.FileRecord{}
	dirty := map[string]map[string]bool{}
	for _, p := range peers {
		d := map[string]bool{}
		if err := st.Dirty(p, func(path string, _ state.DirtyRecord) error { d[path] = true; return nil }); err != nil {
			return nil, fmt.Errorf("read the dirty set of %s: %w", p, err)
		}
		dirty[p] = d
	}
	for _, root := range view.Roots() {
		err := st.WalkFiles(root, func(path string, rec *state.FileRecord) error {
			for _, peer := range peers {
				g := groupFor(view, path, peer)
				if g == nil || g.IsSlave(view.Name) || dirty[peer][path] {
					continue
				}
				base, ok, err := st.GetBase(peer, path)
				if err != nil {
					return err
				}
				if ok && base.SameContent(rec) {
					continue
				}
				if lacking[peer] == nil {
					lacking[peer] = map[string]state.FileRecord{}
				}
				lacking[peer][path] = *rec
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("find what the peers lack under %s: %w", root, err)
		}
	}
	marked := map[string]int{}
	now := time.Now().UnixNano()
	for peer, paths := range lacking {
		// What the peer holds with the same content needs no transfer.
		co := o
		co.Peers, co.Paths = []string{peer}, nil
		cr := Compare(ctx, co)
		differs := map[string]*state.FileRecord{}
		for _, d := range cr.Diffs {
			differs[d.Path] = d.Remote
		}
		compared := len(cr.Errors) == 0
		conflicted := map[string]bool{}
		_ = st.Conflicts(func(c state.Conflict) error {
			if c.Peer == peer {
				conflicted[c.Path] = true
			}
			return nil
		})
		b := st.NewBatch()
		for path, rec := range paths {
			remote, diff := differs[path]
			switch {
			case compared && !diff:
				// Identical on both sides: agreed, and a conflict about
				// it is settled, whoever settled it. The push then tells
				// the peer (it holds the conflict too), metadata only.
				b.PutBase(peer, path, &rec)
				if !conflicted[path] {
					continue
				}
				_ = st.DeleteConflict(path, peer)
			case compared && remote != nil && remote.SameContent(&rec):
				// Same content, other metadata: agreed on the content;
				// the push aligns the metadata.
				b.PutBase(peer, path, remote)
			}
			b.MarkDirty(peer, path, state.DirtyRecord{MarkedNs: now})
			marked[peer]++
		}
		if err := b.CommitDurable(); err != nil {
			return marked, fmt.Errorf("record what %s lacks: %w", peer, err)
		}
		if !compared && o.Log != nil {
			o.Log.Warn("cannot compare with a peer that lacks entries; marking them all", "peer", peer, "err", errors.Join(cr.Errors...))
		}
	}
	return marked, nil
}
