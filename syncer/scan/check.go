package scan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"ocf-csync/syncer/state"
)

// Selector tells the scanner what is synced and to whom. It is implemented
// by the configuration.
type Selector interface {
	// Match reports whether path is in the sync set (synced) and, for a
	// directory, whether the walk must enter it (descend).
	Match(path string, isDir bool) (synced, descend bool)
	// Peers lists the peers path syncs to.
	Peers(path string) []string
	// Roots lists the absolute roots to walk.
	Roots() []string
}

// Batch is the part of *state.Batch the scanner writes through.
type Batch interface {
	PutFile(path string, rec *state.FileRecord)
	DeleteFile(path string)
	MarkDirty(peer, path string, d state.DirtyRecord)
	Commit() error
	Cancel()
}

// Store is the part of *state.Store the scanner reads and writes. It is
// generic in the batch type so that *state.Store (whose NewBatch returns
// *state.Batch) satisfies it directly: Check(ctx, st, …) infers B.
type Store[B Batch] interface {
	RootStore
	// ListDir calls fn for the direct children of dir.
	ListDir(dir string, fn func(name string, rec *state.FileRecord) error) error
	// WalkFiles calls fn for root and every record below it.
	WalkFiles(root string, fn func(path string, rec *state.FileRecord) error) error
	NewBatch() B
}

// Options tune a scan.
type Options struct {
	Ignore  state.Ignore // csync2 "ignore uid|gid|mod"
	Workers int          // directories processed in parallel; default 2*GOMAXPROCS
	Init    bool         // record the tree without marking anything dirty (check --init)
	Force   bool         // mark dirty entries as forced (local side wins)
	// AllowMassDelete (sync --allow-mass-delete) reads an include root that
	// is missing or empty, on the file system it was on, as deleted. Without
	// it such a root is refused; a root on another file system always is.
	AllowMassDelete bool
	Logger          *slog.Logger
	Now             func() time.Time
	// Tally, when set, is counted live as the scan goes, so a caller can
	// show progress while Check runs.
	Tally *Tally
	// OnDirty, when set, hears the peers of every path the scan marks
	// dirty, as it marks it (before the commit): a sync opens its sessions
	// to them while the scan goes on. Called from the scan's workers, so
	// it must be quick and safe for concurrent use.
	OnDirty func(peers []string)
}

// Tally is a scan's live count: entries lstat'd, files hashed and their bytes.
type Tally struct {
	Scanned, Hashed, HashedBytes atomic.Int64
}

// Result counts what a scan saw and did.
type Result struct {
	Scanned  int // entries lstat'd
	Hashed   int // regular files read and hashed
	New      int // paths not in the DB before
	Changed  int // paths whose synced state (content, mode, owner, mtime, type) changed
	MetaOnly int // paths re-recorded for stat-only changes (ctime, inode, nlink…), not dirtied
	Deleted  int // records removed: gone on disk or no longer included
	Dirtied  int // paths marked dirty for at least one peer
	// Errors holds per-path problems (unreadable entries, paths outside
	// every group); the scan went on past them. It is capped at maxErrors.
	Errors []error
	// Refused lists include roots and mount points that were not walked
	// because they vanished, emptied or changed file system: nothing below
	// them was marked deleted, and their groups must not push.
	Refused []state.Refusal
}

// NotIncludedError reports a path given to Check or Mark that no group
// includes. It is a warning: the path is skipped.
type NotIncludedError struct{ Path string }

func (e *NotIncludedError) Error() string {
	return fmt.Sprintf("ignored: %q is not in any group", e.Path)
}

// fileCounter is implemented by *state.Store; a full scan uses it to skip
// the sweep when nothing needs one.
type fileCounter interface {
	CountFiles() (int, error)
}

// commitEvery bounds the number of operations in one write batch.
var commitEvery = 10000

const maxErrors = 1000

