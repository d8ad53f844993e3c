package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// SchemaVersion is the layout version written into the sentinel; Open
// migrates older DBs forward (migrate.go) and refuses newer ones.
const SchemaVersion = 2

// DefaultLockTimeout is how long Open waits for another owner by default.
const DefaultLockTimeout = 12 * time.Second

// gcInterval is how often the value log is garbage collected; a variable so
// tests can shorten it.
var gcInterval = 10 * time.Minute

// Options configure Open.
type Options struct {
	Dir         string        // DB directory, created 0700 if missing
	Node        string        // this node's name; checked against the sentinel unless empty
	LockTimeout time.Duration // how long to wait for another owner; default 12s
	Logger      *slog.Logger  // nil: discard
	ReadOnly    bool          // badger read-only; still takes the owner lock

	// AllowRebuild is for `ocf-csync rebuild`: open a DB that lost its
	// sentinel, has another node's or a newer schema's sentinel, or is
	// corrupt (the damaged files are moved to <Dir>/corrupt-<time>/). The
	// caller must then call Reset.
	AllowRebuild bool
}

// Sentinel marks a DB as initialised; see DESIGN.md §5.
type Sentinel struct {
	Schema   int         `json:"schema"`
	Node     string      `json:"node"`
	Created  time.Time   `json:"created"`
	Writer   string      `json:"writer,omitempty"`   // the ocf-csync that created or last migrated it (schema 2)
	Migrated []Migration `json:"migrated,omitempty"` // the migrations applied, oldest first (schema 2)
}

// Migration is one forward migration of a DB's schema.
type Migration struct {
	From int       `json:"from"`
	To   int       `json:"to"`
	At   time.Time `json:"at"`
	By   string    `json:"by"` // the ocf-csync version that ran it
}

// Store is the per-node state DB. It is safe for concurrent use.
type Store struct {
	*open
	lent bool // a Borrow handle: Close does nothing
}

// open is one opened database; Borrow shares it.
type open struct {
	db       *badger.DB
	dir      string
	node     string
	readOnly bool
	lowSpace error // opened read-only because its file system was full
	rw       bool  // the badger handle writes (its Close flushes through mmap)
	log      *slog.Logger
	lock     *dirLock
	sentinel Sentinel

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
	gcStop    chan struct{}
	gcDone    chan struct{}
	gcMu      sync.Mutex // serialises value-log GC with Reset
	gcRuns    atomic.Int64
	mu        sync.Mutex   // serialises read-modify-write updates (action seq)
	roomOK    atomic.Int64 // unix ns of the last Room that found plenty of space

	relMu   sync.Mutex // serialises ReleaseMapped
	relStop chan struct{}
	relDone chan struct{}
}

