// Package engine turns dirty state into per-peer work and moves it: the
// sender (Push) streams operations to `ocf-csync serve` on each peer, and the
// receiver (Serve) applies them with three-way conflict checks.
package engine

import (
	"fmt"
	"log/slog"
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
	resend  bool // the peer asked for it again: hash what is sent
}

// plan is the ordered work for one peer (DESIGN §6 "Push").
type plan struct {
	peer    string
	deletes []*item // deepest first
	creates int     // entries that exist here, streamed by eachCreate
	bytes   int64   // size of the regular files among them
	dirs    []*item // directory metadata, sent last so mtimes survive
	st      *state.Store
	view    *config.NodeView
	filter  planFilter
	// groupNames are the groups the plan touches (their keys are needed).
	groupNames []*config.GroupView
	stale      []string
	skipped    []string // paths this node may not push (it is a slave there)
	// Per group: deletions and creations planned, and entries held back
	// because a refusal stopped their group (they stay dirty).
	deletesBy, createsBy map[string]int
	fileDeletes          map[string]int // deletions of non-directories: what max-delete counts
	held                 int
}

func (p *plan) len() int { return len(p.deletes) + p.creates }

// groupFor picks the first group of this node that syncs path to peer.
func groupFor(view *config.NodeView, path, peer string) *config.GroupView {
	for _, g := range view.GroupsFor(path) {
		if peer == g.Self.Name {
			continue
		}
		// Not g.Peers(): it allocates, and this runs per entry and peer.
		for i := range g.Hosts {
			if g.Hosts[i].Name == peer {
				return g
			}
		}
	}
	return nil
}

// planFilter selects which dirty entries a run handles.
type planFilter struct {
	peer      string
	groups    map[string]bool
	paths     []string
	recursive bool
	skip      map[string]bool // groups refused this cycle
}

// eachDirty reads the dirty set of the filter's peer in path order and
// hands every selected entry to fn as an item; entries that belong to no
// shared group any more, or that this node may not push, go to stale and
// skipped instead.
func eachDirty(st *state.Store, view *config.NodeView, f planFilter, stale, skipped func(string), fn func(*item) error) error {
	return st.DirtyEntries(f.peer, func(e *state.DirtyEntry) error {
		path := e.Path
		if !pathSelected(path, f.paths, f.recursive) {
			return nil
		}
		g := groupFor(view, path, f.peer)
		if g == nil {
			// Not in any group shared with peer any more (config changed).
			stale(path)
			return nil
		}
		if (f.groups != nil && !f.groups[g.Name]) || f.skip[g.Name] {
			return nil
		}
		if g.IsSlave(view.Name) {
			skipped(path)
			return nil
		}
		it := &item{path: path, forced: e.Dirty.Forced, group: g,
			cur: e.File, exists: e.Exists, base: e.Base, hasBase: e.HasBase}
		it.wire, _ = g.WireName(path)
		if it.hasBase && it.base.Kind == state.KindNone {
			it.hasBase = false
		}
		return fn(it)
	})
}

// buildPlan reads the dirty set of a peer. It keeps only deletions and
// directories in memory: creations and updates are streamed from the
// dirty set again when they are sent (plan.eachCreate), so a run over
// 100k files does not hold 100k items.
func buildPlan(st *state.Store, view *config.NodeView, peer string, groups map[string]bool, paths []string, recursive bool) (*plan, error) {
	p := &plan{peer: peer, st: st, view: view, filter: planFilter{peer: peer, groups: groups, paths: paths, recursive: recursive},
		deletesBy: map[string]int{}, createsBy: map[string]int{}, fileDeletes: map[string]int{}}
	err := eachDirty(st, view, p.filter,
		func(path string) { p.stale = append(p.stale, path) },
		func(path string) { p.skipped = append(p.skipped, path) },
		func(it *item) error {
			switch {
			case !it.exists:
				p.deletes = append(p.deletes, it)
				if !it.hasBase || it.base.Kind != state.KindDir {
					p.fileDeletes[it.group.Name]++
				}
				p.deletesBy[it.group.Name]++
			default:
				p.creates++
				p.createsBy[it.group.Name]++
				if it.cur.Kind == state.KindReg {
					p.bytes += it.cur.Size
				}
				if it.cur.Kind == state.KindDir {
					p.dirs = append(p.dirs, it)
				}
				p.groupNames = appendUnique(p.groupNames, it.group)
			}
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("read dirty set for peer %s: %w", peer, err)
	}
	// Dirty iterates in path-byte order, where a parent sorts before its
	// children; reversing it gives deepest-first deletions.
	sort.SliceStable(p.deletes, func(i, j int) bool { return p.deletes[i].path > p.deletes[j].path })
	for _, it := range p.deletes {
		p.groupNames = appendUnique(p.groupNames, it.group)
	}
	return p, nil
}

// settle drops the plan's dirty entries that belong to no shared group any
// more, reports what this node may not push, and fills res.Planned,
// res.Skipped and res.Held.
func (p *plan) settle(o *Options, log *slog.Logger, res *PeerResult) error {
	res.Held = p.held
	if len(p.stale) > 0 && !o.DryRun {
		b := o.Store.NewBatch()
		for _, path := range p.stale {
			b.ClearDirty(p.peer, path)
		}
		if err := b.Commit(); err != nil {
			res.Err = err
			return err
		}
	}
	for _, path := range p.skipped {
		log.Info("not pushing: this node is a slave in the group", "path", path)
	}
	res.Skipped, res.SkippedPaths = len(p.skipped), p.skipped
	res.Planned = p.len()
	return nil
}

func appendUnique(gs []*config.GroupView, g *config.GroupView) []*config.GroupView {
	for _, x := range gs {
		if x == g {
			return gs
		}
	}
	return append(gs, g)
}

// eachCreate streams the entries that exist locally, parents first.
func (p *plan) eachCreate(fn func(*item) error) error {
	return eachDirty(p.st, p.view, p.filter, func(string) {}, func(string) {}, func(it *item) error {
		if !it.exists {
			return nil
		}
		return fn(it)
	})
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
