package scan

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"ocf-csync/syncer/state"
)

// RootStore is the part of the state store that remembers the file system
// of each include root and of each mount point found below one.
type RootStore interface {
	RootRecords(fn func(state.RootRecord) error) error
	PutRoot(r state.RootRecord) error
	DeleteRoot(path string) error
	// CountBelow counts the records strictly below dir, up to limit (> 0).
	CountBelow(dir string, limit int) (int, error)
	GetFile(path string) (state.FileRecord, bool, error)
}

// entriesRefresh is how often the entry count of a healthy root record is
// brought up to date (counting a million records takes a fraction of a
// second, so not on every scan).
const entriesRefresh = time.Hour

// Overrides named in refusals.
const (
	OverrideMassDelete = "ocf-csync sync --allow-mass-delete"
	overrideAcceptRoot = "ocf-csync accept-root %s"
)

// AcceptRootCommand is the command that accepts a changed file system at path.
func AcceptRootCommand(path string) string { return fmt.Sprintf(overrideAcceptRoot, path) }

// rootGuard keeps a vanished, emptied or replaced include root (or mount
// point below one) from being read as "everything there was deleted":
// before anything below such a path is compared, it checks that the path
// is still on the file system the records were made on. A refused path is
// not walked at all, so nothing below it is marked deleted.
type rootGuard struct {
	st    RootStore
	allow bool // --allow-mass-delete: a missing or empty root is a deletion
	now   func() time.Time
	log   func(msg string, args ...any)

	recs map[string]state.RootRecord // as loaded; never written, so read without a lock

	mu       sync.Mutex
	verdicts map[string]*state.Refusal // paths checked in this scan; nil = fine
	refused  []state.Refusal
}