// Open takes the owner lock on o.Dir (waiting up to o.LockTimeout), opens
// badger with small-node settings and checks the sentinel.
func Open(ctx context.Context, o Options) (_ *Store, err error) {
	if o.Dir == "" {
		return nil, errors.New("open state db: no directory given")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("open state db %q: %w", o.Dir, err)
	}
	if o.Node != "" {
		if err := checkName("node", o.Node); err != nil {
			return nil, fmt.Errorf("open state db %q: %w", dir, err)
		}
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("statedb", dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state db directory %q: %w", dir, err)
	}
	lk, err := acquireLock(ctx, dir, o.Node, o.LockTimeout)
	if err != nil {
		return nil, err
	}
	s := &Store{open: &open{dir: dir, node: o.Node, readOnly: o.ReadOnly, log: log, lock: lk}}
	defer func() {
		if err != nil {
			if s.db != nil {
				s.closeDB()
			}
			_ = lk.release()
		}
	}()

	if o.ReadOnly {
		if _, err := os.Stat(filepath.Join(dir, "MANIFEST")); errors.Is(err, os.ErrNotExist) {
			return nil, &dbError{ErrNoDB, fmt.Sprintf(
				"state db %q does not exist yet; it is created by the first sync or scan", dir)}
		}
	}
	if !o.ReadOnly {
		if err := s.spaceCheck(MinFree / 4); err != nil {
			// badger would flush and compact what its log holds at once,
			// through mmap: on a full disk that kills the process. Read
			// what there is; every write says why it cannot be done.
			if _, merr := os.Stat(filepath.Join(dir, "MANIFEST")); merr != nil || o.AllowRebuild {
				return nil, err
			}
			log.Error("state db file system is too full: opened read-only", "err", err)
			s.lowSpace, s.readOnly = err, true
		}
	}
	if db := takeUnclosed(dir); db != nil {
		if s.lowSpace != nil {
			s.db, s.rw = db, true // still full: read through the handle kept open
		} else {
			_ = closeBadger(db) // room again: close it the normal way first
		}
	}
	_, uerr := os.Stat(filepath.Join(dir, usedName))
	aside, err := protectTables(dir, uerr == nil, o.AllowRebuild, log)
	if err == nil && s.db == nil {
		s.db, err = openBadger(dir, s.readOnly, log)
		s.rw = err == nil && !s.readOnly
	}
	if err == nil {
		err = s.verify()
	}
	if errors.Is(err, ErrCorrupt) && o.AllowRebuild && !o.ReadOnly {
		if s.db != nil {
			s.closeDB()
			s.db = nil
		}
		bad, merr := moveAside(dir) // kept for inspection, unlike orphans
		if merr != nil {
			return nil, fmt.Errorf("%w; moving the damaged files aside failed: %w", err, merr)
		}
		log.Warn("state db was corrupt; damaged files moved aside for the rebuild", "moved_to", bad, "err", err)
		s.db, err = openBadger(dir, false, log)
		s.rw = err == nil
	}
	if err != nil {
		return nil, err
	}
	if err := s.checkSentinel(o.AllowRebuild); err != nil {
		return nil, err
	}
	if lk.dead != nil && !s.readOnly {
		if err := s.markUnclean(*lk.dead); err != nil {
			return nil, err
		}
	}
	if aside != "" && !s.readOnly {
		// The DB is sound without them: badger would have deleted them.
		_ = os.RemoveAll(aside)
	}
	if !s.readOnly {
		s.gcStop = make(chan struct{})
		s.gcDone = make(chan struct{})
		go s.gcLoop()
	}
	s.relStop = make(chan struct{})
	s.relDone = make(chan struct{})
	go s.releaseLoop(releaseInterval, releaseSlack)
	return s, nil
}

// badgerOptions are the small-node settings from go-libraries.md §2.2.
// Two settings differ from that table, measured on D1 and the 1 M-file
// scale tree (issue 12): 2 MiB memtables (each is a 2.6 MiB arena, and
// its flush builds its whole table in memory), and every level's tables
// as large as the base level's, 1 MiB (TableSizeMultiplier 1; badger's
// default doubles them per level, and a compaction holds up to 8 + 5
// table builders, each with twice the table size: at 1 M files the live
// heap peaked at 66 MB with doubling, 33 MB without).
func badgerOptions(dir string, readOnly bool, log *slog.Logger) badger.Options {
	o := badger.DefaultOptions(dir).
		WithMemTableSize(memTableSize(dir)).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(4).
		WithBaseTableSize(1 << 20).
		WithBaseLevelSize(4 << 20).
		WithValueThreshold(64 << 10). // ≤ 15% of the memtable, or Open fails
		WithValueLogFileSize(16 << 20).
		WithBlockCacheSize(4 << 20).
		WithIndexCacheSize(2 << 20).
		WithNumCompactors(2).
		WithNumGoroutines(2).
		WithCompactL0OnClose(false). // a compaction at close was the D1 sender's RSS peak; the next open compacts L0 in the background
		WithMetricsEnabled(false).
		WithCompression(options.None). // records hold sha256es; compression buffers cost RAM
		WithDetectConflicts(false).    // blind writes; read-modify-write holds Store.mu
		WithReadOnly(readOnly).
		WithLoggingLevel(badger.WARNING).
		WithLogger(badgerLogger{log})
	o.TableSizeMultiplier = 1 // no With method for it
	return o
}

// memTableSize is 2 MiB, unless a memtable log left by an unclean end of
// an older ocf-csync (4 MiB memtables) needs more: badger replays each log
// into a memtable arena of the configured size and, when it does not fit,
// exits the process (log.Fatalf). A log file is created at twice its memtable's size and truncated to
// its data when replayed, so its size bounds what it holds.
func memTableSize(dir string) int64 {
	size := int64(2 << 20)
	logs, _ := filepath.Glob(filepath.Join(dir, "*.mem"))
	for _, l := range logs {
		if fi, err := os.Stat(l); err == nil && fi.Size() > size {
			size = fi.Size()
		}
	}
	return size
}

// openBadger opens the DB and turns badger's failures into our errors: its
// directory lock into *LockedError, panics and damage into ErrCorrupt.
func openBadger(dir string, readOnly bool, log *slog.Logger) (db *badger.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("badger panicked while opening the state db", "panic", shortCause(r))
			db, err = nil, corruptError(dir, r)
		}
	}()
	db, err = badger.Open(badgerOptions(dir, readOnly, log))
	if err == nil {
		return db, nil
	}
	switch {
	case isBadgerLockErr(err):
		return nil, lockedBy(dir, badgerHolder(dir), 0)
	case errors.Is(err, os.ErrPermission), errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EROFS),
		errors.Is(err, syscall.EIO), errors.Is(err, syscall.EMFILE):
		return nil, fmt.Errorf("open state db %q: %v", dir, shortCause(err))
	}
	log.Error("badger failed to open the state db", "err", err)
	return nil, corruptError(dir, err)
}

