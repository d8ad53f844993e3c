package tests

import (
	"fmt"
	"os"
	"sort"
	"testing"
	"time"
)

// TestLiveChangeReachesPeers: with the daemon running (watch on, rescans
// 10 minutes apart), a small change, a new directory and a deletion reach
// both peers through inotify hints alone. The latencies are logged
// (DESIGN §11: p50 < 300 ms, p99 < 1 s), not asserted.
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
	if err := os.Remove(data(n1, "seed.txt")); err != nil {
		t.Fatal(err)
	}
	waitAll("seed.txt", "")
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("live change to 2 peers: p50 %v, max %v over %d edits", lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond), len(lat))
}
