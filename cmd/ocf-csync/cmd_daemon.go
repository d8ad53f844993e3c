package main

// DAEMON ENTRY POINT. "ocf-csync daemon" is what the resource agent starts
// (ra.ProcessDaemon, command line in ra.DaemonArgs). This is the minimal
// version: a rescan-and-push loop with a final sync on SIGTERM, reporting
// to the status file the agent's monitor reads (ra.Health). The real daemon
// (active-node gate, failover guard, control socket, node attributes)
// replaces runDaemon and keeps this contract:
//   - write ra.Health{Pid: own pid, State: running} once ready; State failed
//     with Error, then exit non-zero, if it cannot start;
//   - keep the status file current (Conflicts, Stranded, Blocked, Peers);
//   - on SIGTERM finish a final sync by ra.ReadStopDeadline(--stop-file)
//     and exit 0.

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"ocf-csync/ha"
	"ocf-csync/ocf"
	"ocf-csync/ra"
	"ocf-csync/syncer/engine"
	"ocf-csync/syncer/state"
)

// defaultFinalSync bounds the final sync when the agent left no deadline.
const defaultFinalSync = 30 * time.Second

func daemonCommand(env Env) *cli.Command {
	return &cli.Command{
		Name:   "daemon",
		Usage:  "the background sync daemon the resource agent starts (not for interactive use)",
		Hidden: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "status-file", Required: true, Usage: "write the daemon's health here (JSON)"},
			&cli.StringFlag{Name: "stop-file", Usage: "read the final-sync deadline from here on SIGTERM"},
			&cli.Uint64Flag{Name: "epoch", Usage: "the epoch the agent took at start"},
			&cli.IntFlag{Name: "rescan-interval", Usage: "seconds between cycles (default: the config's ha rescan-interval)"},
			// Accepted for the real daemon; the minimal loop does not gate yet.
			&cli.StringFlag{Name: "cluster-ip"},
			&cli.StringFlag{Name: "ip-resource"},
			&cli.StringFlag{Name: "failover-policy"},
			&cli.StringFlag{Name: "stranded"},
			&cli.StringFlag{Name: "notify"},
		},
		Action: func(c *cli.Context) error { return runDaemon(env, c) },
	}
}

