package state

import (
	"bytes"
	"os"
	"reflect"
	"runtime/debug"
	"strconv"
	"sync"
	"time"
	"unsafe"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/table"
	"golang.org/x/sys/unix"
)

// badger reads and writes its tables through mmap (v4 has no option to
// read them with pread), and every page it touches stays mapped, counted in
// the process's RSS, until the table is deleted: the open-time checksum
// check alone maps the whole database (~120 MiB at 1 M files, ~450 MiB at
// 3.6 M), a no-change scan maps every file record. Dropping our mappings
// (madvise MADV_DONTNEED on a MAP_SHARED file mapping: the pages stay in the
// page cache, dirty ones stay dirty, and the next read maps them again with
// a minor fault) keeps the RSS to what was touched since the last release.
//
// badger keeps its tables in unexported fields. tablesOf reaches them with
// reflect, checking every type on the way, and holds a reference on each
// table, as badger's own readers do, so that none is deleted (unmapped)
// while its range is advised: advising a range that something else had
// mapped meanwhile would zero that memory. If a badger upgrade changes these
// fields, tablesOf finds nothing and the release is off (TestTablesReachable
// fails, so the upgrade is noticed).

var (
	rwMutexType = reflect.TypeOf(sync.RWMutex{})
	tablesType  = reflect.TypeOf([]*table.Table(nil))
)

// tablesOf returns every table of db's levels with a reference taken; the
// caller must DecrRef each. ok is false when badger's layout is not the one
// this code knows.
func tablesOf(db *badger.DB) (tables []*table.Table, ok bool) {
	lc := reflect.ValueOf(db).Elem().FieldByName("lc")
	if lc.Kind() != reflect.Pointer || lc.IsNil() || lc.Elem().Kind() != reflect.Struct {
		return nil, false
	}
	levels := lc.Elem().FieldByName("levels")
	if levels.Kind() != reflect.Slice || levels.Type().Elem().Kind() != reflect.Pointer ||
		levels.Type().Elem().Elem().Kind() != reflect.Struct {
		return nil, false
	}
	for i := range levels.Len() {
		lp := levels.Index(i)
		if lp.IsNil() {
			return releaseAll(tables), false
		}
		lh := lp.Elem()
		mu, ts := lh.FieldByName("RWMutex"), lh.FieldByName("tables")
		if !mu.IsValid() || mu.Type() != rwMutexType || !ts.IsValid() || ts.Type() != tablesType {
			return releaseAll(tables), false
		}
		lock := (*sync.RWMutex)(unsafe.Pointer(mu.UnsafeAddr()))
		list := (*[]*table.Table)(unsafe.Pointer(ts.UnsafeAddr()))
		lock.RLock()
		for _, t := range *list {
			t.IncrRef()
			tables = append(tables, t)
		}
		lock.RUnlock()
	}
	return tables, true
}

func releaseAll(tables []*table.Table) []*table.Table {
	for _, t := range tables {
		_ = t.DecrRef()
	}
	return nil
}

// dropMapped drops this process's mappings of a table's pages. A table
// without a file (badger's in-memory mode, which we do not use) holds its
// data on the Go heap, where MADV_DONTNEED would zero live memory.
func dropMapped(t *table.Table) {
	if t.MmapFile == nil || t.Fd == nil || len(t.Data) == 0 {
		return
	}
	_ = unix.Madvise(t.Data, unix.MADV_DONTNEED)
}

// ReleaseMapped drops the process's mappings of every table page (see
// above). It reports whether badger's tables could be reached.
func (s *Store) ReleaseMapped() bool {
	s.relMu.Lock()
	defer s.relMu.Unlock()
	if s.closed.Load() {
		return false
	}
	tables, ok := tablesOf(s.db)
	fitMemoryLimit(tablesSize(tables))
	for _, t := range tables {
		dropMapped(t)
		if err := t.DecrRef(); err != nil {
			s.log.Warn("state db: release a table reference", "table", t.Filename(), "err", err)
		}
	}
	return ok
}

// releaseInterval is how often the release loop looks at the process's
// file-backed RSS; releaseSlack is how much it may grow before the tables'
// pages are released. Variables for tests.
var (
	releaseInterval = 100 * time.Millisecond
	releaseSlack    = int64(2 << 20)
)

// releaseLoop releases the mapped table pages whenever the process's
// file-backed RSS grew by releaseSlack since the last release: a busy scan
// or push keeps its RSS bounded, an idle daemon only reads /proc/self/statm.
func (s *Store) releaseLoop(interval time.Duration, slack int64) {
	defer close(s.relDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	base := fileRSS()
	for {
		select {
		case <-s.relStop:
			return
		case <-t.C:
		}
		r := fileRSS()
		if r < 0 || r-base < slack {
			if r >= 0 && r < base {
				base = r
			}
			continue
		}
		if !s.ReleaseMapped() {
			return // badger's layout is unknown: nothing to do here
		}
		base = fileRSS()
	}
}

// fileRSS is the process's resident file-backed and shared memory in bytes
// (the "shared" field of /proc/self/statm), or -1.
func fileRSS() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return -1
	}
	f := bytes.Fields(b)
	if len(f) < 3 {
		return -1
	}
	n, err := strconv.ParseInt(string(f[2]), 10, 64)
	if err != nil {
		return -1
	}
	return n * int64(os.Getpagesize())
}

// verifyTables checks every block of every table, one table at a time,
// dropping each table's pages once it is read, so the check does not map
// the whole database at once. ok is false when the tables cannot be
// reached (the caller then uses badger's VerifyChecksum).
func (s *Store) verifyTables() (ok bool, err error) {
	tables, ok := tablesOf(s.db)
	if !ok {
		return false, nil
	}
	fitMemoryLimit(tablesSize(tables))
	defer func() {
		for _, t := range tables {
			if derr := t.DecrRef(); derr != nil {
				s.log.Warn("state db: release a table reference", "table", t.Filename(), "err", derr)
			}
		}
	}()
	for _, t := range tables {
		err := t.VerifyChecksum()
		dropMapped(t)
		if err != nil {
			return true, err
		}
	}
	return true, nil
}

// MemoryLimitBase, when above zero, makes the stores of this process keep
// the runtime's soft memory limit (debug.SetMemoryLimit) at least at
// MemoryLimitBase plus a quarter of their tables' size. badger's live heap
// grows with the database (22 MB at 100k files, 33-50 MB at 1 M: its
// compactions merge more tables at once), and the limit must stay above it
// or the collector and the scavenger run without pause: in a first check of
// 1 M files they took 17 s of 50 s CPU under a fixed 40 or 48 MiB limit,
// 7 s under 64 MiB or none. main sets it unless GOMEMLIMIT is given.
var MemoryLimitBase int64

var memLimitMu sync.Mutex

// fitMemoryLimit raises the soft memory limit for a database whose tables
// hold lsm bytes. It never lowers it: another store, or a larger database
// earlier in the same process, may need more.
func fitMemoryLimit(lsm int64) {
	if MemoryLimitBase <= 0 {
		return
	}
	want := MemoryLimitBase + lsm/4
	memLimitMu.Lock()
	defer memLimitMu.Unlock()
	if debug.SetMemoryLimit(-1) < want {
		debug.SetMemoryLimit(want)
	}
}

func tablesSize(tables []*table.Table) (n int64) {
	for _, t := range tables {
		n += t.Size()
	}
	return n
}
