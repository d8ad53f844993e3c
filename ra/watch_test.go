package ra

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"ocf-csync/syncer/config"
)

func watchView(t *testing.T) (*config.NodeView, string) {
	t.Helper()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "key")
	if err := os.WriteFile(key, []byte("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ._\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "test.cfg")
	text := fmt.Sprintf("group g {\n  host a b;\n  key %s;\n  include %s;\n}\n", key, data)
	if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	v, err := cfg.Node("a")
	if err != nil {
		t.Fatal(err)
	}
	return v, data
}

// A single change goes within tens of milliseconds; changes made while the
// daemon has not taken the batch join it; a steady burst is cut at
// watchMaxDelay.
func TestWatchCoalescing(t *testing.T) {
	defer func(d time.Duration) { watchMaxDelay = d }(watchMaxDelay)
	watchMaxDelay = 300 * time.Millisecond
	view, data := watchView(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	batches, err := watchTrees(ctx, view, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		for range batches { // the watcher is gone before its timing is restored
		}
	}()
	write := func(name string) {
		if err := os.WriteFile(filepath.Join(data, name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	next := func() ([]string, time.Duration) {
		t.Helper()
		start := time.Now()
		select {
		case b := <-batches:
			return b, time.Since(start)
		case <-time.After(5 * time.Second):
			t.Fatal("no batch within 5 s")
		}
		return nil, 0
	}

	write("one")
	b, took := next()
	if !slices.Contains(b, filepath.Join(data, "one")) {
		t.Fatalf("batch %v lacks the changed file", b)
	}
	if took > time.Second { // generous: the machine may be loaded
		t.Errorf("a single change took %v to come out (quiet window %v)", took, watchQuiet)
	}

	// The daemon is busy: changes wait in one batch, each path once.
	write("two")
	time.Sleep(3 * watchQuiet)
	write("three")
	write("two")
	time.Sleep(3 * watchQuiet)
	b, _ = next()
	want := []string{filepath.Join(data, "three"), filepath.Join(data, "two")}
	slices.Sort(b)
	if !slices.Equal(b, want) {
		t.Fatalf("batch while busy = %v, want %v", b, want)
	}

	// A steady burst (a change every 5 ms, under the quiet window) is cut
	// at watchMaxDelay, long before the burst ends.
	stop := time.Now().Add(10 * watchMaxDelay)
	start := time.Now()
	go func() {
		for i := 0; time.Now().Before(stop); i++ {
			write(fmt.Sprintf("burst%d", i%20))
			time.Sleep(5 * time.Millisecond)
		}
	}()
	_, took = next()
	if took := time.Since(start); took > 5*watchMaxDelay {
		t.Errorf("first batch of a burst came after %v, want at most about %v", took, watchMaxDelay)
	}
	time.Sleep(time.Until(stop) + 100*time.Millisecond)
}
