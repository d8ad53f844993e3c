package state

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// lowSpace makes every file system look full (below MinFree) for one test.
func lowSpace(t *testing.T) func() {
	t.Helper()
	old := MinFree
	MinFree = 1 << 62
	restore := func() { MinFree = old }
	t.Cleanup(restore)
	return restore
}

// A full state disk: badger writes through mmap, where a full disk is a
// SIGBUS, so nothing is written below MinFree; the DB still reads (never
// as empty), every write says why it failed, and it works again once there
// is room.
func TestFullStateDisk(t *testing.T) {
	ctx := context.Background()
	isNoSpace := func(err error) bool {
		return errors.Is(err, ErrNoSpace) && strings.Contains(err.Error(), "file system is too full") &&
			strings.Contains(err.Error(), "free space there")
	}
	t.Run("at open", func(t *testing.T) {
		dir := t.TempDir()
		fill(t, dir, 10)
		restore := lowSpace(t)
		s, err := Open(ctx, Options{Dir: dir, Node: "n1"})
		if err != nil {
			t.Fatalf("Open on a full disk: %v (want a read-only store)", err)
		}
		if n, err := s.CountFiles(); n != 10 || err != nil {
			t.Errorf("CountFiles on a full disk = %d, %v", n, err)
		}
		b := s.NewBatch()
		b.PutFile("/x", reg(1, 1))
		if err := b.Commit(); !isNoSpace(err) {
			t.Errorf("Commit on a full disk = %v", err)
		}
		if err := s.SetEpoch(3); !isNoSpace(err) {
			t.Errorf("SetEpoch on a full disk = %v", err)
		}
		if err := s.Writable(); !isNoSpace(err) {
			t.Errorf("Writable = %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(ctx, Options{Dir: t.TempDir(), Node: "n1"}); !isNoSpace(err) {
			t.Errorf("Open of a new DB on a full disk = %v", err)
		}
		if _, err := Open(ctx, Options{Dir: dir, Node: "n1", AllowRebuild: true}); !isNoSpace(err) {
			t.Errorf("rebuild on a full disk = %v", err)
		}
		restore()
		s = openT(t, dir)
		if n, _ := s.CountFiles(); n != 10 {
			t.Errorf("after the disk had room again: %d files", n)
		}
		if err := s.SetEpoch(3); err != nil {
			t.Error(err)
		}
	})
	t.Run("while open", func(t *testing.T) {
		dir := t.TempDir()
		s := openT(t, dir)
		b := s.NewBatch()
		b.PutFile("/a", reg(1, 1))
		if err := b.CommitDurable(); err != nil {
			t.Fatal(err)
		}
		restore := lowSpace(t)
		b = s.NewBatch()
		b.PutFile("/b", reg(2, 2))
		if err := b.Commit(); !isNoSpace(err) {
			t.Errorf("Commit after the disk filled = %v", err)
		}
		// Close must not flush through mmap; the same process opens the
		// directory again (a daemon does every cycle) and reads it.
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s2, err := Open(ctx, Options{Dir: dir, Node: "n1"})
		if err != nil {
			t.Fatalf("reopen in the same process on a full disk: %v", err)
		}
		if _, ok, err := s2.GetFile("/a"); !ok || err != nil {
			t.Errorf("/a after reopen: %v %v", ok, err)
		}
		s2.Close()
		restore()
		s3 := openT(t, dir)
		if _, ok, err := s3.GetFile("/a"); !ok || err != nil {
			t.Errorf("/a once there is room: %v %v", ok, err)
		}
		b = s3.NewBatch()
		b.PutFile("/b", reg(2, 2))
		if err := b.CommitDurable(); err != nil {
			t.Error(err)
		}
	})
}