func runDaemon(env Env, c *cli.Context) error {
	log := slog.New(ocf.NewLogHandler(ocf.LogOptionsFromEnv(ocf.NewEnv(env.Environ), "mirror", env.Stderr))).
		With("component", "daemon")
	ctx := withLogger(c.Context, log)
	h := ra.Health{Pid: os.Getpid(), State: ra.StateStarting, Epoch: c.Uint64("epoch")}
	report := func() {
		h.Updated = time.Now()
		if err := ra.WriteHealth(c.String("status-file"), h); err != nil {
			log.Error("write status file", "err", err)
		}
	}
	l, err := loadConfig(ctx, c)
	if err != nil {
		h.State, h.Error = ra.StateFailed, err.Error()
		report()
		return err
	}
	interval := l.cfg.HA.RescanInterval
	if s := c.Int("rescan-interval"); s > 0 {
		interval = time.Duration(s) * time.Second
	}
	if err := saveAgentHA(c, l); err != nil {
		log.Warn("record the agent's ha parameters for the CLI", "err", err)
	}
	h.State = ra.StateRunning
	report()
	log.Info("running", "node", l.view.Name, "epoch", h.Epoch, "rescan", interval)
	notify(ctx, c, l, ha.EventStart, "", fmt.Sprintf("daemon started at epoch %d", h.Epoch))

	epoch := c.Uint64("epoch")
	skipFirst := false
	if epoch > 0 {
		if skipFirst, err = takeover(ctx, c, l, epoch); err != nil {
			h.State, h.Error = ra.StateFailed, err.Error()
			report()
			return err
		}
	}
	first := true
	run := func(ctx context.Context, o cycle) engine.Result {
		if first && epoch > 0 {
			o.mark = &state.Handoff{Epoch: epoch, From: l.view.Name, UpToNs: time.Now().UnixNano()}
		}
		if first && skipFirst {
			first = false
			log.Info("failover-policy skip-first: first sync after takeover skipped")
			return engine.Result{}
		}
		first = false
		res, err := daemonPush(ctx, c, l, &h, o)
		now := time.Now()
		h.LastSync, h.LastError = now, ""
		if err != nil {
			h.LastError = err.Error()
			log.Warn("sync cycle failed", "err", err)
		}
		for _, p := range res.Peers {
			i := slices.IndexFunc(h.Peers, func(ph ra.PeerHealth) bool { return ph.Name == p.Peer })
			if i < 0 {
				h.Peers = append(h.Peers, ra.PeerHealth{Name: p.Peer})
				i = len(h.Peers) - 1
			}
			ph := &h.Peers[i]
			if p.Err != nil {
				if ph.FailingSince.IsZero() {
					ph.FailingSince = now
					notify(ctx, c, l, ha.EventPeerUnreachable, p.Peer, p.Err.Error())
				}
				ph.Error = p.Err.Error()
				log.Warn("push failed", "peer", p.Peer, "err", p.Err)
			} else {
				ph.LastOK, ph.FailingSince, ph.Error = now, time.Time{}, ""
			}
		}
		report()
		return res
	}
	var changes <-chan []string
	if haConfig(c, l).Watch {
		if changes, err = watchTrees(ctx, l.view, log); err != nil {
			log.Warn("no live watch; relying on rescans", "err", err)
		}
		h.Watch = changes != nil
		report()
	}
	now := make(chan os.Signal, 1)
	signal.Notify(now, syscall.SIGUSR1) // `ocf-csync sync` from cron: sync now
	defer signal.Stop(now)
	run(ctx, cycle{})
	t := time.NewTicker(interval)
	defer t.Stop()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-t.C:
			run(ctx, cycle{})
		case <-now:
			run(ctx, cycle{})
		case batch, ok := <-changes:
			switch {
			case !ok:
				changes = nil
			case batch == nil:
				run(ctx, cycle{})
			default:
				run(ctx, cycle{paths: batch, parents: parentsOf(batch)})
			}
		}
	}

	// SIGTERM: one final sync, bounded by the agent's deadline.
	h.State = ra.StateStopping
	report()
	deadline, ok := ra.ReadStopDeadline(c.String("stop-file"))
	if !ok {
		deadline = time.Now().Add(defaultFinalSync)
	}
	fctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	begin := time.Now()
	res := run(fctx, cycle{handoff: &state.Handoff{Epoch: epoch, From: l.view.Name, Clean: true, UpToNs: time.Now().UnixNano()}})
	log.Info("final sync done", "took", time.Since(begin).Round(time.Millisecond), "err", h.LastError)
	// A peer the final sync did not bring fully up to date has no handoff:
	// its next takeover is guarded. Say so now (never fail the stop).
	handedOff := map[string]bool{}
	for _, p := range res.Peers {
		handedOff[p.Peer] = p.HandedOff
	}
	for _, p := range engine.AllPeers(l.view) {
		if handedOff[p] {
			continue
		}
		why := "the final sync did not reach it"
		if h.Role != "active" {
			why = "the final sync was skipped: " + h.RoleWhy
		}
		for _, r := range res.Peers {
			if r.Peer == p && r.Err != nil {
				why = r.Err.Error()
			}
		}
		log.Warn("no clean handoff; the next takeover will be guarded", "peer", p, "why", why)
		notify(fctx, c, l, ha.EventFinalSyncIncomplete, p, why)
	}
	defer notify(context.WithoutCancel(ctx), c, l, ha.EventStop, "", fmt.Sprintf("daemon stopped at epoch %d", epoch))
	h.State = ra.StateStopped
	report()
	return nil
}