func closeBadger(db *badger.DB) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("close state db: %s", shortCause(r))
		}
	}()
	return db.Close()
}

// verify reads every block of every table with its checksum. badger's
// iterators silently stop at a damaged block, so without this a corrupt
// table would look like missing files. It runs in our goroutine, where a
// panic can be recovered (unlike checksum mode OnTableAndBlockRead, which
// verifies in background goroutines at Open and can crash the process).
func (s *Store) verify() (err error) {
	defer func() {
		if r := recover(); r != nil {
			// badger's VerifyChecksum dereferences a nil block when a
			// block fails to read: a damaged table, not our bug.
			s.log.Error("state db checksum verification panicked", "panic", shortCause(r))
			err = corruptError(s.dir, "a table failed its checksum check")
		}
	}()
	ok, err := s.verifyTables()
	if !ok {
		err = s.db.VerifyChecksum()
	}
	if err != nil {
		s.log.Error("state db checksum verification failed", "err", err)
		return corruptError(s.dir, err)
	}
	return nil
}

// moveAside moves badger's files (everything but our lock and marker
// files and earlier corrupt-* directories) into a new subdirectory.
func moveAside(dir string) (string, error) {
	aside := filepath.Join(dir, "corrupt-"+time.Now().Format("20060102-150405.000"))
	if err := os.Mkdir(aside, 0o700); err != nil {
		return "", err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		n := e.Name()
		if n == lockName || n == usedName || strings.HasPrefix(n, "corrupt-") {
			continue
		}
		if err := os.Rename(filepath.Join(dir, n), filepath.Join(aside, n)); err != nil {
			return "", err
		}
	}
	return aside, syncDir(dir)
}

