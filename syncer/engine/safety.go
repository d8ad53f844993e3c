package engine

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"ocf-csync/syncer/config"
	"ocf-csync/syncer/scan"
	"ocf-csync/syncer/state"
)

// MassDeleteWindow: deletions of a group pushed to a peer this recently
// count toward the next cycle's threshold, so an `rm -rf` that the watcher
// sees as several small batches is still one mass deletion.
const MassDeleteWindow = 5 * time.Minute

// RefusedError is the error of a cycle that held something back; the CLI
// prints one line per refusal and exits 1.
type RefusedError struct{ Refusals []state.Refusal }

func (e *RefusedError) Error() string {
	lines := make([]string, len(e.Refusals))
	for i, r := range e.Refusals {
		lines[i] = r.String()
	}
	return strings.Join(lines, "\n")
}

// ErrRefused matches every *RefusedError with errors.Is.
var ErrRefused = errors.New("sync refused")

func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// peerRootMarker starts the message of an ack refused because the
// receiver's include root changed file system; the sender recognises it
// (both sides are this program) and holds back the rest of the group.
const peerRootMarker = "include root refused: "

// peerRootMessage is what the receiver sends back for such an op.
func peerRootMessage(root, why string) string {
	return fmt.Sprintf("%s%s: %s", peerRootMarker, strconv.Quote(root), why)
}

// parsePeerRoot undoes peerRootMessage.
func parsePeerRoot(msg string) (root, rest string, ok bool) {
	s, found := strings.CutPrefix(msg, peerRootMarker)
	if !found {
		return "", "", false
	}
	q, err := strconv.QuotedPrefix(s)
	if err != nil {
		return "", "", false
	}
	root, _ = strconv.Unquote(q)
	return root, strings.TrimPrefix(s[len(q):], ": "), true
}

// overlaps reports whether path and one of the group's roots contain one another.
func overlaps(g *config.GroupView, path string) bool {
	for _, r := range g.Roots() {
		if r == path || isUnder(path, r) || isUnder(r, path) {
			return true
		}
	}
	return false
}

func isUnder(p, dir string) bool {
	if dir == "/" {
		return p != "/" && strings.HasPrefix(p, "/")
	}
	return len(p) > len(dir) && p[len(dir)] == '/' && strings.HasPrefix(p, dir)
}

// safety is one Push's view of what is held back: groups refused for the
// whole cycle, and why.
type safety struct {
	o        *Options
	refusals []state.Refusal
	skip     map[string]bool // groups that push nothing this cycle
}

// rootRefusals assigns the scan's refusals to the groups they stop. When
// this cycle did not scan (update), the root refusals recorded by the last
// cycle that did still hold.
func (sf *safety) rootRefusals() error {
	rs := sf.o.Refusals
	if !sf.o.Scanned {
		old, err := sf.o.Store.Refusals()
		if err != nil {
			return fmt.Errorf("read recorded refusals: %w", err)
		}
		for _, r := range old {
			if r.Kind != state.RefusedMassDelete && r.Kind != state.RefusedPeerRoot {
				rs = append(rs, r)
			}
		}
	}
	for _, r := range rs {
		r.Groups = nil
		for _, g := range sf.o.View.Groups {
			if overlaps(g, r.Path) {
				r.Groups = append(r.Groups, g.Name)
				sf.skip[g.Name] = true
			}
		}
		sf.refusals = append(sf.refusals, r)
	}
	return nil
}

// groupDeletes counts the pending deletions of files (not directories) of
// each group for peer: from the plan, or, when the run is limited to some
// paths (a watch hint), from the whole dirty set, so that a small cycle
// does not slip past a refusal.
func (sf *safety) groupDeletes(p *plan) (map[string]int, error) {
	if len(p.filter.paths) == 0 {
		return p.fileDeletes, nil
	}
	all := map[string]int{}
	err := sf.o.Store.Dirty(p.peer, func(path string, _ state.DirtyRecord) error {
		if _, ok, err := sf.o.Store.GetFile(path); err != nil || ok {
			return err
		}
		g := groupFor(sf.o.View, path, p.peer)
		if g == nil || (p.filter.groups != nil && !p.filter.groups[g.Name]) {
			return nil
		}
		if base, ok, err := sf.o.Store.GetBase(p.peer, path); err != nil {
			return err
		} else if !ok || base.Kind != state.KindDir {
			all[g.Name]++
		}
		return nil
	})
	return all, err
}

