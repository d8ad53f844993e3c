package state

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	badger "github.com/dgraph-io/badger/v4"
)

// copyDir copies a live DB directory: what a crash at this moment leaves.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		src, err := os.Open(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		dst, err := os.Create(filepath.Join(to, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(dst, src); err != nil {
			t.Fatal(err)
		}
		src.Close()
		dst.Close()
	}
}

// TestOldMemtableLogReplays: a node that crashed under an ocf-csync with
// 4 MiB memtables left a memtable log fuller than a 2 MiB memtable holds;
// badger replays it into an arena of the configured size and exits the
// process when it does not fit. Open sizes the memtable for the log.
func TestOldMemtableLogReplays(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	s := openT(t, dir)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	old := badgerOptions(dir, false, slog.New(slog.DiscardHandler)).WithMemTableSize(4 << 20)
	db, err := badger.Open(old)
	if err != nil {
		t.Fatal(err)
	}
	const n = 25000 // about 3.5 MiB of memtable: more than a 2 MiB one holds, less than 4
	wb := db.NewWriteBatch()
	for i := range n {
		rec, _ := reg(int64(i), byte(i)).MarshalBinary()
		if err := wb.Set(fileKey(fmt.Sprintf("/srv/data/d%03d/a-file-with-a-long-name-%06d", i%100, i)), rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := wb.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Sync(); err != nil {
		t.Fatal(err)
	}
	crashed := filepath.Join(t.TempDir(), "crashed")
	copyDir(t, dir, crashed)
	db.Close()
	logs, _ := filepath.Glob(filepath.Join(crashed, "*.mem"))
	if len(logs) == 0 {
		t.Fatal("no memtable log in the crash image")
	}
	// Without the sizing, badger's replay stops the whole process
	// (log.Fatalf "Arena too small"): this test binary would die here.
	s = openT(t, crashed)
	if c, err := s.CountFiles(); c != n || err != nil {
		t.Fatalf("after replaying the old log: %d files, %v; want %d", c, err, n)
	}
}
