package state

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// startHolder runs the test binary as a process that opens dir and holds it.
func startHolder(t *testing.T, dir string) (*exec.Cmd, io.WriteCloser) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holdEnv+"="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("holder: %q %v", line, err)
	}
	return cmd, stdin
}

// An owner that dies without closing the DB (kill -9) leaves a record the
// next owner finds (its writes may be on disk unrecorded, its temp files
// left); a clean close leaves none.
func TestUncleanEnd(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	open := func() *Store {
		s, err := Open(context.Background(), Options{Dir: dir, Node: "holder"})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	b := s.NewBatch()
	b.PutFile("/a", reg(1, 1))
	if err := b.CommitDurable(); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Unclean(); ok || err != nil {
		t.Fatalf("Unclean of a new DB: %v %v", ok, err)
	}
	s.Close()
	// A holder that closes cleanly leaves no record.
	cmd, stdin := startHolder(t, dir)
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	s = open()
	if _, ok, err := s.Unclean(); ok || err != nil {
		t.Fatalf("Unclean after a clean close: %v %v", ok, err)
	}
	s.Close()

	cmd, _ = startHolder(t, dir)
	pid := cmd.Process.Pid
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	before := time.Now()
	s = open()
	u, ok, err := s.Unclean()
	if !ok || err != nil || u.PID != pid || u.Since.IsZero() || u.FoundAt.Before(before.Add(-time.Second)) {
		t.Fatalf("Unclean after kill -9 of pid %d: %+v %v %v", pid, u, ok, err)
	}
	if !s.OwnedSince().After(u.Since) {
		t.Errorf("OwnedSince %v is not after the dead owner's %v", s.OwnedSince(), u.Since)
	}
	s.Close()
	// It stays until cleared, across clean owners.
	s = open()
	defer s.Close()
	if _, ok, _ := s.Unclean(); !ok {
		t.Fatal("the record went away before it was cleared")
	}
	if err := s.ClearUnclean(); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Unclean(); ok {
		t.Error("the record stays after ClearUnclean")
	}
	if n, _ := s.CountFiles(); n != 1 {
		t.Errorf("%d files after the unclean end, want 1", n)
	}
}