// daemonPush is one cycle under the run lock: the failover guard's
// reconciliation, the gate, a check of every root, the gate again, and the
// push, as `ocf-csync sync` does.
func daemonPush(ctx context.Context, c *cli.Context, l *loaded, h *ra.Health, o cycle) (engine.Result, error) {
	log := logger(ctx)
	dir := stateDir(c, l.path)
	lock, err := takeRunLock(dir)
	if err != nil {
		return engine.Result{}, err
	}
	defer lock.release()
	st, err := openStore(ctx, c, l, false)
	if err != nil {
		return engine.Result{}, err
	}
	defer st.Close()
	guard, err := loadGuard(dir)
	if err != nil {
		return engine.Result{}, err
	}
	if len(guard) > 0 {
		if d, _ := ha.NewGate(haConfig(c, l), nil, log).Active(ctx); d.Active {
			reconcileGuarded(ctx, c, l, st, guard)
		}
	}
	h.Blocked = h.Blocked[:0]
	for p := range guard {
		h.Blocked = append(h.Blocked, p)
	}
	sort.Strings(h.Blocked)
	o.check, o.recursive, o.blocked = true, true, guard
	out, err := runCycle(ctx, c, l, st, o)
	if out.pushed || !out.gate.Active {
		h.Refusals = out.res.Refusals // monitor reports them as degraded
	}
	h.Role, h.RoleWhy, h.IPHolder = "standby", out.gate.Reason, out.gate.IPHolder
	h.PacemakerSeen = out.gate.PacemakerPresent
	if out.gate.Active {
		h.Role = "active"
	}
	h.Conflicts, h.Stranded = 0, 0
	_ = st.Conflicts(func(state.Conflict) error { h.Conflicts++; return nil })
	_ = st.StrandedList(func(state.Stranded) error { h.Stranded++; return nil })
	publishAttributes(ctx, st, h)
	if err != nil {
		return out.res, err
	}
	return out.res, out.res.Err()
}

// reconcileGuarded compares every blocked peer it can reach and lifts the
// guard for it once each difference is sorted (DESIGN §7).
func reconcileGuarded(ctx context.Context, c *cli.Context, l *loaded, st *state.Store, guard map[string]string) {
	log := logger(ctx)
	policy := haConfig(c, l).Stranded
	changed := false
	for peer := range guard {
		r, err := engine.Reconcile(ctx, engine.CompareOptions{
			View: l.view, Connect: engine.SSHConnector(l.cfg, l.path, log), Ignore: l.cfg.Ignore, Log: log,
		}, st, peer, policy)
		if err != nil {
			log.Warn("failover guard: cannot reconcile yet; pushes stay blocked", "peer", peer, "err", err)
			continue
		}
		log.Info("failover guard: reconciled", "peer", peer, "push", len(r.Push), "stranded", len(r.Stranded), "conflicts", len(r.Conflicts))
		if policy == engine.StrandedPull {
			for _, p := range r.Stranded {
				if err := takeRemote(ctx, l, st, peer, p); err != nil {
					log.Warn("stranded pull failed; the change stays recorded", "peer", peer, "path", p, "err", err)
					continue
				}
				_ = st.DeleteStranded(peer, p)
			}
		}
		if len(r.Stranded) > 0 {
			notify(ctx, c, l, ha.EventStranded, peer, fmt.Sprintf("%d stranded change(s), first: %s", len(r.Stranded), r.Stranded[0]))
		}
		if len(r.Conflicts) > 0 {
			notify(ctx, c, l, ha.EventConflict, peer, fmt.Sprintf("%d conflict(s) after failover, first: %s", len(r.Conflicts), r.Conflicts[0]))
		}
		delete(guard, peer)
		changed = true
	}
	if changed {
		if err := saveGuard(stateDir(c, l.path), guard); err != nil {
			log.Error("save failover guard", "err", err)
		}
	}
}

// publishAttributes keeps csync-pending and csync-conflicts current as
// transient node attributes, so `crm_mon -A` shows them. Without Pacemaker
// it does nothing.
func publishAttributes(ctx context.Context, st *state.Store, h *ra.Health) {
	if !h.PacemakerSeen {
		return
	}
	pending := 0
	if peers, err := st.DirtyPeers(); err == nil {
		for _, p := range peers {
			n, _ := st.DirtyCount(p)
			pending += n
		}
	}
	pcmk := ha.NewCLI()
	for name, v := range map[string]int{"csync-pending": pending, "csync-conflicts": h.Conflicts} {
		if err := pcmk.SetNodeAttribute(ctx, "", name, strconv.Itoa(v), ha.Reboot); err != nil {
			logger(ctx).Debug("publish node attribute", "name", name, "err", err)
		}
	}
}

// parentsOf lists the directories holding paths: their mtimes changed too.
func parentsOf(paths []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range paths {
		d := filepath.Dir(p)
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}