// checkSentinel implements DESIGN.md §5: an initialised DB must still carry
// its sentinel; a new one gets a sentinel and the used marker.
func (s *Store) checkSentinel(allowRebuild bool) error {
	var sen Sentinel
	found, err := s.getJSON([]byte{pfxSentinel}, &sen)
	if err != nil {
		return err
	}
	if found {
		switch {
		case allowRebuild:
		case sen.Schema > SchemaVersion:
			return &dbError{ErrSchema, fmt.Sprintf(
				"state db %q has schema %d, newer than this ocf-csync (schema %d); nothing was changed; "+
					"install the newer ocf-csync, or run `ocf-csync rebuild`", s.dir, sen.Schema, SchemaVersion)}
		case s.node != "" && sen.Node != "" && sen.Node != s.node:
			return &dbError{ErrNodeMismatch, fmt.Sprintf(
				"state db %q belongs to node %q, but this is node %q; nothing was changed; "+
					"fix the node name or the state directory, or run `ocf-csync rebuild`", s.dir, sen.Node, s.node)}
		}
		if !allowRebuild {
			if sen, err = s.migrate(sen); err != nil {
				return err
			}
		}
		s.sentinel = sen
		if !s.readOnly {
			// A crash between the sentinel and the marker leaves no marker.
			if _, err := os.Stat(filepath.Join(s.dir, usedName)); errors.Is(err, os.ErrNotExist) {
				return s.writeUsed(sen)
			}
		}
		return nil
	}
	used := false
	if _, err := os.Stat(filepath.Join(s.dir, usedName)); err == nil {
		used = true
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("state db %q: check used marker: %w", s.dir, err)
	}
	if !used {
		// No marker, but data: the marker was lost, the sentinel too.
		if used, err = s.hasKeys(); err != nil {
			return err
		}
	}
	if used {
		if allowRebuild {
			return nil
		}
		return &dbError{ErrNoSentinel, fmt.Sprintf(
			"state db %q has lost its sentinel although it was used before (the DB was lost, damaged or emptied); "+
				"nothing was changed; run `ocf-csync rebuild` to rebuild it from a scan", s.dir)}
	}
	if s.lowSpace != nil {
		return s.lowSpace
	}
	if s.readOnly {
		return &dbError{ErrNoDB, fmt.Sprintf(
			"state db %q is not initialised yet; it is created by the first sync or scan", s.dir)}
	}
	return s.initSentinel()
}

// initSentinel writes a fresh sentinel durably, then the used marker.
func (s *Store) initSentinel() error {
	sen := Sentinel{Schema: SchemaVersion, Node: s.node, Created: time.Now().UTC(), Writer: Program}
	if err := s.putJSON([]byte{pfxSentinel}, sen, true); err != nil {
		return err
	}
	s.sentinel = sen
	return s.writeUsed(sen)
}

func (s *Store) writeUsed(sen Sentinel) error {
	data, _ := json.Marshal(sen)
	if err := writeFileSync(filepath.Join(s.dir, usedName), append(data, '\n')); err != nil {
		return fmt.Errorf("state db %q: write used marker: %w", s.dir, err)
	}
	return nil
}

func writeFileSync(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Unclean is the record of an owner of the DB that ended without closing
// it (kill -9, a crash, a power loss): what it wrote may be on disk without
// being recorded, and its temp files may be left. It stays until the
// caller that sorted this out calls ClearUnclean.
type Unclean struct {
	PID     int       `json:"pid"`
	Cmdline string    `json:"cmdline"`
	Since   time.Time `json:"since"`    // when that owner took the DB
	FoundAt time.Time `json:"found_at"` // when a later owner found it gone
	// TempsRemoved: its temp files were cleaned up (by a later serve).
	TempsRemoved bool `json:"temps_removed,omitempty"`
}

// PutUnclean replaces the Unclean record (to note what was sorted out).
func (s *Store) PutUnclean(u Unclean) error { return s.putJSON([]byte{pfxUnclean}, u, true) }

func (s *Store) markUnclean(h holder) error {
	u := Unclean{PID: h.PID, Cmdline: h.Cmdline, Since: h.Since, FoundAt: s.lock.since}
	if _, ok, err := s.Unclean(); err != nil || ok {
		return err // the first one not sorted out yet stays
	}
	s.log.Warn("the previous owner of the state db ended without closing it", "pid", h.PID, "cmdline", h.Cmdline)
	return s.putJSON([]byte{pfxUnclean}, u, true)
}

// Unclean reports the earliest owner since the last ClearUnclean that ended
// without closing the DB.
func (s *Store) Unclean() (Unclean, bool, error) {
	var u Unclean
	ok, err := s.getJSON([]byte{pfxUnclean}, &u)
	return u, ok, err
}

// ClearUnclean drops the Unclean record.
func (s *Store) ClearUnclean() error { return s.del([]byte{pfxUnclean}, true) }

// OwnedSince is when this Store took the DB: a file another process of
// ours left is older than this.
func (s *Store) OwnedSince() time.Time { return s.lock.since }

// Dir is the absolute DB directory.
func (s *Store) Dir() string { return s.dir }

// Node is the node name the store was opened with.
func (s *Store) Node() string { return s.node }

// Sentinel is the sentinel read or written at Open (zero if AllowRebuild
// opened a DB without one).
func (s *Store) Sentinel() Sentinel { return s.sentinel }

// Borrow returns a handle on the same open database whose Close does
// nothing: the owner (the daemon) lends its store to the commands it runs
// for the CLI, and closes it itself.
func (s *Store) Borrow() *Store { return &Store{open: s.open, lent: true} }

// Close stops value-log GC, closes badger (compacting L0) and releases the
// owner lock. It is safe to call more than once. On a Borrow handle it
// does nothing.
func (s *Store) Close() error {
	if s.lent {
		return nil
	}
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		if s.gcStop != nil {
			close(s.gcStop)
			<-s.gcDone
		}
		if s.relStop != nil {
			close(s.relStop)
			<-s.relDone
		}
		s.relMu.Lock() // no ReleaseMapped while badger unmaps its tables
		if err := s.closeDB(); err != nil {
			s.closeErr = fmt.Errorf("close state db %q: %w", s.dir, err)
		}
		s.relMu.Unlock()
		if err := s.lock.release(); err != nil && s.closeErr == nil {
			s.closeErr = fmt.Errorf("release state db lock %q: %w", s.dir, err)
		}
	})
	return s.closeErr
}

