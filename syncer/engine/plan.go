// Package engine turns dirty state into per-peer work and moves it: the
// sender (Push) streams operations to `ocf-csync serve` on each peer, and the
// receiver (Serve) applies them with three-way conflict checks.
package engine

import (
	"fmt"
	"sort"
	"strings"

	"ocf-csync/syncer/config"
	"ocf-csync/syncer/state"
)

// item is one dirty (peer, path) pair with what the sender knows about it.
type item struct {
	path    string // local absolute path
	wire    string // name that travels
	group   *config.GroupView
	cur     state.FileRecord
	exists  bool
	base    state.FileRecord
	hasBase bool
	forced  bool
}

// plan is the ordered work for one peer (DESIGN §6 "Push").
type plan struct {
	peer    string
	deletes []*item // deepest first
	creates []*item // parents before children: dirs, files, links, specials
	dirs    []*item // directory metadata, sent last so mtimes survive
	stale   []string
	skipped []string // paths this node may not push (it is a slave there)
}

func (p *plan) len() int { return len(p.deletes) + len(p.creates) }

// groupFor picks the first group of this node that syncs path to peer.
func groupFor(view *config.NodeView, path, peer string) *config.GroupView {
	for _, g := range view.GroupsFor(path) {
		for _, h := range g.Peers() {
			if h.Name == peer {
				return g
			}
		}
	}
	return nil
}

// buildPlan reads the dirty set of peer. Paths under a filter (if any) are
// included; others stay dirty for a later run.
func buildPlan(st *state.Store, view *config.NodeView, peer string, groups map[string]bool, paths []string, recursive bool) (*plan, error) {
	p := &plan{peer: peer}
	err := st.Dirty(peer, func(path string, d state.DirtyRecord) error {
		if !pathSelected(path, paths, recursive) {
			return nil
		}
		it := &item{path: path, forced: d.Forced}
		g := groupFor(view, path, peer)
		if g == nil {
			// Not in any group shared with peer any more (config changed).
			p.stale = append(p.stale, path)
			return nil
		}
		if groups != nil && !groups[g.Name] {
			return nil
		}
		if g.IsSlave(view.Name) {
			p.skipped = append(p.skipped, path)
			return nil
		}
		it.group = g
		it.wire, _ = g.WireName(path)
		var err error
		it.cur, it.exists, err = st.GetFile(path)
		if err != nil {
			return err
		}
		it.base, it.hasBase, err = st.GetBase(peer, path)
		if err != nil {
			return err
		}
		if it.hasBase && it.base.Kind == state.KindNone {
			it.hasBase = false
		}
		switch {
		case !it.exists:
			p.deletes = append(p.deletes, it)
		default:
			p.creates = append(p.creates, it)
			if it.cur.Kind == state.KindDir {
				p.dirs = append(p.dirs, it)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read dirty set for peer %s: %w", peer, err)
	}
	// Dirty iterates in path-byte order, where a parent sorts before its
	// children; reversing it gives deepest-first deletions.
	sort.SliceStable(p.deletes, func(i, j int) bool { return p.deletes[i].path > p.deletes[j].path })
	return p, nil
}

func pathSelected(path string, filter []string, recursive bool) bool {
	if len(filter) == 0 {
		return true
	}
	for _, f := range filter {
		if path == f || f == "/" {
			return true
		}
		if recursive && strings.HasPrefix(path, strings.TrimSuffix(f, "/")+"/") {
			return true
		}
	}
	return false
}
