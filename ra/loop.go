package ra

// The long-running sync daemon ("ocf-csync daemon"), started by the agent
// (ProcessDaemon, command line in DaemonArgs). Its contract with the agent:
//   - write Health{Pid: own pid, State: running} once ready; State failed
//     with Error, then exit non-zero, if it cannot start;
//   - keep the status file current (Conflicts, Stranded, Blocked, Peers);
//   - on SIGTERM (ctx ends) finish a final sync by ReadStopDeadline(StopFile)
//     and return nil.

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"ocf-csync/ha"
	"ocf-csync/syncer/engine"
	"ocf-csync/syncer/state"
)

// DefaultFinalSync bounds the final sync when the agent left no deadline.
const DefaultFinalSync = 30 * time.Second

// DaemonOptions are the daemon's command-line settings.
type DaemonOptions struct {
	StatusFile     string        // Health goes here (JSON)
	StopFile       string        // the final-sync deadline is read from here on SIGTERM
	Epoch          uint64        // the epoch the agent took at start
	RescanInterval time.Duration // 0: the config's ha rescan-interval
}

// daemon is one run of the sync daemon.
type daemon struct {
	l     *Local
	o     DaemonOptions
	h     Health
	epoch uint64
	// connect opens the per-peer sessions of every push. It is the seam
	// for persistent sessions: a pool that keeps them open between cycles
	// replaces it here.
	connect engine.Connector
}

// RunDaemon runs the daemon until ctx ends, then runs the final sync.
func RunDaemon(ctx context.Context, l *Local, o DaemonOptions) error {
	d := &daemon{l: l, o: o, epoch: o.Epoch,
		h: Health{Pid: os.Getpid(), State: StateStarting, Epoch: o.Epoch}}
	log := l.logger()
	interval := l.Config.HA.RescanInterval
	if o.RescanInterval > 0 {
		interval = o.RescanInterval
	}
	if err := l.SaveOverrides(); err != nil {
		log.Warn("record the agent's ha parameters for the CLI", "err", err)
	}
	d.connect = l.Connector()
	d.h.State = StateRunning
	d.report()
	log.Info("running", "node", l.View.Name, "epoch", d.epoch, "rescan", interval)
	l.Notify(ctx, ha.EventStart, "", fmt.Sprintf("daemon started at epoch %d", d.epoch))

	skipFirst := false
	if d.epoch > 0 {
		var err error
		if skipFirst, err = d.takeover(ctx); err != nil {
			return d.fail(err)
		}
	}
	first := true
	run := func(ctx context.Context, c Cycle) engine.Result {
		if first && d.epoch > 0 {
			c.Mark = &state.Handoff{Epoch: d.epoch, From: l.View.Name, UpToNs: time.Now().UnixNano()}
		}
		if first && skipFirst {
			first = false
			log.Info("failover-policy skip-first: first sync after takeover skipped")
			return engine.Result{}
		}
		first = false
		return d.cycle(ctx, c)
	}
	var changes <-chan []string
	if l.HA().Watch {
		var err error
		if changes, err = watchTrees(ctx, l.View, log); err != nil {
			log.Warn("no live watch; relying on rescans", "err", err)
		}
		d.h.Watch = changes != nil
		d.report()
	}
	now := make(chan os.Signal, 1)
	signal.Notify(now, syscall.SIGUSR1) // `ocf-csync sync` from cron: sync now
	defer signal.Stop(now)
	run(ctx, Cycle{})
	t := time.NewTicker(interval)
	defer t.Stop()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-t.C:
			run(ctx, Cycle{})
		case <-now:
			run(ctx, Cycle{})
		case batch, ok := <-changes:
			switch {
			case !ok:
				changes = nil
			case batch == nil:
				run(ctx, Cycle{})
			default:
				run(ctx, Cycle{Paths: batch, Parents: parentsOf(batch)})
			}
		}
	}
	d.finalSync(ctx, run)
	return nil
}

