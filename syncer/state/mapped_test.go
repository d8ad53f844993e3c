package state

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fillTables writes n file records and closes the store, so the data is in
// tables (Close flushes the memtables), and returns the paths written.
func fillTables(t *testing.T, dir string, n int) []string {
	t.Helper()
	s := openT(t, dir)
	var paths []string
	b := s.NewBatch()
	for i := range n {
		p := fmt.Sprintf("/srv/data/d%03d/file-with-a-longish-name-%06d", i%100, i)
		paths = append(paths, p)
		b.PutFile(p, reg(int64(i), byte(i)))
		if b.Len() >= 5000 {
			if err := b.Commit(); err != nil {
				t.Fatal(err)
			}
			b = s.NewBatch()
		}
	}
	if err := b.CommitDurable(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return paths
}

// TestTablesReachable fails when a badger upgrade moved the fields that
// tablesOf reads: the release of mapped pages would then be off.
func TestTablesReachable(t *testing.T) {
	dir := t.TempDir()
	fillTables(t, dir, 60000)
	s := openT(t, dir)
	tables, ok := tablesOf(s.db)
	if !ok || len(tables) == 0 {
		t.Fatalf("tablesOf: ok %v, %d tables; badger's levelsController/levelHandler layout changed?", ok, len(tables))
	}
	ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	if len(tables) != len(ssts) {
		t.Errorf("tablesOf found %d tables, the directory has %d .sst files", len(tables), len(ssts))
	}
	releaseAll(tables)
	// The references were balanced: no table was deleted, and all still read.
	if after, _ := filepath.Glob(filepath.Join(dir, "*.sst")); len(after) != len(ssts) {
		t.Errorf("%d .sst files before, %d after releasing the references", len(ssts), len(after))
	}
	if n, err := s.CountFiles(); n != 60000 || err != nil {
		t.Errorf("CountFiles = %d, %v; want 60000", n, err)
	}
}

// TestReleaseMapped: reading the whole DB maps its tables into the RSS;
// ReleaseMapped drops them, and every record still reads back the same.
func TestReleaseMapped(t *testing.T) {
	dir := t.TempDir()
	paths := fillTables(t, dir, 120000)
	size := int64(0)
	ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	for _, f := range ssts {
		fi, _ := os.Stat(f)
		size += fi.Size()
	}
	if size < 8<<20 {
		t.Fatalf("tables hold only %d bytes; the test needs more than 8 MiB", size)
	}
	old := releaseInterval
	releaseInterval = time.Hour // no background release during the test
	defer func() { releaseInterval = old }()
	s := openT(t, dir)
	touch := func() {
		n := 0
		if err := s.WalkFiles("/srv", func(p string, r *FileRecord) error {
			if p != "/srv" && p != "/srv/data" && (r.Kind != KindReg || r.Size < 0) {
				return errors.New("bad record")
			}
			n++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if n < len(paths) {
			t.Fatalf("walk saw %d records, want %d", n, len(paths))
		}
	}
	touch()
	before := fileRSS()
	if !s.ReleaseMapped() {
		t.Fatal("ReleaseMapped could not reach badger's tables")
	}
	after := fileRSS()
	t.Logf("tables %d KiB; file-backed RSS %d KiB -> %d KiB", size>>10, before>>10, after>>10)
	if before-after < size/2 {
		t.Errorf("ReleaseMapped freed %d KiB of file-backed RSS; the tables (%d KiB) were read whole", (before-after)>>10, size>>10)
	}
	touch()
	for i, p := range paths {
		if i%997 != 0 {
			continue
		}
		r, ok, err := s.GetFile(p)
		if err != nil || !ok || r.Size != int64(i) || r.Hash[0] != byte(i) {
			t.Fatalf("GetFile(%s) after release = %+v, %v, %v", p, r, ok, err)
		}
	}
}

// TestReleaseLoop: walks of a big DB do not keep its tables mapped. How far
// the RSS rises during a walk depends on when the loop gets a core; after
// it, the loop must bring it back down.
func TestReleaseLoop(t *testing.T) {
	dir := t.TempDir()
	fillTables(t, dir, 240000)
	size := int64(0)
	ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	for _, f := range ssts {
		fi, _ := os.Stat(f)
		size += fi.Size()
	}
	old := releaseInterval
	releaseInterval = 5 * time.Millisecond
	defer func() { releaseInterval = old }()
	base := fileRSS()
	s := openT(t, dir)
	peak := int64(0)
	for range 3 {
		n := 0
		if err := s.WalkFiles("/srv", func(string, *FileRecord) error {
			if n++; n%500 == 0 {
				peak = max(peak, fileRSS())
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	// The walk touched every table; touch them again in one go so that the
	// loop has something to release even if it ran at the very end.
	if !s.ReleaseMapped() {
		t.Fatal("ReleaseMapped could not reach badger's tables")
	}
	if err := s.WalkFiles("/srv", func(string, *FileRecord) error { return nil }); err != nil {
		t.Fatal(err)
	}
	touched := fileRSS()
	var now int64
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if now = fileRSS(); now-base < size/4 {
			break
		}
	}
	t.Logf("tables %d KiB; file-backed RSS: %d KiB before open, peak %d KiB during the walks, %d KiB after a walk, %d KiB later",
		size>>10, base>>10, peak>>10, touched>>10, now>>10)
	if now-base >= size/4 {
		t.Errorf("the release loop left %d KiB of %d KiB of tables mapped", (now-base)>>10, size>>10)
	}
}

// TestVerifyTablesFindsDamage: the table-by-table check at Open still finds
// a damaged block.
func TestVerifyTablesFindsDamage(t *testing.T) {
	dir := t.TempDir()
	fillTables(t, dir, 60000)
	ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	if len(ssts) < 2 {
		t.Fatalf("%d tables; want several", len(ssts))
	}
	// Damage the largest table in the middle of its data blocks.
	big, bigSize := "", int64(0)
	for _, f := range ssts {
		if fi, _ := os.Stat(f); fi.Size() > bigSize {
			big, bigSize = f, fi.Size()
		}
	}
	fh, err := os.OpenFile(big, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.WriteAt([]byte("DAMAGEDAMAGEDAMAGE"), bigSize/3); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	_, err = Open(context.Background(), Options{Dir: dir, Node: "n1"})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open of a DB with a damaged table: %v, want ErrCorrupt", err)
	}
}
