package ra

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"ocf-csync/ha"
	"ocf-csync/syncer/engine"
	"ocf-csync/syncer/scan"
	"ocf-csync/syncer/state"
)

// Cycle is one check-and-push run, shared by `sync`, `update` and the
// daemon.
type Cycle struct {
	Check     bool
	Paths     []string
	Recursive bool
	DryRun    bool
	Peers     []string
	Groups    []string
	Progress  io.Writer
	Warn      io.Writer // check warnings; nil logs them
	Blocked   map[string]string
	Parents   []string // directories to check without recursion (watch hints)
	Mark      *state.Handoff
	Handoff   *state.Handoff
	// Connect opens the sessions to the peers; nil: a new SSH session per
	// peer and cycle (Local.Connector).
	Connect engine.Connector
	// Pool, when set, carries the push over sessions kept open between
	// cycles (the daemon's).
	Pool *engine.Pool
	// AllowMassDelete is sync --allow-mass-delete: this run only, never
	// implied by another flag and never set by the daemon.
	AllowMassDelete bool
	// Observe hears each peer's push progress (live lines on a terminal).
	Observe func(engine.PeerProgress)
	// Tally counts the scan live (its line on a terminal).
	Tally *scan.Tally
	// retry: the daemon pushes what is pending to peers that failed,
	// without a scan.
	retry bool
}

// CycleOutcome is what a cycle did.
type CycleOutcome struct {
	Gate   ha.Decision
	Pushed bool // the gate passed and the push ran
	Result engine.Result
}

// RunCycle checks the active-node gate, scans, checks the gate again right
// before the push batch, and pushes. A standby does nothing.
func RunCycle(ctx context.Context, l *Local, st *state.Store, o Cycle) (CycleOutcome, error) {
	log := l.logger()
	gate := l.Gate()
	var out CycleOutcome
	var err error
	if out.Gate, err = gate.Active(ctx); !out.Gate.Active {
		log.Info("not the active node: nothing pushed", "reason", out.Gate.Reason, "err", err)
		return out, nil
	}
	var refused []state.Refusal
	scanned := false
	addRefused := func(rs []state.Refusal) {
		for _, r := range rs {
			if !slices.ContainsFunc(refused, func(x state.Refusal) bool { return x.Key() == r.Key() }) {
				refused = append(refused, r)
			}
		}
	}
	connect := o.Connect
	if connect == nil {
		connect = l.Connector()
	}
	pool, onDirty := o.Pool, (func([]string))(nil)
	if pool == nil && !o.DryRun && (o.Check || len(o.Parents) > 0) {
		// Sessions open while the scan runs, to the peers it finds work
		// for: the push after it pays no SSH handshake or helper start.
		pool = engine.NewPool(l.View, connect, log)
		pool.ForOneRun(time.Minute)
		defer pool.Close()
		onDirty = warmer(pool, o.Peers, o.Blocked)
	}
	if o.Check && !o.DryRun {
		res, err := scan.Check(ctx, st, l.View, o.Paths, o.Recursive || len(o.Paths) == 0, scan.Options{
			Ignore: l.Config.Ignore, Logger: log.With("component", "scan"), AllowMassDelete: o.AllowMassDelete, Tally: o.Tally,
			OnDirty: onDirty,
		})
		if err != nil {
			return out, err
		}
		scanned = true
		addRefused(res.Refused)
		for _, e := range res.Errors {
			if o.Warn != nil {
				fmt.Fprintf(o.Warn, "ocf-csync: warning: %v\n", e)
			} else {
				log.Warn("check", "problem", e.Error())
			}
		}
		log.Debug("check done", "scanned", res.Scanned, "dirtied", res.Dirtied)
	}
	if len(o.Parents) > 0 && !o.DryRun {
		res, err := scan.Check(ctx, st, l.View, o.Parents, false, scan.Options{
			Ignore: l.Config.Ignore, Logger: log.With("component", "scan"), AllowMassDelete: o.AllowMassDelete,
			OnDirty: onDirty,
		})
		if err != nil {
			return out, err
		}
		scanned = true
		addRefused(res.Refused)
	}
	if out.Gate.Gated {
		if out.Gate, err = gate.Active(ctx); !out.Gate.Active {
			log.Info("no longer the active node: nothing pushed", "reason", out.Gate.Reason, "err", err)
			return out, nil
		}
	}
	out.Result, err = engine.Push(ctx, engine.Options{
		View: l.View, Store: st, Connect: connect,
		Pool:  pool,
		Peers: o.Peers, Groups: o.Groups, Paths: append(o.Paths, o.Parents...),
		Recursive: o.Recursive, DryRun: o.DryRun, Log: log, Progress: o.Progress,
		Blocked: o.Blocked, Mark: o.Mark, Handoff: o.Handoff,
		Refusals: refused, Scanned: scanned, AllowMassDelete: o.AllowMassDelete, Observe: o.Observe,
	})
	out.Pushed = err == nil
	for _, r := range out.Result.Fresh {
		event := ha.EventRootRefused
		if r.Kind == state.RefusedMassDelete {
			event = ha.EventMassDeleteRefused
		}
		l.Notify(ctx, event, r.Peer, r.String())
	}
	return out, err
}

// warmer is the scan's OnDirty for a cycle without the daemon's sessions:
// the first path dirtied for a peer opens the session to it (only the
// peers this run may push to: --peers, not blocked by the failover guard).
func warmer(pool *engine.Pool, only []string, blocked map[string]string) func([]string) {
	var mu sync.Mutex
	seen := map[string]bool{}
	return func(peers []string) {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range peers {
			if seen[p] {
				continue
			}
			seen[p] = true
			if _, ok := blocked[p]; ok {
				continue
			}
			if engine.InPeers(only, p) {
				pool.Warm(p)
			}
		}
	}
}