// closeDB closes the badger handle, unless it writes and the file system is
// full: closing flushes the memtable through mmap, which is a SIGBUS on a
// full disk. What was committed is in badger's log already. The handle is
// kept for the next Open of the directory in this process (a daemon opens
// the store every cycle), which closes it once there is room again; a new
// process replays the log, as after a crash.
func (s *Store) closeDB() error {
	if s.rw {
		if err := s.spaceCheck(MinFree / 4); err != nil {
			s.log.Error("state db file system is too full: not flushing it now", "err", err)
			keepUnclosed(s.dir, s.db)
			return nil
		}
	}
	return closeBadger(s.db)
}

// unclosed holds the badger handles closeDB kept open, by directory.
var unclosed = struct {
	sync.Mutex
	m map[string]*badger.DB
}{m: map[string]*badger.DB{}}

func keepUnclosed(dir string, db *badger.DB) {
	unclosed.Lock()
	defer unclosed.Unlock()
	unclosed.m[dir] = db
}

func takeUnclosed(dir string) *badger.DB {
	unclosed.Lock()
	defer unclosed.Unlock()
	db := unclosed.m[dir]
	delete(unclosed.m, dir)
	return db
}

// Sync makes all committed writes durable.
func (s *Store) Sync() error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := s.db.Sync(); err != nil {
		return fmt.Errorf("sync state db %q: %w", s.dir, err)
	}
	return nil
}

// Reset drops every key and writes a fresh sentinel; the used marker
// stays. It is the first step of `ocf-csync rebuild`.
func (s *Store) Reset() (err error) {
	if err := s.writable(); err != nil {
		return err
	}
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = corruptError(s.dir, r)
			}
		}()
		err = s.db.DropAll()
	}()
	if err != nil {
		return fmt.Errorf("reset state db %q: %w", s.dir, err)
	}
	s.log.Info("state db reset")
	return s.initSentinel()
}

func (s *Store) writable() error {
	if err := s.writableMode(); err != nil {
		return err
	}
	return s.spaceCheck(MinFree / 4)
}

// writableMode is writable without the space check.
func (s *Store) writableMode() error {
	if s.closed.Load() {
		return ErrClosed
	}
	if s.lowSpace != nil {
		return s.lowSpace
	}
	if s.readOnly {
		return &dbError{ErrReadOnly, fmt.Sprintf("state db %q is open read-only", s.dir)}
	}
	return nil
}