// massDelete refuses the groups whose pending deletions exceed the safety
// block, unless the run allows it (sync --allow-mass-delete).
func (sf *safety) massDelete(plans []*plan, now time.Time) error {
	if sf.o.AllowMassDelete {
		return nil
	}
	type tally struct{ pending, recent int }
	worst := map[string]tally{}
	for _, p := range plans {
		dels, err := sf.groupDeletes(p)
		if err != nil {
			return fmt.Errorf("count pending deletions for %s: %w", p.peer, err)
		}
		for g, n := range dels {
			if sf.skip[g] || n == 0 {
				continue
			}
			recent, err := sf.o.Store.RecentDeletes(p.peer, g, now.Add(-MassDeleteWindow))
			if err != nil {
				return err
			}
			if t := worst[g]; n+recent > t.pending+t.recent {
				worst[g] = tally{n, recent}
			}
		}
	}
	for _, g := range sf.o.View.Groups {
		t, ok := worst[g.Name]
		if !ok {
			continue
		}
		lim := sf.o.View.Config.SafetyFor(g.Name)
		del := t.pending + t.recent
		var why string
		if lim.MaxDeleteCount > 0 && del > lim.MaxDeleteCount {
			why = fmt.Sprintf("more than max-delete-count %d", lim.MaxDeleteCount)
		} else if pct := lim.MaxDeletePercent; pct > 0 && pct < 100 {
			// Refused when del > pct% of everything tracked before the
			// deletions, i.e. when fewer than del*(100-pct)/pct remain.
			need := (del*(100-pct) + pct - 1) / pct
			kept, err := trackedInGroup(sf.o.Store, g, need)
			if err != nil {
				return fmt.Errorf("count the tracked entries of group %s: %w", g.Name, err)
			}
			if kept < need {
				why = fmt.Sprintf("%d%% of the group's %d files, more than max-delete %d%%",
					(100*del+(kept+del)/2)/(kept+del), kept+del, pct)
			}
		}
		if why == "" {
			continue
		}
		what := fmt.Sprintf("%d files deleted in one cycle", t.pending)
		if t.recent > 0 {
			what = fmt.Sprintf("%d files deleted (%d now, %d pushed in the last %s)", del, t.pending, t.recent, MassDeleteWindow)
		}
		sf.skip[g.Name] = true
		sf.refusals = append(sf.refusals, state.Refusal{
			Kind: state.RefusedMassDelete, Path: strings.Join(g.Roots(), " "), Groups: []string{g.Name},
			Count: del, Override: scan.OverrideMassDelete,
			Reason: fmt.Sprintf("%s: %s; nothing was deleted on the peers and the group's other changes wait too", what, why),
		})
	}
	return nil
}

var errEnough = errors.New("counted enough")

