package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestLiveChangeReachesPeers: with the daemon running (watch on, rescans
// 10 minutes apart), a small change, a new directory and a deletion reach
// both peers through inotify hints alone, over one session per peer kept
// open (one serve per peer for all the edits), while each peer's own
// status and check take its state database beside the open session. The
// latencies are logged (DESIGN §11: p50 < 100 ms, p99 < 500 ms), not
// asserted.
func TestLiveChangeReachesPeers(t *testing.T) {
	e := newEnv(t, 3)
	n1, n2, n3 := e.node(1), e.node(2), e.node(3)
	e.writeFile(n1, dataDir+"/seed.txt", "seed\n", 0o644)
	e.startDaemon(n1)

	waitAll := func(rel, want string) time.Duration {
		t.Helper()
		start := time.Now()
		for time.Since(start) < 10*time.Second {
			ok := true
			for _, n := range []string{data(n2, rel), data(n3, rel)} {
				got, err := os.ReadFile(n)
				if want == "" {
					ok = ok && os.IsNotExist(err)
				} else {
					ok = ok && err == nil && string(got) == want
				}
			}
			if ok {
				return time.Since(start)
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("%s did not reach both peers within 10 s (want %q)", rel, want)
		return 0
	}
	var lat []time.Duration
	for i := range 10 {
		body := fmt.Sprintf("edit %d\n", i)
		if err := os.WriteFile(data(n1, "live.txt"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		lat = append(lat, waitAll("live.txt", body))
	}
	if err := os.MkdirAll(data(n1, "newdir/sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(data(n1, "newdir/sub/f.txt"), []byte("deep\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitAll("newdir/sub/f.txt", "deep\n")
	// The sessions stay open between cycles: one serve per peer carried
	// every edit so far.
	for _, n := range []string{n2.Name, n3.Name} {
		if pids := servesFor(t, n); len(pids) != 1 {
			t.Errorf("%s runs %d serve processes after 11 live changes, want the 1 of the open session", n, len(pids))
		}
	}
	// A peer's own commands do not wait behind the open session: it takes
	// the state db per batch, not for the session.
	for _, args := range [][]string{{"status"}, {"check"}} {
		start := time.Now()
		r := e.csync(n2, append([]string{"--lock-timeout", "2"}, args...)...)
		if r.code != 0 {
			t.Fatalf("%s on node2 while node1's session is open:\n%s", args[0], r)
		}
		t.Logf("%s on node2 beside the open session took %v", args[0], time.Since(start).Round(time.Millisecond))
	}
	if err := os.Remove(data(n1, "seed.txt")); err != nil {
		t.Fatal(err)
	}
	waitAll("seed.txt", "")
	if pids := servesFor(t, n2.Name); len(pids) != 1 {
		t.Errorf("node2 runs %d serve processes after its own check, want the 1 of the open session", len(pids))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("live change to 2 peers: p50 %v, max %v over %d edits", lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond), len(lat))
}

// servesFor lists the pids of `ocf-csync serve` processes of this test's
// binary running as node (the remote helper of a session to it).
func servesFor(t *testing.T, node string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if len(args) > 1 && args[0] == binary && slices.Contains(args, "serve") && slices.Contains(args, node) {
			pids = append(pids, pid)
		}
	}
	return pids
}
