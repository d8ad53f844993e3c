package ra

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"ocf-csync/syncer/config"
	"ocf-csync/syncer/engine"
)

// The scan's warm-up opens sessions only to peers this run may push to:
// not to a peer the failover guard blocks, not outside --peers (any case),
// once per peer however many paths it hears.
func TestWarmerOnlyPushablePeers(t *testing.T) {
	cfg, err := config.Parse("t.cfg", []byte("group g { host node1 node2 node3 node4; key /dev/null; include /srv/x; }\n"))
	if err != nil {
		t.Fatal(err)
	}
	view, err := cfg.Node("node1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		only    []string
		blocked map[string]string
		want    []string
	}{
		{"all", nil, nil, []string{"node2", "node3", "node4"}},
		{"blocked", nil, map[string]string{"node3": "failover guard"}, []string{"node2", "node4"}},
		{"--peers", []string{"NODE4"}, nil, []string{"node4"}},
		{"--peers and blocked", []string{"node2", "node3"}, map[string]string{"node2": "guard"}, []string{"node3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var dialed []string
			connect := func(ctx context.Context, h config.Host) (engine.Channel, error) {
				mu.Lock()
				defer mu.Unlock()
				dialed = append(dialed, h.Name)
				return nil, errors.New("refused")
			}
			pool := engine.NewPool(view, connect, nil)
			on := warmer(pool, tc.only, tc.blocked)
			for range 3 {
				on([]string{"node2", "node3", "node4"})
			}
			pool.Close() // waits for the dials Warm started
			mu.Lock()
			defer mu.Unlock()
			slices.Sort(dialed)
			if !slices.Equal(dialed, tc.want) {
				t.Errorf("dialed %v, want %v", dialed, tc.want)
			}
		})
	}
}