// Check compares the given paths with the state DB and records changes,
// like csync2 -c (or -cr with recursive). With no paths it walks every root
// of sel recursively. A no-change check performs no writes.
func Check[B Batch](ctx context.Context, st Store[B], sel Selector, paths []string, recursive bool, o Options) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	s := newScanner(ctx, st, sel, o)
	roots := sel.Roots()
	full := len(paths) == 0
	if full {
		paths = roots
		recursive = true
	}
	starts, err := cleanPaths(paths, recursive)
	if err != nil {
		return Result{}, err
	}
	if s.guard, err = newRootGuard(st, o.AllowMassDelete, s.o.Now, s.log.Debug); err != nil {
		return Result{}, err
	}
	s.roots = make(map[string]bool, len(roots))
	for _, r := range roots {
		s.roots[r] = true
	}
	// A full scan counts the records first. When the per-directory merges
	// account for all of them, nothing is left for a sweep, the common case.
	total := -1
	if c, ok := any(st).(fileCounter); ok && full {
		if total, err = c.CountFiles(); err != nil {
			return Result{}, fmt.Errorf("count state records: %w", err)
		}
	}
	if err := s.guard.checkAll(roots); err != nil {
		return Result{}, err
	}
	if full {
		for _, r := range roots {
			if err := symlinkRoot(r); err != nil {
				s.fail(err)
			}
		}
	}
	var sweeps []string
	for _, p := range starts {
		if s.guard.covers(p) {
			s.protect(p)
			continue
		}
		if s.start(p, recursive) {
			sweeps = append(sweeps, p)
		}
		if s.fatalErr() != nil {
			break
		}
	}
	s.run()
	if err := ctx.Err(); err != nil {
		s.fatal(err)
	}
	switch {
	case total >= 0:
		sweeps = nil
		if acc := s.accounted.Load(); int64(total) != acc {
			s.log.Debug("state records not seen by the walk; sweeping", "records", total, "seen", acc)
			sweeps = []string{"/"}
		}
	case recursive && s.passThrough.Load():
		// Records may sit below directories that have no record.
		sweeps = starts
	}
	for _, p := range sweeps {
		if s.fatalErr() != nil {
			break
		}
		if err := s.sweep(p, starts); err != nil {
			s.fatal(err)
		}
	}
	err = s.finish()
	res := s.result()
	res.Refused = s.guard.refusals()
	s.log.Debug("scan done", "scanned", res.Scanned, "hashed", res.Hashed, "new", res.New,
		"changed", res.Changed, "meta_only", res.MetaOnly, "deleted", res.Deleted,
		"dirtied", res.Dirtied, "errors", len(res.Errors))
	return res, err
}

// Mark marks paths dirty for all their peers without checking them, like
// csync2 -m. With recursive it also marks every path the DB holds below each
// path. It returns the number of paths marked; paths outside every group are
// reported as *NotIncludedError in the joined error.
func Mark[B Batch](ctx context.Context, st Store[B], sel Selector, paths []string, recursive bool, o Options) (int, error) {
	s := newScanner(ctx, st, sel, o)
	starts, err := cleanPaths(paths, recursive)
	if err != nil {
		return 0, err
	}
	var warns []error
	for _, p := range starts {
		if err := ctx.Err(); err != nil {
			s.fatal(err)
			break
		}
		isDir := false
		var sb unix.Stat_t
		if err := unix.Lstat(p, &sb); err == nil {
			isDir = sb.Mode&unix.S_IFMT == unix.S_IFDIR
		} else if old, ok, gerr := st.GetFile(p); gerr != nil {
			s.fatal(fmt.Errorf("read state of %q: %w", p, gerr))
			break
		} else if ok {
			isDir = old.Kind == state.KindDir
		}
		synced, _ := sel.Match(p, isDir)
		found := false
		if synced {
			found = true
			s.markPeers(p)
		}
		if recursive {
			err := st.WalkFiles(p, func(q string, _ *state.FileRecord) error {
				if q == p {
					return nil
				}
				found = true
				s.markPeers(q)
				return s.fatalErr()
			})
			if err != nil {
				s.fatal(fmt.Errorf("list state below %q: %w", p, err))
				break
			}
		}
		if !found {
			warns = append(warns, &NotIncludedError{Path: p})
		}
	}
	err = s.finish()
	return int(s.dirtied.Load()), errors.Join(append(warns, err)...)
}

// cleanPaths makes paths absolute and clean and, for recursive scans, drops
// paths below another one so that nothing is walked twice.
func cleanPaths(paths []string, recursive bool) ([]string, error) {
	out := make([]string, 0, len(paths))
	for _, p := range paths {
		a, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("resolve path %q: %w", p, err)
		}
		out = append(out, a)
	}
	sort.Strings(out)
	keep := out[:0]
	for _, p := range out {
		if n := len(keep); n > 0 {
			last := keep[n-1]
			if p == last || (recursive && isBelow(p, last)) {
				continue
			}
		}
		keep = append(keep, p)
	}
	return keep, nil
}

// isBelow reports whether p lies strictly below dir.
func isBelow(p, dir string) bool {
	if dir == "/" {
		return p != "/" && strings.HasPrefix(p, "/")
	}
	return len(p) > len(dir) && p[len(dir)] == '/' && strings.HasPrefix(p, dir)
}

