package ha

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"ocf-csync/syncer/state"
)

// The failover guard (DESIGN §7): after a takeover without a clean
// handoff, pushes to the previous active node are blocked until a
// reconciliation has compared both sides. The blocked peers live in the
// state store, so they survive a crash and `ocf-csync unblock` works
// whether or not the daemon runs.

// BlockedPeers returns the peers the guard blocks, with why.
func BlockedPeers(st *state.Store) (map[string]string, error) {
	bs, err := st.BlockedPeers()
	if err != nil {
		return nil, fmt.Errorf("read the failover guard: %w", err)
	}
	m := make(map[string]string, len(bs))
	for _, b := range bs {
		m[b.Peer] = b.Reason
	}
	return m, nil
}

// Block blocks pushes to peer until it is reconciled or unblocked.
func Block(st *state.Store, peer, why string) error {
	return st.PutBlocked(state.Blocked{Peer: peer, Reason: why, SinceNs: time.Now().UnixNano()})
}

// Unblock lifts the guard for peer; it fails, naming the blocked peers,
// when peer is not blocked.
func Unblock(st *state.Store, peer string) error {
	g, err := BlockedPeers(st)
	if err != nil {
		return err
	}
	if _, ok := g[peer]; !ok {
		names := make([]string, 0, len(g))
		for p := range g {
			names = append(names, p)
		}
		sort.Strings(names)
		return fmt.Errorf("peer %s is not blocked (blocked: %v)", peer, names)
	}
	return st.DeleteBlocked(peer)
}

// guardFile is where versions before the state store kept the guard.
func guardFile(dir string) string { return filepath.Join(dir, "guard.json") }

// ImportGuardFile moves the blocked peers of an older version's guard.json
// in the state dir into the store, then removes the file.
func ImportGuardFile(st *state.Store, dir string) error {
	data, err := os.ReadFile(guardFile(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read old failover guard %s: %w", guardFile(dir), err)
	}
	g := map[string]string{}
	if err := json.Unmarshal(data, &g); err != nil {
		return fmt.Errorf("read old failover guard %s: %w (fix or remove the file)", guardFile(dir), err)
	}
	for peer, why := range g {
		if err := Block(st, peer, why); err != nil {
			return err
		}
	}
	return os.Remove(guardFile(dir))
}
