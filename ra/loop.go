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
	"maps"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
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
	RescanInterval time.Duration // 0: the config's ha rescan-interval
	StartTimeout   time.Duration // bounds the catch-up before ready; 0: DefaultStartTimeout
	// Handler runs the commands the CLI forwards over the control socket;
	// nil: no control socket.
	Handler Handler
}

// DefaultStartTimeout bounds the catch-up at start when the agent gave no
// start timeout.
const DefaultStartTimeout = 55 * time.Second

// daemon is one run of the sync daemon.
type daemon struct {
	l *Local
	o DaemonOptions
	h Health
	// The term: active is set the first time the gate passes in this run;
	// only then does the node take an epoch (DESIGN §2).
	active      bool
	epoch       uint64
	markPending bool // the first cycle of the term tells the peers
	skipFirst   bool
	// catchUp is set while this node became active with data that is not
	// current and has not caught up from a current peer yet.
	catchUp *catchUp
	current map[string]string // csync-current as last published, by node
	// connect opens sessions to peers: the compare, catch-up and
	// reconciliation ones, and those of the pool.
	connect engine.Connector
	// pool keeps one session per peer open between the pushes of this
	// node's term; dropped when the gate closes, closed on stop.
	pool *engine.Pool
	// st is the state database, open for the daemon's whole life; the
	// commands it runs for the CLI borrow it (Served).
	st *state.Store
	// mu serialises the cycles with the commands that write the store.
	mu       sync.Mutex
	requests chan cycleRequest // cycles the CLI asked for (sync)
	stopped  chan struct{}     // closed when the loop ends
	stopOnce sync.Once
}

// stop says the loop ended: no more cycles, and serves idling between
// batches end.
func (d *daemon) stop() { d.stopOnce.Do(func() { close(d.stopped) }) }