// trackedInGroup counts the files (not directories) the group tracks,
// stopping at limit.
func trackedInGroup(st *state.Store, g *config.GroupView, limit int) (int, error) {
	n := 0
	for _, r := range g.Roots() {
		err := st.WalkFiles(r, func(p string, rec *state.FileRecord) error {
			if rec.Kind == state.KindDir {
				return nil
			}
			if synced, _ := g.Match(p, false); synced {
				if n++; n >= limit {
					return errEnough
				}
			}
			return nil
		})
		if errors.Is(err, errEnough) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// exclude drops the refused groups from a plan: their entries stay dirty.
func (sf *safety) exclude(p *plan) {
	if len(sf.skip) == 0 {
		return
	}
	keep := func(it *item) bool { return !sf.skip[it.group.Name] }
	p.deletes = slices.DeleteFunc(p.deletes, func(it *item) bool { return !keep(it) })
	p.dirs = slices.DeleteFunc(p.dirs, func(it *item) bool { return !keep(it) })
	p.groupNames = slices.DeleteFunc(p.groupNames, func(g *config.GroupView) bool { return sf.skip[g.Name] })
	if p.filter.skip == nil {
		p.filter.skip = map[string]bool{}
	}
	for g := range sf.skip {
		p.filter.skip[g] = true
		p.creates -= p.createsBy[g]
		p.held += p.createsBy[g] + p.deletesBy[g]
	}
}

// peerRefusals turns the receivers' refusals into refusals of this cycle.
// One recorded by an earlier cycle stays while this one sent nothing of
// its groups to that peer (no news is not good news).
func (sf *safety) peerRefusals(res []PeerResult) error {
	seen := map[string]bool{}
	for _, p := range res {
		for _, r := range p.rootRefusals {
			sf.refusals = append(sf.refusals, r)
			seen[r.Key()] = true
		}
	}
	old, err := sf.o.Store.Refusals()
	if err != nil {
		return fmt.Errorf("read recorded refusals: %w", err)
	}
	for _, r := range old {
		if r.Kind != state.RefusedPeerRoot || seen[r.Key()] {
			continue
		}
		i := slices.IndexFunc(res, func(p PeerResult) bool { return p.Peer == r.Peer })
		if i >= 0 && slices.ContainsFunc(r.Groups, func(g string) bool { return res[i].okGroups[g] }) {
			continue // the peer took changes of the group again
		}
		sf.refusals = append(sf.refusals, r)
	}
	return nil
}

// record stores this cycle's refusals and returns the new ones; it also
// updates the per-peer deletion ledger.
func (sf *safety) record(res []PeerResult, now time.Time) ([]state.Refusal, error) {
	if sf.o.DryRun {
		return nil, nil
	}
	for _, p := range res {
		for g, n := range p.deletedBy {
			if sf.o.AllowMassDelete {
				n = -1 // the admin allowed it: it counts toward nothing
			}
			if err := sf.o.Store.AddDeletes(p.Peer, g, n, now, MassDeleteWindow); err != nil {
				return nil, fmt.Errorf("record pushed deletions: %w", err)
			}
		}
	}
	return sf.o.Store.SetRefusals(sf.refusals, now)
}

// rootVerdict is the receiver's judgement of one include root, made once
// per session before the first write below it.
type rootVerdict struct {
	refusal string // the ack message; "" = may write
	record  bool   // nothing recorded yet: record the file system after the session
}

// rootOf returns the group's include root that holds local ("" if none).
func rootOf(g *config.GroupView, local string) string {
	best := ""
	for _, r := range g.Roots() {
		if (local == r || isUnder(local, r)) && len(r) > len(best) {
			best = r
		}
	}
	return best
}

// checkRoot refuses writes below an include root whose file system is not
// the one this node last saw there (its data disk is not mounted: nothing
// may fill the root file system through the mount point).
func (r *receiver) checkRoot(g *config.GroupView, local string) string {
	root := rootOf(g, local)
	if root == "" {
		return ""
	}
	if v, ok := r.roots[root]; ok {
		return v.refusal
	}
	v := r.judgeRoot(root)
	r.roots[root] = v
	if v.refusal != "" {
		r.log.Warn("refusing writes below an include root", "root", root, "reason", v.refusal)
	}
	return v.refusal
}

func (r *receiver) judgeRoot(root string) *rootVerdict {
	node := r.o.View.Name
	refuse := func(why string) *rootVerdict {
		return &rootVerdict{refusal: peerRootMessage(root,
			fmt.Sprintf("%s; %s writes nothing there until it is back (or '%s' is run there)", why, node, scan.AcceptRootCommand(root)))}
	}
	rec, known, err := r.o.Store.GetRoot(root)
	if err != nil {
		return refuse(fmt.Sprintf("cannot read what is known about it: %v", err))
	}
	id, ierr := scan.Identify(root)
	switch {
	case ierr != nil && (errors.Is(ierr, unix.ENOENT) || errors.Is(ierr, unix.ENOTDIR)):
		if known {
			return refuse(fmt.Sprintf("the include root is missing here but received before on %s (a data disk that did not mount?)", rec.ID))
		}
		return &rootVerdict{record: true}
	case ierr != nil:
		return refuse(fmt.Sprintf("the include root cannot be examined: %v", ierr))
	case !known:
		return &rootVerdict{record: true}
	case !rec.ID.Same(id):
		return refuse(fmt.Sprintf("the include root is on another file system now: %s (it was %s)", id, rec.ID))
	}
	return &rootVerdict{}
}

// rootDeleted notes that the sender deleted an include root itself: it is
// no longer expected to be there.
func (r *receiver) rootDeleted(local string) {
	if v, ok := r.roots[local]; ok && v.refusal == "" {
		if err := r.o.Store.DeleteRoot(local); err != nil {
			r.log.Warn("forget include root", "root", local, "err", err)
		}
		v.record = true
	}
}

// recordRoots records the file system of roots that received for the first time.
func (r *receiver) recordRoots() {
	if r.dry {
		return
	}
	for root, v := range r.roots {
		if !v.record {
			continue
		}
		id, err := scan.Identify(root)
		if err != nil {
			continue // not created after all
		}
		n, _ := r.o.Store.CountBelow(root, 0)
		if err := r.o.Store.PutRoot(state.RootRecord{Path: root, ID: id, Entries: n, UpdatedNs: time.Now().UnixNano()}); err != nil {
			r.log.Warn("record the file system of an include root", "root", root, "err", err)
		}
	}
}

// AcceptRoot accepts the file system now at path (an include root of this
// node, or a mount point below one) as the right one: the data moved to a
// new disk on purpose. It records the new identity (or forgets the root if
// it is gone) and drops every recorded refusal about path. It returns a
// description of what changed.
func AcceptRoot(view *config.NodeView, st *state.Store, path string) (string, error) {
	inside := false
	for _, r := range view.Roots() {
		if path == r || isUnder(path, r) {
			inside = true
		}
	}
	old, known, err := st.GetRoot(path)
	if err != nil {
		return "", err
	}
	var refs []state.Refusal
	if rs, err := st.Refusals(); err != nil {
		return "", err
	} else {
		refs = rs
	}
	peerRefusal := slices.ContainsFunc(refs, func(r state.Refusal) bool { return r.Path == path })
	if !inside && !known && !peerRefusal {
		return "", fmt.Errorf("%s is not an include root of %s (roots: %s) and no refusal names it", path, view.Name, strings.Join(view.Roots(), " "))
	}
	var msg string
	if inside || known {
		id, ierr := scan.Identify(path)
		switch {
		case ierr != nil && (errors.Is(ierr, unix.ENOENT) || errors.Is(ierr, unix.ENOTDIR)):
			if err := st.DeleteRoot(path); err != nil {
				return "", err
			}
			msg = fmt.Sprintf("%s is gone; forgot its file system", path)
		case ierr != nil:
			return "", fmt.Errorf("examine %s: %w", path, ierr)
		default:
			n, err := st.CountBelow(path, 0)
			if err != nil {
				return "", err
			}
			if err := st.PutRoot(state.RootRecord{Path: path, ID: id, Entries: n, Mount: old.Mount, UpdatedNs: time.Now().UnixNano()}); err != nil {
				return "", err
			}
			msg = fmt.Sprintf("%s: accepted %s", path, id)
			if known && !old.ID.Same(id) {
				msg += fmt.Sprintf(" (was %s)", old.ID)
			}
		}
	}
	keep := slices.DeleteFunc(slices.Clone(refs), func(r state.Refusal) bool { return r.Path == path })
	if len(keep) != len(refs) {
		if _, err := st.SetRefusals(keep, time.Now()); err != nil {
			return "", err
		}
		if msg != "" {
			msg += "; "
		}
		msg += fmt.Sprintf("cleared %d refusal(s)", len(refs)-len(keep))
	}
	return msg, nil
}