func joinPath(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

func parentOf(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

// scanner holds the state of one Check or Mark.
type scanner[B Batch] struct {
	ctx     context.Context
	st      Store[B]
	sel     Selector
	o       Options
	log     *slog.Logger
	markNs  int64
	workers int
	q       dirQueue

	wmu   sync.Mutex
	batch B
	open  bool // batch holds uncommitted operations
	ops   int
	ferr  error // first fatal error; stops the scan
	wfail bool  // a commit failed: drop further writes
	fdone atomic.Bool

	created, changed, metaOnly, deleted, dirtied atomic.Int64

	accounted   atomic.Int64 // DB records compared during the walk
	passThrough atomic.Bool  // a directory was entered that has no record

	emu    sync.Mutex
	errs   []error
	nerrs  int
	vmu    sync.Mutex
	seen   map[string]struct{} // directories whose children were compared
	shield map[string]struct{} // paths whose subtree must not be swept (errors)

	guard *rootGuard      // Check only; nil in Mark
	roots map[string]bool // the include roots, for a walk that meets one
}

func newScanner[B Batch](ctx context.Context, st Store[B], sel Selector, o Options) *scanner[B] {
	if o.Tally == nil {
		o.Tally = &Tally{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	w := o.Workers
	if w <= 0 {
		w = 2 * runtime.GOMAXPROCS(0)
	}
	s := &scanner[B]{
		ctx: ctx, st: st, sel: sel, o: o, log: o.Logger,
		markNs: o.Now().UnixNano(), workers: w,
		seen: map[string]struct{}{}, shield: map[string]struct{}{},
	}
	s.q.cond.L = &s.q.mu
	return s
}

func (s *scanner[B]) result() Result {
	r := Result{
		Scanned: int(s.o.Tally.Scanned.Load()), Hashed: int(s.o.Tally.Hashed.Load()),
		New: int(s.created.Load()), Changed: int(s.changed.Load()),
		MetaOnly: int(s.metaOnly.Load()), Deleted: int(s.deleted.Load()),
		Dirtied: int(s.dirtied.Load()),
	}
	s.emu.Lock()
	r.Errors = append([]error(nil), s.errs...)
	if s.nerrs > len(s.errs) {
		r.Errors = append(r.Errors, fmt.Errorf("%d more errors not listed", s.nerrs-len(s.errs)))
	}
	s.emu.Unlock()
	return r
}

// symlinkRoot says, for an include root that is a symbolic link to a
// directory (/srv/www -> /data/www), that only the link is synced: the
// admin almost always meant the files.
func symlinkRoot(root string) error {
	fi, err := os.Lstat(root)
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		return nil
	}
	if st, err := os.Stat(root); err != nil || !st.IsDir() {
		return nil
	}
	target, _ := os.Readlink(root)
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		real = target
	}
	return fmt.Errorf("include root %s is a symbolic link (to %s): like csync2, ocf-csync syncs the link itself and never follows it, "+
		"so nothing below it is synced; to sync the files, include %s instead", root, target, real)
}

// fail records a per-path problem; the scan goes on.
func (s *scanner[B]) fail(err error) {
	s.log.Debug("scan problem", "err", err) // the caller reports Result.Errors
	s.emu.Lock()
	s.nerrs++
	if len(s.errs) < maxErrors {
		s.errs = append(s.errs, err)
	}
	s.emu.Unlock()
}

// fatal records an error that stops the scan (DB failures, cancellation).
func (s *scanner[B]) fatal(err error) {
	s.wmu.Lock()
	if s.ferr == nil {
		s.ferr = err
		s.fdone.Store(true)
	}
	s.wmu.Unlock()
	s.q.abort()
}

func (s *scanner[B]) fatalErr() error {
	if !s.fdone.Load() {
		return nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.ferr
}

// protect keeps the records below p from being swept: p could not be read,
// so absence of its children proves nothing.
func (s *scanner[B]) protect(p string) {
	s.vmu.Lock()
	s.shield[p] = struct{}{}
	s.vmu.Unlock()
}

func (s *scanner[B]) markSeen(dir string) {
	s.vmu.Lock()
	s.seen[dir] = struct{}{}
	s.vmu.Unlock()
}

// write runs fn on the current batch, creating it on first use so that a
// scan without changes never opens one, and commits every commitEvery ops.
func (s *scanner[B]) write(nops int, fn func(b B)) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.wfail {
		return
	}
	if !s.open {
		s.batch = s.st.NewBatch()
		s.open = true
	}
	fn(s.batch)
	s.ops += nops
	if s.ops >= commitEvery {
		s.commitLocked()
	}
}

func (s *scanner[B]) commitLocked() {
	s.open, s.ops = false, 0
	if err := s.batch.Commit(); err != nil {
		s.wfail = true
		if s.ferr == nil {
			s.ferr = fmt.Errorf("write scan results to the state DB: %w", err)
			s.fdone.Store(true)
		}
		go s.q.abort()
	}
}

// finish commits what is pending (results recorded before a cancellation
// are still true) and returns the fatal error, if any.
func (s *scanner[B]) finish() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.open {
		// Results recorded before a cancellation or a per-directory DB read
		// error are still true, so they are committed too.
		s.commitLocked()
	}
	return s.ferr
}

func (s *scanner[B]) dirty() state.DirtyRecord {
	return state.DirtyRecord{Forced: s.o.Force, MarkedNs: s.markNs}
}

// markPeers marks p dirty for every peer it syncs to.
func (s *scanner[B]) markPeers(p string) {
	peers := s.sel.Peers(p)
	if len(peers) == 0 {
		return
	}
	d := s.dirty()
	s.write(len(peers), func(b B) {
		for _, peer := range peers {
			b.MarkDirty(peer, p, d)
		}
	})
	s.dirtiedFor(peers)
}

// dirtiedFor counts a path marked dirty for peers and tells OnDirty.
func (s *scanner[B]) dirtiedFor(peers []string) {
	if len(peers) == 0 {
		return
	}
	s.dirtied.Add(1)
	if s.o.OnDirty != nil {
		s.o.OnDirty(peers)
	}
}

// record stores rec for p and, unless in init mode, marks p dirty.
func (s *scanner[B]) record(p string, rec *state.FileRecord, dirty bool) {
	var peers []string
	if dirty && !s.o.Init {
		peers = s.sel.Peers(p)
	}
	d := s.dirty()
	s.write(1+len(peers), func(b B) {
		b.PutFile(p, rec)
		for _, peer := range peers {
			b.MarkDirty(peer, p, d)
		}
	})
	s.dirtiedFor(peers)
}

// gone deletes the record of p, which no longer exists or is no longer
// included, and marks the deletion dirty for the peers p had.
func (s *scanner[B]) gone(p string) {
	if s.log.Enabled(s.ctx, slog.LevelDebug) {
		s.log.Debug("deleted", "path", p)
	}
	s.deleted.Add(1)
	var peers []string
	if !s.o.Init {
		peers = s.sel.Peers(p)
	}
	d := s.dirty()
	s.write(1+len(peers), func(b B) {
		b.DeleteFile(p)
		for _, peer := range peers {
			b.MarkDirty(peer, p, d)
		}
	})
	s.dirtiedFor(peers)
}

// change is the outcome of comparing a DB record with the disk.
type change uint8

const (
	unchanged change = iota
	added            // not in the DB: record, dirty
	modified         // synced state differs: record, dirty
	statOnly         // only ctime/inode/nlink/… differ: record, not dirty
)

// needsHash reports whether cur (a fresh lstat) must be hashed: a regular
// file that is new or whose stat differs from the record.
func needsHash(old, cur *state.FileRecord) bool {
	return cur.Kind == state.KindReg && (old == nil || old.StatChanged(cur))
}

// classify compares a DB record (nil if absent) with the disk state (hash
// filled in when needsHash said so).
func classify(old, cur *state.FileRecord, ig state.Ignore) change {
	switch {
	case old == nil:
		return added
	case !old.StatChanged(cur):
		return unchanged
	case !old.SameSyncState(cur, ig):
		return modified
	}
	return statOnly
}

// update compares cur with old and records the difference. hash reads the
// content when needed.
func (s *scanner[B]) update(p string, old, cur *state.FileRecord, hash func() (state.Hash, error)) {
	if old != nil && !old.StatChanged(cur) {
		return
	}
	if needsHash(old, cur) {
		h, err := hash()
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				// Vanished between lstat and open: the next scan settles it.
				return
			}
			s.fail(fmt.Errorf("hash %q: %w", p, err))
			return
		}
		s.o.Tally.Hashed.Add(1)
		s.o.Tally.HashedBytes.Add(cur.Size)
		cur.Hash = h
	}
	c := classify(old, cur, s.o.Ignore)
	if s.log.Enabled(s.ctx, slog.LevelDebug) {
		s.log.Debug("changed", "path", p, "change", c)
	}
	switch c {
	case added:
		s.created.Add(1)
		s.record(p, cur, true)
	case modified:
		s.changed.Add(1)
		s.record(p, cur, true)
	case statOnly:
		s.metaOnly.Add(1)
		s.record(p, cur, false)
	}
}

func (c change) String() string {
	return [...]string{"unchanged", "new", "modified", "stat-only"}[c]
}