// RunDaemon runs the daemon until ctx ends, then, if this node became
// active, runs the final sync.
func RunDaemon(ctx context.Context, l *Local, o DaemonOptions) error {
	d := &daemon{l: l, o: o, h: Health{Pid: os.Getpid(), State: StateStarting}, current: map[string]string{},
		requests: make(chan cycleRequest), stopped: make(chan struct{})}
	log := l.logger()
	interval := l.Config.HA.RescanInterval
	if o.RescanInterval > 0 {
		interval = o.RescanInterval
	}
	if err := l.SaveOverrides(); err != nil {
		log.Warn("record the agent's ha parameters for the CLI", "err", err)
	}
	d.connect = l.Connector()
	d.pool = engine.NewPool(l.View, d.connect, log)
	defer d.pool.Close()
	// The control socket listens before the store is open: a command
	// started meanwhile waits in the socket's backlog instead of finding
	// no daemon and then waiting for the database lock.
	var ln net.Listener
	if o.Handler != nil {
		var err error
		if ln, err = d.listen(); err != nil {
			return d.fail(err)
		}
		defer ln.Close()
	}
	st, err := l.OpenStore(ctx, false)
	if err != nil {
		return d.fail(err)
	}
	d.st = st
	defer st.Close()
	if ln != nil {
		served := make(chan struct{})
		go func() { defer close(served); d.serveControl(context.WithoutCancel(ctx), ln) }()
		// A serve idling in a session from the active node ends once the
		// loop stopped (Served.Stopping); then the store may close.
		defer func() { d.stop(); ln.Close(); <-served }()
	}
	d.mu.Lock()
	_, err = d.activate(ctx)
	d.mu.Unlock()
	if err != nil {
		return d.fail(err)
	}
	d.h.State = StateRunning
	d.report()
	if d.active {
		log.Info("running", "node", l.View.Name, "epoch", d.epoch, "rescan", interval)
		l.Notify(ctx, ha.EventStart, "", fmt.Sprintf("daemon started at epoch %d", d.epoch))
	} else {
		log.Warn("running as a standby: no epoch taken, nothing pushed until this node holds the cluster IP",
			"node", l.View.Name, "why", d.h.RoleWhy)
		l.Notify(ctx, ha.EventStart, "", "daemon started as a standby: "+d.h.RoleWhy)
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
	d.cycle(ctx, Cycle{})
	t := time.NewTicker(interval)
	defer t.Stop()
	retry := newGuardRetry()
	poll := time.NewTicker(onlinePoll)
	defer poll.Stop()
	pcmk := ha.NewCLI()
	gateTick := time.NewTicker(sessionGateCheck)
	defer gateTick.Stop()
	for ctx.Err() == nil {
		// Who waits for a peer: the guard's blocked peers, a catch-up,
		// and peers a push failed to reach.
		var waiting []string
		if d.active {
			waiting = append(append(slices.Clone(d.h.Blocked), d.failingPeers()...), d.peersIfCatchingUp()...)
		}
		retry.arm(waiting)
		select {
		case <-ctx.Done():
		case <-retry.timer.C:
			retry.fired()
			d.retryGuard(ctx)
		case <-poll.C:
			if len(waiting) > 0 && d.h.PacemakerSeen && retry.cameOnline(ctx, pcmk, waiting) {
				d.l.logger().Info("a peer this node waits for is online again; trying it now", "waiting", waiting)
				d.retryGuard(ctx)
			}
		case <-gateTick.C:
			d.checkSessions(ctx)
		case <-t.C:
			d.cycle(ctx, Cycle{})
		case <-now:
			d.cycle(ctx, Cycle{})
		case r := <-d.requests:
			out, err := d.cycleOut(ctx, r.c, true)
			r.done <- cycleDone{out, err}
		case batch, ok := <-changes:
			switch {
			case !ok:
				changes = nil
			case batch == nil:
				d.cycle(ctx, Cycle{})
			default:
				d.cycle(ctx, Cycle{Paths: batch, Parents: parentsOf(batch)})
			}
		}
	}
	d.stop()
	d.h.State = StateStopping
	d.report()
	if d.active {
		d.finalSync(ctx)
	} else {
		// A standby's stop has nothing to hand over: it never pushed.
		log.Info("stopping a standby: no final sync, no handoff")
	}
	d.pool.Close()
	l.Notify(context.WithoutCancel(ctx), ha.EventStop, "", fmt.Sprintf("daemon stopped at epoch %d", d.epoch))
	d.h.State = StateStopped
	d.report()
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

// activate starts this node's term the first time the gate passes in this
// run: it takes the next epoch and applies the failover policy to the
// previous active node. It reports whether the node is active.
func (d *daemon) activate(ctx context.Context) (bool, error) {
	if d.active {
		return true, nil
	}
	l, log := d.l, d.l.logger()
	g, err := l.Gate().Active(ctx)
	d.role(g)
	if !g.Active {
		if err != nil {
			log.Warn("cannot tell whether this node is active; standby for now", "err", err)
		}
		return false, nil
	}
	st := d.st
	files, err := st.CountFiles()
	if err != nil {
		return false, err
	}
	own, err := st.Epoch()
	if err != nil {
		return false, err
	}
	hadState := files > 0 || own > 0
	a, err := ha.BecomeActive(ctx, st, ha.NewCLI(), l.View.Name, l.HA().FailoverPolicy)
	if err != nil {
		return false, err
	}
	if a.PublishErr != nil {
		log.Warn("epoch recorded but not published to Pacemaker", "epoch", a.Epoch, "err", a.PublishErr)
	}
	d.active, d.epoch, d.h.Epoch = true, a.Epoch, a.Epoch
	d.markPending, d.skipFirst = true, a.Failover.SkipFirst
	log.Info("became active", "epoch", a.Epoch, "previous", a.Previous.String(), "decision", a.Failover.Reason)
	for _, p := range a.Failover.Guarded {
		l.Notify(ctx, ha.EventTakeoverUnclean, p, a.Failover.Reason)
	}
	// status and monitor show the guard from the start, not only once a
	// reconciliation was tried.
	if g, err := ha.BlockedPeers(st); err == nil {
		d.h.Blocked = slices.Sorted(maps.Keys(g))
	}
	if need, why := ha.CatchUpNeed(ctx, d.pcmk(), l.View.Name, a.Previous, hadState); need {
		d.catchUp = &catchUp{why: why, prev: a.Previous, blockPushes: !hadState}
		d.h.NotCurrent = why
		log.Warn("this node's data is not current: catching up from a current peer first", "why", why)
		d.tryCatchUp(ctx, st, true)
	} else {
		log.Debug("no catch-up needed", "why", why)
	}
	return true, nil
}

// catchUp is a pending catch-up.
type catchUp struct {
	why      string
	prev     ha.Term
	notified bool
	// blockPushes: this node has no state, so its scan would take every
	// file for new and a receiver could take such a copy for one some
	// node synced to it; nothing goes out before the catch-up. A node
	// that only missed updates pushes its own changes meanwhile (the
	// receivers' three-way check protects newer data).
	blockPushes bool
}

// pcmk is the Pacemaker adapter, or nil when the gate found none.
func (d *daemon) pcmk() ha.Pacemaker {
	if !d.h.PacemakerSeen {
		return nil
	}
	return ha.NewCLI()
}

// tryCatchUp pulls what this node lacks from the first current peer that
// answers. Without one it stays not current (degraded, notified once), and
// the guard's retry loop tries again.
func (d *daemon) tryCatchUp(ctx context.Context, st *state.Store, atStart bool) {
	l, log := d.l, d.l.logger()
	cu := d.catchUp
	if atStart {
		timeout := d.o.StartTimeout
		if timeout <= 0 {
			timeout = DefaultStartTimeout
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	begin := time.Now()
	peers := ha.CurrentPeers(ctx, d.pcmk(), l.View.Name, cu.prev, engine.AllPeers(l.View))
	var tried []string
	for _, p := range peers {
		co := engine.CompareOptions{View: l.View, Connect: d.connect, Ignore: l.Config.Ignore, Log: log}
		r, err := ha.CatchUp(ctx, co, st, p, l.Config.Tempdir)
		if err != nil {
			tried = append(tried, fmt.Sprintf("%s: %v", p, err))
			log.Warn("catch-up failed", "peer", p, "err", err)
			continue
		}
		log.Info("caught up", "peer", p, "pulled", len(r.Pulled), "kept", len(r.Kept), "conflicts", len(r.Conflicts),
			"problems", len(r.Problems), "took", time.Since(begin).Round(time.Millisecond))
		for _, pr := range r.Problems {
			log.Warn("catch-up: not pulled", "peer", p, "problem", pr)
		}
		d.catchUp, d.h.NotCurrent = nil, ""
		return
	}
	why := "no current peer is online (no other node has csync-current=1)"
	if len(tried) > 0 {
		why = "no current peer answered: " + strings.Join(tried, "; ")
	}
	d.h.NotCurrent = cu.why + "; " + why
	if atStart {
		d.h.StartWarnings = append(d.h.StartWarnings, "started with data that is not current ("+d.h.NotCurrent+"); it catches up as soon as a current peer answers")
	}
	if !cu.notified {
		cu.notified = true
		l.Notify(ctx, ha.EventNotCurrent, "", d.h.NotCurrent)
	}
	log.Warn("not current, and no catch-up possible yet; trying again as peers answer", "why", d.h.NotCurrent)
}

// role records the gate's answer in the status file's fields.
func (d *daemon) role(g ha.Decision) {
	d.h.Role, d.h.RoleWhy, d.h.IPHolder = RoleStandby, g.Reason, g.IPHolder
	d.h.PacemakerSeen = g.PacemakerPresent
	if g.Active {
		d.h.Role = RoleActive
	}
}

// cycle runs one of the daemon's own cycles.
func (d *daemon) cycle(ctx context.Context, c Cycle) engine.Result {
	out, _ := d.cycleOut(ctx, c, false)
	return out.Result
}

// cycleOut runs one cycle (fromCLI: one `ocf-csync sync` asked for, with
// its options) and records its outcome in the status file. The error is
// the cycle's own failure; what did not reach a peer is in the result.
func (d *daemon) cycleOut(ctx context.Context, c Cycle, fromCLI bool) (CycleOutcome, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	log := d.l.logger()
	var out CycleOutcome
	active, err := d.activate(ctx)
	switch {
	case err != nil:
		err = fmt.Errorf("become active: %w", err)
	case active && d.markPending:
		// The first cycle of the term tells every peer who is active now.
		d.markPending = false
		c.Mark = &state.Handoff{Epoch: d.epoch, From: d.l.View.Name, UpToNs: time.Now().UnixNano()}
		if d.skipFirst {
			log.Info("failover-policy skip-first: first sync after takeover skipped")
			return out, nil
		}
		out, err = d.push(ctx, c, fromCLI)
	default:
		out, err = d.push(ctx, c, fromCLI)
	}
	res, opErr := out.Result, err
	now := time.Now()
	d.h.LastSync, d.h.LastError = now, ""
	if err == nil {
		err = res.Err()
	}
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
	// The CLI reports what did not reach a peer itself, as a foreground
	// run would; only the cycle's own failure is an error here.
	return out, opErr
}

// push is one cycle: the failover guard's reconciliation, the gate, a
// check of every root, the gate again, and the push, as `ocf-csync sync`
// does.
func (d *daemon) push(ctx context.Context, c Cycle, fromCLI bool) (CycleOutcome, error) {
	l, st := d.l, d.st
	guard, _, err := d.reconcile(ctx, st)
	if err != nil {
		return CycleOutcome{}, err
	}
	log := l.logger()
	if d.catchUp != nil && d.catchUp.blockPushes {
		// No state: nothing of this node's may reach a peer before it
		// caught up.
		guard = maps.Clone(guard)
		for _, p := range engine.AllPeers(l.View) {
			if _, ok := guard[p]; !ok {
				guard[p] = "this node is not current yet: " + d.h.NotCurrent
			}
		}
	}
	full := len(c.Paths) == 0 && !c.retry
	if full && d.active && d.catchUp == nil {
		co := engine.CompareOptions{View: l.View, Store: st, Connect: d.connect, Ignore: l.Config.Ignore, Log: log}
		if settled, err := ha.SettleConflicts(ctx, co, st); err != nil {
			log.Warn("settle conflicts", "err", err)
		} else if len(settled) > 0 {
			log.Info("conflicts settled: both sides agree again", "paths", settled)
		}
		// What a peer lacks without it being dirty (it joined later, or
		// missed files) goes with this cycle; a blocked peer waits for
		// its reconciliation.
		var peers []string
		for _, p := range engine.AllPeers(l.View) {
			if _, blocked := guard[p]; !blocked {
				peers = append(peers, p)
			}
		}
		if marked, err := engine.MarkUnsynced(ctx, co, peers); err != nil {
			log.Warn("find what the peers lack", "err", err)
		} else if len(marked) > 0 {
			log.Info("peers lack entries nothing marked; pushing them", "entries", marked)
		}
	}
	if !fromCLI {
		c.Check, c.Recursive = !c.retry, true
	}
	c.Blocked, c.Connect, c.Pool = guard, d.connect, d.pool
	out, err := RunCycle(ctx, l, st, c)
	if !out.Gate.Active {
		d.pool.Drop() // a standby keeps no session open
	}
	if out.Pushed || !out.Gate.Active {
		d.h.Refusals = out.Result.Refusals // monitor reports them as degraded
	}
	d.role(out.Gate)
	conflicted := d.count(st)
	d.publish(ctx, st)
	if out.Pushed && d.active && !c.DryRun && d.catchUp == nil {
		// A node that is not current itself says nothing about the others.
		d.publishCurrent(ctx, st, out.Result, full, guard, conflicted)
	}
	return out, err
}

// count records the conflicts and stranded changes in the status file's
// fields, and returns the peers with a conflict.
func (d *daemon) count(st *state.Store) map[string]bool {
	d.h.Conflicts, d.h.Stranded = 0, 0
	conflicted := map[string]bool{}
	_ = st.Conflicts(func(cf state.Conflict) error { d.h.Conflicts++; conflicted[cf.Peer] = true; return nil })
	_ = st.StrandedList(func(state.Stranded) error { d.h.Stranded++; return nil })
	return conflicted
}

// reconcile runs the failover guard's reconciliation with every blocked
// peer it can reach (only while active) and returns the peers still
// blocked and those it unblocked.
func (d *daemon) reconcile(ctx context.Context, st *state.Store) (map[string]string, []string, error) {
	l := d.l
	guard, err := ha.BlockedPeers(st)
	if err != nil {
		return nil, nil, err
	}
	var lifted []string
	if len(guard) > 0 && d.active {
		if g, _ := l.Gate().Active(ctx); g.Active {
			lifted = ha.ReconcileGuarded(ctx, ha.GuardOptions{
				Compare: engine.CompareOptions{View: l.View, Connect: d.connect, Ignore: l.Config.Ignore, Log: l.logger()},
				Store:   st, Policy: l.HA().Stranded, TempDir: l.Config.Tempdir,
				Notify: func(event, peer, detail string) { l.Notify(ctx, event, peer, detail) },
			})
			if guard, err = ha.BlockedPeers(st); err != nil {
				return nil, lifted, err
			}
		}
	}
	d.h.Blocked = d.h.Blocked[:0]
	for p := range guard {
		d.h.Blocked = append(d.h.Blocked, p)
	}
	slices.Sort(d.h.Blocked)
	return guard, lifted, nil
}

// retryGuard tries again, outside the rescan rhythm, what waits for a
// peer: a catch-up, the reconciliation with blocked peers (once one is
// reconciled, a full cycle pushes to it at once), and the pushes to peers
// that failed.
func (d *daemon) retryGuard(ctx context.Context) {
	lifted, err := func() ([]string, error) {
		d.mu.Lock()
		defer d.mu.Unlock()
		st := d.st
		if d.catchUp != nil {
			d.tryCatchUp(ctx, st, false)
			if d.catchUp == nil {
				return []string{"catch-up"}, nil
			}
		}
		_, lifted, err := d.reconcile(ctx, st)
		d.count(st) // what the reconciliation found shows at once
		return lifted, err
	}()
	if err != nil {
		d.l.logger().Warn("failover guard: retry", "err", err)
	}
	d.report()
	if len(lifted) > 0 {
		d.cycle(ctx, Cycle{})
	} else if failing := d.failingPeers(); len(failing) > 0 {
		d.cycle(ctx, Cycle{Peers: failing, retry: true})
	}
}

// failingPeers are the peers the last push to failed (not blocked ones).
func (d *daemon) failingPeers() []string {
	var out []string
	for _, p := range d.h.Peers {
		if !p.FailingSince.IsZero() && !slices.Contains(d.h.Blocked, p.Name) {
			out = append(out, p.Name)
		}
	}
	return out
}

// peersIfCatchingUp lists every peer while a catch-up waits for one.
func (d *daemon) peersIfCatchingUp() []string {
	if d.catchUp == nil {
		return nil
	}
	return engine.AllPeers(d.l.View)
}

// sessionGateCheck: while sessions are open between cycles, the gate is
// asked this often; once this node is no longer active they close.
const sessionGateCheck = 15 * time.Second

// checkSessions closes the open sessions if this node stopped being
// active (the IP left without a cycle noticing: a standby keeps none).
func (d *daemon) checkSessions(ctx context.Context) {
	if len(d.pool.Open()) == 0 {
		return
	}
	g, err := d.l.Gate().Active(ctx)
	if g.Active {
		return
	}
	d.l.logger().Info("no longer the active node: closing the open sessions", "reason", g.Reason, "err", err)
	d.pool.Drop()
	d.role(g)
	d.report()
}

// Retry timing of a blocked peer (issue: a returning node is reconciled
// within seconds, not at the next rescan).
const (
	guardRetryFirst = time.Second
	guardRetryMax   = 30 * time.Second
	onlinePoll      = 2 * time.Second
)

// guardRetry schedules the reconciliation of blocked peers: a short
// backoff (1 s doubling to 30 s), and at once when Pacemaker reports a
// blocked peer online again.
type guardRetry struct {
	timer   *time.Timer
	backoff time.Duration
	armed   bool
	online  map[string]bool // last seen, per blocked peer
}

func newGuardRetry() *guardRetry {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &guardRetry{timer: t, backoff: guardRetryFirst, online: map[string]bool{}}
}

// arm starts the backoff timer if peers are blocked and it is not running;
// with none blocked it resets.
func (g *guardRetry) arm(blocked []string) {
	if len(blocked) == 0 {
		g.timer.Stop()
		g.armed, g.backoff = false, guardRetryFirst
		return
	}
	if !g.armed {
		g.timer.Reset(g.backoff)
		g.armed = true
	}
}

// fired is called when the timer went off: the next wait is longer.
func (g *guardRetry) fired() {
	g.armed = false
	g.backoff = min(2*g.backoff, guardRetryMax)
}

// cameOnline reports whether a blocked peer went from offline to online
// in Pacemaker's view since the last poll (then the backoff restarts).
func (g *guardRetry) cameOnline(ctx context.Context, pcmk ha.Pacemaker, blocked []string) bool {
	st, err := pcmk.Status(ctx)
	if err != nil {
		return false
	}
	back := false
	for _, p := range blocked {
		n := st.Node(p)
		on := n != nil && n.Online
		if on && !g.online[p] {
			back = true
		}
		g.online[p] = on
	}
	if back {
		g.backoff = guardRetryFirst
	}
	return back
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

// finalSync is the stop of an active node: one last cycle bounded by the
// agent's deadline, writing the clean handoff on every peer it brings fully
// up to date.
func (d *daemon) finalSync(ctx context.Context) {
	l, log := d.l, d.l.logger()
	deadline, ok := ReadStopDeadline(d.o.StopFile)
	if !ok {
		deadline = time.Now().Add(DefaultFinalSync)
	}
	fctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	begin := time.Now()
	log.Info("final sync started", "deadline", deadline.Format(time.RFC3339))
	res := d.cycle(fctx, Cycle{Handoff: &state.Handoff{Epoch: d.epoch, From: l.View.Name, Clean: true, UpToNs: time.Now().UnixNano()}})
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
		why := "the final sync did not bring it fully up to date"
		if d.h.Role != RoleActive {
			why = "the final sync was skipped: " + d.h.RoleWhy
		}
		for _, r := range res.Peers {
			switch {
			case r.Peer != p:
			case r.Err != nil:
				why = r.Err.Error()
			case r.Blocked != "":
				why = "the failover guard blocks it: " + r.Blocked
			default:
				// The peer refused the handoff (it holds no state, or
				// another node holds the current term): say its reason.
				if i := slices.IndexFunc(r.Problems, func(s string) bool { return strings.HasPrefix(s, "handoff not recorded") }); i >= 0 {
					why = r.Problems[i]
				}
			}
		}
		log.Warn("no clean handoff; the next takeover will be guarded", "peer", p, "why", why)
		l.Notify(fctx, ha.EventFinalSyncIncomplete, p, why)
		if d.catchUp == nil {
			d.setCurrent(fctx, p, false)
		}
	}
}

// publishCurrent keeps each node's csync-current attribute true: 1 for
// this node (once it is current itself) and every peer this cycle left
// fully up to date (nothing pending, no conflict, not blocked, reached),
// else 0. Only changes are
// written (crm_attribute -l forever), and only with Pacemaker.
func (d *daemon) publishCurrent(ctx context.Context, st *state.Store, res engine.Result, full bool, guard map[string]string, conflicted map[string]bool) {
	d.setCurrent(ctx, d.l.View.Name, d.catchUp == nil)
	failed := map[string]bool{}
	var reached []string
	for _, p := range res.Peers {
		failed[p.Peer] = p.Err != nil
		reached = append(reached, p.Peer)
	}
	peers := engine.AllPeers(d.l.View)
	if !full {
		// A partial cycle (watch hints, a retry) speaks only for the
		// peers it pushed to.
		peers = reached
	}
	for _, p := range peers {
		n, err := st.DirtyCount(p)
		_, blocked := guard[p]
		d.setCurrent(ctx, p, err == nil && n == 0 && !blocked && !failed[p] && !conflicted[p])
	}
}

func (d *daemon) setCurrent(ctx context.Context, node string, current bool) {
	if !d.h.PacemakerSeen {
		return
	}
	v := "0"
	if current {
		v = "1"
	}
	if d.current[node] == v {
		return
	}
	if err := ha.NewCLI().SetNodeAttribute(ctx, node, ha.CurrentAttribute, v, ha.Forever); err != nil {
		d.l.logger().Warn("publish node attribute", "node", node, "name", ha.CurrentAttribute, "err", err)
		return
	}
	d.current[node] = v
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