// Writable says why nothing can be written to the store now (closed,
// read-only, or its file system is too full), or nil. A receiver asks before it
// applies anything: a change it cannot record would be applied unrecorded,
// and its actions would never run.
func (s *Store) Writable() error { return s.writable() }

// Room says why no new work should start that adds to the disk the store
// is on (its file system has less than MinFree), or nil: a receiver stops
// applying files there while it can still record what it applied.
//
// A receiver asks before every file; statfs then cost 7% of its CPU on 100k
// small files. While the last answer left plenty of room (roomSlack above
// MinFree) and is younger than roomFresh, it stands: even at 1 GiB/s the
// file system cannot lose roomSlack in that time, and the quarter of
// MinFree kept as the last reserve is checked on every durable write anyway.
func (s *Store) Room() error {
	if err := s.writableMode(); err != nil {
		return err
	}
	now := time.Now().UnixNano()
	if last := s.roomOK.Load(); last != 0 && now-last < int64(roomFresh) {
		return nil
	}
	free, err := s.freeSpace()
	if err != nil || free >= MinFree+roomSlack {
		s.roomOK.Store(now)
		return nil
	}
	s.roomOK.Store(0)
	return s.spaceCheck(MinFree)
}

// roomFresh and roomSlack bound how long a generous Room answer is reused.
const (
	roomFresh = 100 * time.Millisecond
	roomSlack = 256 << 20
)

// MinFree is the free space the state DB's file system must keep for new
// work; a quarter of it is the reserve for recording work in progress,
// below which nothing at all is written. badger writes its log and tables
// through mmap'd sparse files, and on a full file system such a write is a
// SIGBUS that kills the process, not an error: two memtable logs (8 MiB
// each), an L0 table and an L0→L1 compaction fit in MinFree. A variable
// for tests.
var MinFree uint64 = 32 << 20

// spaceCheck fails when the DB's file system has less than min left (what
// root may use: root writes into the reserved blocks).
func (s *Store) spaceCheck(min uint64) error {
	free, err := s.freeSpace()
	if err != nil {
		return nil // cannot tell: badger reports real failures
	}
	if free >= min {
		return nil
	}
	return &dbError{ErrNoSpace, fmt.Sprintf(
		"state db %q: its file system is too full (%d KiB free; %d MiB are kept free so that the state db can be written safely); "+
			"free space there, then retry", s.dir, free>>10, min>>20)}
}

// freeSpace is what the DB's file system has left for this process.
func (s *Store) freeSpace() (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(s.dir, &st); err != nil {
		return 0, err
	}
	if os.Geteuid() == 0 {
		return st.Bfree * uint64(st.Bsize), nil
	}
	return st.Bavail * uint64(st.Bsize), nil
}

func (s *Store) gcLoop() {
	defer close(s.gcDone)
	t := time.NewTicker(gcInterval)
	defer t.Stop()
	for {
		select {
		case <-s.gcStop:
			return
		case <-t.C:
			s.runGC()
		}
	}
}

// runGC rewrites value-log files until badger finds nothing worth it.
func (s *Store) runGC() {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("value log GC panicked; the state db may be damaged", "panic", shortCause(r))
		}
	}()
	s.gcRuns.Add(1)
	if s.spaceCheck(MinFree) != nil {
		return // GC writes a new value log first
	}
	for i := 0; i < 100; i++ { // bounded: a run must not hold off Close for long
		select {
		case <-s.gcStop:
			return
		default:
		}
		err := s.db.RunValueLogGC(0.5)
		if err == nil {
			continue
		}
		if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
			s.log.Warn("value log GC failed", "err", err)
		}
		return
	}
}

// badgerLogger passes only badger's warnings and errors on; its INFO lines
// ("All 0 tables opened") are noise.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error(strings.TrimSpace(fmt.Sprintf(f, a...)), "source", "badger")
}

func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn(strings.TrimSpace(fmt.Sprintf(f, a...)), "source", "badger")
}
func (badgerLogger) Infof(string, ...any)  {}
func (badgerLogger) Debugf(string, ...any) {}
