package ra

import (
	"context"
	"errors"
	"testing"
	"time"

	"ocf-csync/syncer/config"
	"ocf-csync/syncer/state"
)

// A command waiting for the state database while a daemon starts and takes
// it goes to the daemon instead of waiting out its lock timeout; without a
// daemon it waits the whole timeout and says who holds the database.
func TestOpenStoreDaemonUp(t *testing.T) {
	dir := t.TempDir()
	holder, err := state.Open(context.Background(), state.Options{Dir: dir, Node: "node1"})
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	for _, up := range []bool{true, false} {
		asked := 0
		l := &Local{View: &config.NodeView{Name: "node1"}, StateDir: dir, LockTimeout: 2 * time.Second,
			DaemonUp: func() bool { asked++; return up && asked == 3 }}
		begin := time.Now()
		st, err := l.OpenStore(context.Background(), false)
		took := time.Since(begin)
		if st != nil {
			st.Close()
			t.Fatalf("up=%v: opened a store another process holds", up)
		}
		var le *state.LockedError
		switch {
		case up && !errors.Is(err, ErrDaemonUp):
			t.Errorf("a daemon answered: err = %v, want ErrDaemonUp", err)
		case up && took >= l.LockTimeout:
			t.Errorf("a daemon answered, yet the command waited %v (the whole lock timeout)", took)
		case !up && !errors.As(err, &le):
			t.Errorf("no daemon: err = %v, want a LockedError", err)
		case !up && (le.Waited < l.LockTimeout || took < l.LockTimeout):
			t.Errorf("no daemon: gave up after %v (reported %v), want the lock timeout %v", took, le.Waited, l.LockTimeout)
		}
	}
}