func newRootGuard(st RootStore, allow bool, now func() time.Time, log func(string, ...any)) (*rootGuard, error) {
	g := &rootGuard{st: st, allow: allow, now: now, log: log,
		recs: map[string]state.RootRecord{}, verdicts: map[string]*state.Refusal{}}
	err := st.RootRecords(func(r state.RootRecord) error {
		g.recs[r.Path] = r
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read include root records: %w", err)
	}
	return g, nil
}

// tracked counts the entries recorded below path (and path itself when it
// is a tracked non-directory, e.g. an include of one file), up to limit.
func (g *rootGuard) tracked(path string, limit int) (int, error) {
	n, err := g.st.CountBelow(path, limit)
	if err != nil {
		return 0, err
	}
	if rec, ok, err := g.st.GetFile(path); err != nil {
		return 0, err
	} else if ok && rec.Kind != state.KindDir {
		n++
	}
	return n, nil
}

func (g *rootGuard) refuse(r state.Refusal) *state.Refusal {
	if n, err := g.tracked(r.Path, 0); err == nil {
		r.Count = n
	}
	g.refused = append(g.refused, r)
	g.log("include root refused", "path", r.Path, "kind", r.Kind, "reason", r.Reason)
	return &g.refused[len(g.refused)-1]
}

// root checks an include root once per scan; nil means walk it.
func (g *rootGuard) root(path string) (*state.Refusal, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if v, ok := g.verdicts[path]; ok {
		return v, nil
	}
	v, err := g.checkRoot(path)
	if err != nil {
		return nil, err
	}
	g.verdicts[path] = v
	return v, nil
}

func (g *rootGuard) checkRoot(path string) (*state.Refusal, error) {
	rec, known := g.recs[path]
	id, ierr := Identify(path)
	if ierr != nil {
		n, err := g.tracked(path, 1)
		if err != nil || n == 0 {
			return nil, err // nothing to protect: the walk reports the error
		}
		if errors.Is(ierr, unix.ENOENT) || errors.Is(ierr, unix.ENOTDIR) {
			if g.allow {
				return nil, nil
			}
			why := "the include root is gone but entries are tracked below it (a data disk that did not mount?); nothing below it is deleted on the peers"
			if f, ok, _ := g.st.GetFile(path); ok && f.Kind != state.KindDir {
				// An include of one file: "below it" would puzzle.
				why = "the included file is gone (deleted, or the disk holding it did not mount?); its deletion is not pushed to the peers"
			}
			return g.refuse(state.Refusal{Kind: state.RefusedRootMissing, Path: path, Override: OverrideMassDelete, Reason: why}), nil
		}
		return g.refuse(state.Refusal{Kind: state.RefusedRootUnreadable, Path: path,
			Reason: fmt.Sprintf("the include root cannot be examined (%v); its tracked entries are kept and nothing below it is pushed", ierr)}), nil
	}
	n, err := g.tracked(path, 1)
	if err != nil {
		return nil, err
	}
	if known && !rec.ID.Same(id) && n > 0 {
		return g.refuse(state.Refusal{Kind: state.RefusedRootOtherFS, Path: path, Override: AcceptRootCommand(path),
			Reason: fmt.Sprintf("the include root is on another file system now: %s (it was %s); its tracked entries are kept and nothing below it is pushed", id, rec.ID)}), nil
	}
	if n > 0 && !g.allow {
		empty, err := emptyDir(path)
		if err != nil {
			return nil, err
		}
		if empty {
			return g.refuse(state.Refusal{Kind: state.RefusedRootEmpty, Path: path, Override: OverrideMassDelete,
				Reason: "the include root is empty but entries are tracked below it (an unmounted mount point?); nothing below it is deleted on the peers"}), nil
		}
	}
	if !known || !rec.ID.Same(id) || g.now().Sub(time.Unix(0, rec.UpdatedNs)) > entriesRefresh {
		if err := g.record(path, id, false); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

func (g *rootGuard) record(path string, id state.FSIdentity, mount bool) error {
	n, err := g.tracked(path, 0)
	if err != nil {
		return err
	}
	r := state.RootRecord{Path: path, ID: id, Entries: n, Mount: mount, UpdatedNs: g.now().UnixNano()}
	if err := g.st.PutRoot(r); err != nil {
		return fmt.Errorf("record the file system of %q: %w", path, err)
	}
	return nil
}

// emptyDir reports whether a directory holds nothing but receiver temp files.
func emptyDir(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.IsDir() {
		return false, err
	}
	for {
		names, err := f.Readdirnames(64)
		for _, n := range names {
			if !IsTempName(n) {
				return false, nil
			}
		}
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// mount checks a directory met by the walk: whether a file system was
// mounted over it, or the one recorded there went away. dev is its device
// now, parentDev that of the directory holding it, old its record. The
// common case (no record, same device as its parent) costs a map lookup.
func (g *rootGuard) mount(path string, dev, parentDev uint64, old *state.FileRecord) (*state.Refusal, error) {
	rec, known := g.recs[path]
	if !known && dev == parentDev {
		return nil, nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if v, ok := g.verdicts[path]; ok {
		return v, nil
	}
	v, err := g.checkMount(path, rec, known, old)
	if err != nil {
		return nil, err
	}
	g.verdicts[path] = v
	return v, nil
}

func (g *rootGuard) checkMount(path string, rec state.RootRecord, known bool, old *state.FileRecord) (*state.Refusal, error) {
	id, ierr := Identify(path)
	mountNow := ierr == nil && id.MountPoint == path
	if ierr != nil {
		if errors.Is(ierr, unix.ENOENT) || errors.Is(ierr, unix.ENOTDIR) {
			return nil, nil // gone since the lstat: the next scan sees it
		}
		n, err := g.tracked(path, 1)
		if err != nil || n == 0 {
			return nil, err
		}
		return g.refuse(state.Refusal{Kind: state.RefusedRootUnreadable, Path: path,
			Reason: fmt.Sprintf("a mount point below an include root cannot be examined (%v); its tracked entries are kept", ierr)}), nil
	}
	if known && rec.ID.Same(id) {
		return nil, nil
	}
	n, err := g.tracked(path, 1)
	if err != nil {
		return nil, err
	}
	switch {
	case known && n > 0:
		what := "another file system is mounted there now: " + id.String()
		if !mountNow {
			what = "the file system mounted there is gone (the directory is on " + id.String() + " now)"
		}
		return g.refuse(state.Refusal{Kind: state.RefusedMountChanged, Path: path, Override: AcceptRootCommand(path),
			Reason: fmt.Sprintf("a tracked directory changed file system: %s; it was %s; its tracked entries are kept and nothing below it is pushed", what, rec.ID)}), nil
	case !known && old != nil && old.Kind == state.KindDir && old.Dev != id.Dev && n > 0:
		return g.refuse(state.Refusal{Kind: state.RefusedMountChanged, Path: path, Override: AcceptRootCommand(path),
			Reason: fmt.Sprintf("a file system was mounted over a tracked directory: %s; its tracked entries are kept and nothing below it is pushed", id)}), nil
	case !mountNow:
		// The mount went away and nothing was tracked below it.
		if err := g.st.DeleteRoot(path); err != nil {
			return nil, fmt.Errorf("forget mount point %q: %w", path, err)
		}
		return nil, nil
	}
	return nil, g.record(path, id, true)
}

// checkAll checks every include root and every recorded mount point below
// one, whatever part of the tree this scan looks at: a scan of a few
// paths (a watch hint) reports the same refusals as a full one.
func (g *rootGuard) checkAll(roots []string) error {
	for _, r := range roots {
		if _, err := g.root(r); err != nil {
			return err
		}
	}
	var mounts []string
	for m, r := range g.recs {
		if r.Mount {
			mounts = append(mounts, m)
		}
	}
	sort.Strings(mounts) // outermost first
	for _, m := range mounts {
		if g.covers(m) {
			continue
		}
		g.mu.Lock()
		v, err := g.checkMount(m, g.recs[m], true, nil)
		if err == nil {
			g.verdicts[m] = v
		}
		g.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// covers reports whether p lies at or below a refused path: the sweep must
// leave its records alone.
func (g *rootGuard) covers(p string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, r := range g.refused {
		if p == r.Path || isBelow(p, r.Path) {
			return true
		}
	}
	return false
}

func (g *rootGuard) refusals() []state.Refusal {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]state.Refusal(nil), g.refused...)
}