func (d *daemon) report() {
	d.h.Updated = time.Now()
	if err := WriteHealth(d.o.StatusFile, d.h); err != nil {
		d.l.logger().Error("write status file", "err", err)
	}
}

func (d *daemon) fail(err error) error {
	d.h.State, d.h.Error = StateFailed, err.Error()
	d.report()
	return err
}

// takeover applies the failover policy at the daemon's epoch: it returns
// whether the first sync is to be skipped, and blocks the previous active
// node (guard) unless it handed off cleanly.
func (d *daemon) takeover(ctx context.Context) (skipFirst bool, err error) {
	st, err := d.l.OpenStore(ctx, false)
	if err != nil {
		return false, err
	}
	defer st.Close()
	f, prev, err := ha.Takeover(ctx, st, ha.NewCLI(), d.l.View.Name, d.epoch, d.l.HA().FailoverPolicy)
	if err != nil {
		return false, err
	}
	d.l.logger().Info("takeover", "epoch", d.epoch, "previous", prev, "decision", f.Reason)
	for _, p := range f.Guarded {
		d.l.Notify(ctx, ha.EventTakeoverUnclean, p, f.Reason)
	}
	return f.SkipFirst, st.Close()
}

// cycle runs one cycle and records its outcome in the status file.
func (d *daemon) cycle(ctx context.Context, c Cycle) engine.Result {
	log := d.l.logger()
	res, err := d.push(ctx, c)
	now := time.Now()
	d.h.LastSync, d.h.LastError = now, ""
	if err != nil {
		d.h.LastError = err.Error()
		log.Warn("sync cycle failed", "err", err)
	}
	for _, p := range res.Peers {
		i := slices.IndexFunc(d.h.Peers, func(ph PeerHealth) bool { return ph.Name == p.Peer })
		if i < 0 {
			d.h.Peers = append(d.h.Peers, PeerHealth{Name: p.Peer})
			i = len(d.h.Peers) - 1
		}
		ph := &d.h.Peers[i]
		if p.Err != nil {
			if ph.FailingSince.IsZero() {
				ph.FailingSince = now
				d.l.Notify(ctx, ha.EventPeerUnreachable, p.Peer, p.Err.Error())
			}
			ph.Error = p.Err.Error()
			log.Warn("push failed", "peer", p.Peer, "err", p.Err)
		} else {
			ph.LastOK, ph.FailingSince, ph.Error = now, time.Time{}, ""
		}
	}
	d.report()
	return res
}

// push is one cycle under the run lock: the failover guard's
// reconciliation, the gate, a check of every root, the gate again, and the
// push, as `ocf-csync sync` does.
func (d *daemon) push(ctx context.Context, c Cycle) (engine.Result, error) {
	l := d.l
	lock, err := l.TakeRunLock()
	if err != nil {
		return engine.Result{}, err
	}
	defer lock.Release()
	st, err := l.OpenStore(ctx, false)
	if err != nil {
		return engine.Result{}, err
	}
	defer st.Close()
	guard, err := ha.BlockedPeers(st)
	if err != nil {
		return engine.Result{}, err
	}
	if len(guard) > 0 {
		if g, _ := l.Gate().Active(ctx); g.Active {
			ha.ReconcileGuarded(ctx, ha.GuardOptions{
				Compare: engine.CompareOptions{View: l.View, Connect: d.connect, Ignore: l.Config.Ignore, Log: l.logger()},
				Store:   st, Policy: l.HA().Stranded, TempDir: l.Config.Tempdir,
				Notify: func(event, peer, detail string) { l.Notify(ctx, event, peer, detail) },
			})
			if guard, err = ha.BlockedPeers(st); err != nil {
				return engine.Result{}, err
			}
		}
	}
	d.h.Blocked = d.h.Blocked[:0]
	for p := range guard {
		d.h.Blocked = append(d.h.Blocked, p)
	}
	slices.Sort(d.h.Blocked)
	c.Check, c.Recursive, c.Blocked, c.Connect = true, true, guard, d.connect
	out, err := RunCycle(ctx, l, st, c)
	if out.Pushed || !out.Gate.Active {
		d.h.Refusals = out.Result.Refusals // monitor reports them as degraded
	}
	d.h.Role, d.h.RoleWhy, d.h.IPHolder = "standby", out.Gate.Reason, out.Gate.IPHolder
	d.h.PacemakerSeen = out.Gate.PacemakerPresent
	if out.Gate.Active {
		d.h.Role = "active"
	}
	d.h.Conflicts, d.h.Stranded = 0, 0
	_ = st.Conflicts(func(state.Conflict) error { d.h.Conflicts++; return nil })
	_ = st.StrandedList(func(state.Stranded) error { d.h.Stranded++; return nil })
	d.publish(ctx, st)
	if err != nil {
		return out.Result, err
	}
	return out.Result, out.Result.Err()
}

