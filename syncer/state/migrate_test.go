package state

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestMigrateFromSchema1: a DB as schema 1 wrote it (the previous
// release: its sentinel without writer or migrations) opens migrated to
// SchemaVersion with every record kept; the new sentinel says so, and a
// read-only open of an old DB refuses instead of migrating.
func TestMigrateFromSchema1(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	fill(t, dir, 7)
	s := openT(t, dir)
	if err := s.SetEpoch(3); err != nil {
		t.Fatal(err)
	}
	old := Sentinel{Schema: 1, Node: "n1", Created: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
	if err := s.putJSON([]byte{pfxSentinel}, old, true); err != nil {
		t.Fatal(err)
	}
	s.Close()

	if _, err := Open(ctx, Options{Dir: dir, Node: "n1", ReadOnly: true}); !errors.Is(err, ErrSchema) {
		t.Fatalf("read-only Open of schema 1 = %v, want ErrSchema", err)
	}
	Program = "9.9.9-test"
	defer func() { Program = "" }()
	s, err := Open(ctx, Options{Dir: dir, Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	sen := s.Sentinel()
	if sen.Schema != SchemaVersion || sen.Writer != "9.9.9-test" || !sen.Created.Equal(old.Created) ||
		len(sen.Migrated) != 1 || sen.Migrated[0].From != 1 || sen.Migrated[0].To != SchemaVersion {
		t.Errorf("sentinel after migration: %+v", sen)
	}
	if n, _ := s.CountFiles(); n != 7 {
		t.Errorf("%d files after migration, want 7", n)
	}
	if e, _ := s.Epoch(); e != 3 {
		t.Errorf("epoch %d after migration, want 3", e)
	}
	s.Close()
	// Stored durably: the next open finds schema 2 and migrates nothing.
	s, err = Open(ctx, Options{Dir: dir, Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.Sentinel(); got.Schema != SchemaVersion || len(got.Migrated) != 1 {
		t.Errorf("sentinel on the next open: %+v", got)
	}
}
