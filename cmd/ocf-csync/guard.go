package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/urfave/cli/v2"

	"ocf-csync/ha"
	"ocf-csync/syncer/state"
)

// The failover guard's blocked peers live in a small file in the state
// dir, so `ocf-csync unblock` works whether or not the daemon runs.
func guardPath(dir string) string { return filepath.Join(dir, "guard.json") }

func loadGuard(dir string) (map[string]string, error) {
	data, err := os.ReadFile(guardPath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read failover guard %s: %w", guardPath(dir), err)
	}
	g := map[string]string{}
	if err := json.Unmarshal(data, &g); err != nil {
		return nil, fmt.Errorf("read failover guard %s: %w (fix or remove the file)", guardPath(dir), err)
	}
	return g, nil
}

func saveGuard(dir string, g map[string]string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	data, _ := json.MarshalIndent(g, "", "  ")
	tmp := guardPath(dir) + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, guardPath(dir))
}

// previousActive is the other node with the highest epoch in the handoff
// records (clean or "I am active" marks) and, when Pacemaker answers, in
// the csync-epoch node attributes.
func previousActive(ctx context.Context, hs []state.Handoff, self string) string {
	best, bestE := "", uint64(0)
	for _, h := range hs {
		if h.From != self && h.Epoch > bestE {
			best, bestE = h.From, h.Epoch
		}
	}
	// This node already published its new epoch (the agent's start), so
	// the previous active node is the other node with the highest epoch.
	if attrs, err := ha.NewCLI().NodeAttributes(ctx, ha.EpochAttribute); err == nil {
		names := make([]string, 0, len(attrs))
		for n := range attrs {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			e, err := strconv.ParseUint(attrs[n], 10, 64)
			if err == nil && n != self && e > bestE {
				best, bestE = n, e
			}
		}
	}
	return best
}

// takeover applies the failover policy when the daemon starts at epoch:
// it returns whether the first sync is to be skipped, and blocks the
// previous active node (guard) unless it handed off cleanly.
func takeover(ctx context.Context, c *cli.Context, l *loaded, epoch uint64) (skipFirst bool, err error) {
	log := logger(ctx)
	st, err := openStore(ctx, c, l, false)
	if err != nil {
		return false, err
	}
	hs, err := st.Handoffs()
	if err == nil {
		// The agent recorded it already; a daemon started by hand records it here.
		if cur, gerr := st.Epoch(); gerr == nil && cur < epoch {
			err = st.SetEpoch(epoch)
		}
	}
	st.Close()
	if err != nil {
		return false, err
	}
	h := haConfig(c, l)
	prev := previousActive(ctx, hs, l.view.Name)
	f := ha.FailoverDecision(hs, epoch, prev, h.FailoverPolicy)
	log.Info("takeover", "epoch", epoch, "previous", prev, "decision", f.Reason)
	if f.Clean || len(f.Guarded) == 0 {
		return f.SkipFirst, nil
	}
	dir := stateDir(c, l.path)
	g, err := loadGuard(dir)
	if err != nil {
		return false, err
	}
	for _, p := range f.Guarded {
		g[p] = f.Reason
		notify(ctx, c, l, ha.EventTakeoverUnclean, p, f.Reason)
	}
	return f.SkipFirst, saveGuard(dir, g)
}

func unblockCommand(env Env) *cli.Command {
	return &cli.Command{
		Name:      "unblock",
		Usage:     "lift the failover guard for a peer: pushes to it resume (review 'ocf-csync status' first)",
		ArgsUsage: "PEER",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("unblock needs one PEER")
			}
			l, err := loadConfig(c.Context, c)
			if err != nil {
				return err
			}
			dir := stateDir(c, l.path)
			g, err := loadGuard(dir)
			if err != nil {
				return err
			}
			peer := c.Args().First()
			if _, ok := g[peer]; !ok {
				var names []string
				for p := range g {
					names = append(names, p)
				}
				sort.Strings(names)
				return fmt.Errorf("peer %s is not blocked (blocked: %v)", peer, names)
			}
			delete(g, peer)
			if err := saveGuard(dir, g); err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "pushes to %s resume with the next sync\n", peer)
			return nil
		},
	}
}