// publish keeps csync-pending and csync-conflicts current as transient
// node attributes, so `crm_mon -A` shows them. Without Pacemaker it does
// nothing.
func (d *daemon) publish(ctx context.Context, st *state.Store) {
	if !d.h.PacemakerSeen {
		return
	}
	pending := 0
	if peers, err := st.DirtyPeers(); err == nil {
		for _, p := range peers {
			n, _ := st.DirtyCount(p)
			pending += n
		}
	}
	if err := ha.PublishCounts(ctx, ha.NewCLI(), pending, d.h.Conflicts); err != nil {
		d.l.logger().Debug("publish node attributes", "err", err)
	}
}

// finalSync is the stop: one last cycle bounded by the agent's deadline,
// writing the clean handoff on every peer it brings fully up to date.
func (d *daemon) finalSync(ctx context.Context, run func(context.Context, Cycle) engine.Result) {
	l, log := d.l, d.l.logger()
	d.h.State = StateStopping
	d.report()
	deadline, ok := ReadStopDeadline(d.o.StopFile)
	if !ok {
		deadline = time.Now().Add(DefaultFinalSync)
	}
	fctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	begin := time.Now()
	res := run(fctx, Cycle{Handoff: &state.Handoff{Epoch: d.epoch, From: l.View.Name, Clean: true, UpToNs: time.Now().UnixNano()}})
	log.Info("final sync done", "took", time.Since(begin).Round(time.Millisecond), "err", d.h.LastError)
	// A peer the final sync did not bring fully up to date has no handoff:
	// its next takeover is guarded. Say so now (never fail the stop).
	handedOff := map[string]bool{}
	for _, p := range res.Peers {
		handedOff[p.Peer] = p.HandedOff
	}
	for _, p := range engine.AllPeers(l.View) {
		if handedOff[p] {
			continue
		}
		why := "the final sync did not reach it"
		if d.h.Role != "active" {
			why = "the final sync was skipped: " + d.h.RoleWhy
		}
		for _, r := range res.Peers {
			if r.Peer == p && r.Err != nil {
				why = r.Err.Error()
			}
		}
		log.Warn("no clean handoff; the next takeover will be guarded", "peer", p, "why", why)
		l.Notify(fctx, ha.EventFinalSyncIncomplete, p, why)
	}
	l.Notify(context.WithoutCancel(ctx), ha.EventStop, "", fmt.Sprintf("daemon stopped at epoch %d", d.epoch))
	d.h.State = StateStopped
	d.report()
}

// parentsOf lists the directories holding paths: their mtimes changed too.
func parentsOf(paths []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range paths {
		dir := filepath.Dir(p)
		if !seen[dir] {
			seen[dir] = true
			out = append(out, dir)
		}
	}
	return out
}

// DaemonFailed reports a daemon that could not start in its status file,
// so the agent's start says why.
func DaemonFailed(statusFile string, err error) {
	_ = WriteHealth(statusFile, Health{Pid: os.Getpid(), State: StateFailed, Error: err.Error(), Updated: time.Now()})
}
