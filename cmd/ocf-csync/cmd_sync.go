package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"ocf-csync/ha"
	"ocf-csync/ra"
	"ocf-csync/syncer/engine"
	"ocf-csync/syncer/scan"
	"ocf-csync/syncer/state"
)

func pushFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringSliceFlag{Name: "peer", Aliases: []string{"P"}, Usage: "only push to these peers (csync2 -P)"},
		&cli.StringSliceFlag{Name: "group", Aliases: []string{"G"}, Usage: "only these groups (csync2 -G)"},
		&cli.BoolFlag{Name: "dry-run", Aliases: []string{"d"}, Usage: "show what would happen; change nothing, not even the state database"},
		&cli.BoolFlag{Name: "recursive", Aliases: []string{"r"}, Usage: "PATH arguments include everything below them"},
		&cli.DurationFlag{Name: "timeout", Value: 10 * time.Minute,
			Usage: "while the daemon runs, wait this long for the cycle it runs for this command (then exit 75; the cycle carries on)"},
	}, progressFlags()...)
}

func syncCommand(env Env) *cli.Command {
	return &cli.Command{
		Name:      "sync",
		Usage:     "check for changes, then push them to the peers (csync2 -x)",
		ArgsUsage: "[PATH...]",
		Flags: append(pushFlags(), &cli.BoolFlag{Name: "allow-mass-delete",
			Usage: "push, this once, deletions that the safety block refuses (an emptied or vanished include root, more than max-delete)"}),
		Action: func(c *cli.Context) error { return runPush(env, c, true) },
	}
}

func updateCommand(env Env) *cli.Command {
	return &cli.Command{
		Name:      "update",
		Usage:     "push what is already marked dirty, without checking (csync2 -u)",
		ArgsUsage: "[PATH...]",
		Flags:     pushFlags(),
		Action:    func(c *cli.Context) error { return runPush(env, c, false) },
	}
}

func runPush(env Env, c *cli.Context, check bool) error {
	ctx := c.Context
	start := time.Now()
	l, err := loadConfig(ctx, c)
	if err != nil {
		return err
	}
	if err := l.checkPeers(c.StringSlice("peer")); err != nil {
		return err
	}
	if err := l.checkGroups(c.StringSlice("group")); err != nil {
		return err
	}
	paths, err := absPaths(c, c.Args().Slice())
	if err != nil {
		return err
	}
	dry := c.Bool("dry-run")
	rep := pushJSON{Node: l.view.Name, DryRun: dry, Peers: []peerJSON{}, LocalActionsFailed: []string{}, Refusals: []state.Refusal{}}
	allow := check && c.Bool("allow-mass-delete")
	// A standby answers from the gate, without the state database.
	rl := l.local(c, logger(ctx))
	if g, _ := rl.Gate().Active(ctx); servedFrom(ctx) == nil && !g.Active {
		rep.Reason = g.Reason
		if c.Bool("json") {
			rep.DurationSeconds = seconds(time.Since(start))
			return writeJSON(env.Stdout, rep)
		}
		if verbosity(c) >= 1 {
			fmt.Fprintf(env.Stdout, "not the active node, nothing pushed: %s\n", g.Reason)
		}
		return nil
	}
	// The active node's daemon runs the cycle (after the one in progress,
	// if any) and this command waits for it and reports it.
	if done, err := forward(env, c); done {
		return err
	}
	o := ra.Cycle{Check: check, Paths: paths, Recursive: c.Bool("recursive"), DryRun: dry,
		Peers: c.StringSlice("peer"), Groups: c.StringSlice("group"), Warn: env.Stderr,
		AllowMassDelete: allow}
	if (verbosity(c) >= 1 || dry) && !c.Bool("json") {
		o.Progress = env.Stdout
	}
	if showProgress(progressSituationOf(env, c)) {
		ui := newProgressUI(env.Stderr)
		o.Observe = ui.observe
		if check && !dry {
			o.Tally = &scan.Tally{}
			defer ui.scanLine(o.Tally)()
		}
		defer ui.wait()
	}
	var out ra.CycleOutcome
	if s := servedFrom(ctx); s != nil {
		rep.DaemonPid = os.Getpid()
		if out, err = s.Sync(ctx, o); err != nil {
			return err
		}
	} else {
		lock, err := rl.TakeRunLock()
		if err != nil {
			if errors.Is(err, ra.ErrOverlap) {
				rl.Notify(ctx, ha.EventOverlap, "", err.Error())
			}
			return err
		}
		defer lock.Release()
		st, err := rl.OpenStore(ctx, false)
		if err != nil {
			return err
		}
		defer st.Close()
		if o.Blocked, err = ha.BlockedPeers(st); err != nil {
			return err
		}
		if out, err = ra.RunCycle(ctx, rl, st, o); err != nil {
			return err
		}
	}
	res := out.Result
	resErr := pushFailed(res, slaveRefusal(l, res))
	if c.Bool("json") {
		rep.Pushed, rep.Reason = out.Pushed, out.Gate.Reason
		for _, p := range res.Peers {
			rep.Peers = append(rep.Peers, peerResult(p))
		}
		rep.LocalActionsRun, rep.LocalActionsFailed = res.LocalActionsRun, orEmpty(res.LocalActionsFailed)
		if len(res.Refusals) > 0 {
			rep.Refusals = res.Refusals
		}
		rep.DurationSeconds = seconds(time.Since(start))
		rep.Error = errorObject(resErr)
		if err := writeJSON(env.Stdout, rep); err != nil {
			return err
		}
		return reported(resErr)
	}
	if !out.Pushed {
		if verbosity(c) >= 1 {
			fmt.Fprintf(env.Stdout, "not the active node, nothing pushed: %s\n", out.Gate.Reason)
		}
		return nil
	}
	if verbosity(c) >= 0 {
		for _, p := range res.Peers {
			if p.Blocked != "" {
				fmt.Fprintf(env.Stdout, "%s: BLOCKED by the failover guard (%d pending): %s; it lifts after reconciliation, or run 'ocf-csync unblock %s'\n",
					p.Peer, p.Planned, p.Blocked, p.Peer)
				continue
			}
			if p.Planned == 0 && p.Err == nil {
				if p.Held > 0 {
					fmt.Fprintf(env.Stdout, "%s: %d change(s) held back by a refusal; they stay pending\n", p.Peer, p.Held)
				}
				continue
			}
			fmt.Fprintf(env.Stdout, "%s: %s: %d updated, %d deleted, %d already equal, %d conflicts, %d refused/failed; %s data, %s on the wire, %.2fs\n",
				p.Peer, outcomeText(p), p.Updated, p.Deleted, p.Same, p.Conflicts, p.Refused+p.Failed,
				humanBytes(p.DataBytes), humanBytes(p.WireSent+p.WireRecvd), p.Duration.Seconds())
			if p.Held > 0 {
				fmt.Fprintf(env.Stdout, "%s: %d change(s) held back by a refusal; they stay pending\n", p.Peer, p.Held)
			}
		}
		if verbosity(c) >= 1 {
			fmt.Fprintf(env.Stdout, "finished in %.2fs\n", time.Since(start).Seconds())
		}
	}
	return resErr
}

// pushJSON is sync's and update's --json output.
type pushJSON struct {
	Node               string     `json:"node"`
	Pushed             bool       `json:"pushed"` // false: not the active node, or the daemon was asked
	Reason             string     `json:"reason"`
	DaemonPid          int        `json:"daemon_pid,omitempty"`
	DryRun             bool       `json:"dry_run"`
	Peers              []peerJSON `json:"peers"`
	LocalActionsRun    int        `json:"local_actions_run"`
	LocalActionsFailed []string   `json:"local_actions_failed"`
	DurationSeconds    float64    `json:"duration_seconds"`
	// Refusals: what the data-safety checks held back (README: What
	// ocf-csync will not do for you).
	Refusals []state.Refusal `json:"refusals"`
	Error    *errorJSON      `json:"error"`
}

// peerJSON is one peer's part of a push.
type peerJSON struct {
	Peer              string   `json:"peer"`
	Status            string   `json:"status"` // ok, failed, conflict, incomplete, blocked
	Planned           int      `json:"planned"`
	Updated           int      `json:"updated"`
	Deleted           int      `json:"deleted"`
	Same              int      `json:"same"`
	Conflicts         int      `json:"conflicts"`
	AutoResolved      int      `json:"auto_resolved"`
	PeerWins          int      `json:"peer_wins"`
	Refused           int      `json:"refused"`
	Failed            int      `json:"failed"`
	Skipped           int      `json:"skipped"`
	SkippedPaths      []string `json:"skipped_paths"`
	DataBytes         int64    `json:"data_bytes"`
	WireSentBytes     int64    `json:"wire_sent_bytes"`
	WireReceivedBytes int64    `json:"wire_received_bytes"`
	DurationSeconds   float64  `json:"duration_seconds"`
	Failure           string   `json:"failure,omitempty"` // why the peer could not be synced at all
	Problems          []string `json:"problems"`
	BlockedReason     string   `json:"blocked_reason,omitempty"`
	HandedOff         bool     `json:"handed_off"`
	Held              int      `json:"held"` // changes of refused groups, still pending
}

func peerResult(p engine.PeerResult) peerJSON {
	j := peerJSON{Peer: p.Peer, Status: peerOutcome(p), Planned: p.Planned, Updated: p.Updated, Deleted: p.Deleted,
		Same: p.Same, Conflicts: p.Conflicts, AutoResolved: p.AutoResolved, PeerWins: p.PeerWins,
		Refused: p.Refused, Failed: p.Failed, Skipped: p.Skipped, SkippedPaths: []string{},
		DataBytes: p.DataBytes, WireSentBytes: p.WireSent, WireReceivedBytes: p.WireRecvd,
		DurationSeconds: seconds(p.Duration), Problems: orEmpty(p.Problems), BlockedReason: p.Blocked, HandedOff: p.HandedOff,
		Held: p.Held}
	for _, path := range p.SkippedPaths {
		j.SkippedPaths = append(j.SkippedPaths, engine.DisplayPath(path))
	}
	if p.Err != nil {
		j.Failure = p.Err.Error()
	}
	return j
}

// outcomeText is the outcome as the text output shows it: "ok", or in capitals.
func outcomeText(p engine.PeerResult) string {
	if o := peerOutcome(p); o != "ok" {
		return strings.ToUpper(o)
	}
	return "ok"
}

// peerOutcome is one word for a peer's outcome.
func peerOutcome(p engine.PeerResult) string {
	switch {
	case p.Blocked != "":
		return "blocked"
	case p.Err != nil:
		return "failed"
	case p.Conflicts > 0:
		return "conflict"
	case p.Refused+p.Failed > 0:
		return "incomplete"
	}
	return "ok"
}

// pushFailure is a push that ran but left files unsynced; count is how
// many files or peers (csync2's "Finished with N errors.").
type pushFailure struct {
	err   error
	count int
}

func (e *pushFailure) Error() string { return e.err.Error() }
func (e *pushFailure) Unwrap() error { return e.err }

// pushFailed is res's failure, with the slave refusal, or nil.
func pushFailed(res engine.Result, slave *slaveError) error {
	var err error = res.Err()
	n := 0
	for _, p := range res.Peers {
		n += p.Conflicts + p.Refused + p.Failed
		if p.Err != nil {
			n++
		}
	}
	if slave != nil {
		err, n = errors.Join(err, slave), n+slave.count
	}
	if err == nil {
		return nil
	}
	return &pushFailure{err: err, count: n}
}

// slaveError is csync2's "Permission denied for slave!" for the local
// changes a slave cannot push: the admin learns that they will be lost.
type slaveError struct {
	msg   string
	count int
}

func (e *slaveError) Error() string { return e.msg }

// slaveRefusal names the local changes a slave did not push, or is nil.
func slaveRefusal(l *loaded, res engine.Result) *slaveError {
	seen := map[string]bool{}
	var paths []string
	for _, p := range res.Peers {
		for _, path := range p.SkippedPaths {
			if d := engine.DisplayPath(path); !seen[d] {
				seen[d] = true
				paths = append(paths, d)
			}
		}
	}
	if len(paths) == 0 {
		return nil
	}
	var groups []string
	for _, g := range l.view.Groups {
		if g.IsSlave(l.view.Name) {
			groups = append(groups, g.Name)
		}
	}
	return &slaveError{count: len(paths), msg: fmt.Sprintf("permission denied for slave: %s is a receive-only slave in group %s, so %d local change(s) were not pushed, "+
		"and a master overwrites them when it next pushes these files ('ocf-csync compare --mark %s' on a master does it at once): %s",
		l.view.Name, strings.Join(groups, ", "), len(paths), l.view.Name, strings.Join(firstN(paths, 10), ", "))}
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("and %d more", len(s)-n))
	}
	return s
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func serveCommand(env Env) *cli.Command {
	return &cli.Command{
		Name:   "serve",
		Usage:  "the remote helper: receive a push on stdin/stdout (run by sshd; see the README for the authorized_keys line)",
		Hidden: false,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "config `FILE` (the same as the global --config)"},
			&cli.StringFlag{Name: "node", Usage: "this node's `NAME`"},
			&cli.DurationFlag{Name: "handshake-timeout", Value: engine.DefaultHandshakeTimeout, Usage: "end a connection that has not authenticated within `DURATION`"},
			&cli.DurationFlag{Name: "idle-timeout", Value: engine.DefaultIdleTimeout, Usage: "end a session in which the sender sends nothing for `DURATION`"},
		},
		Action: func(c *cli.Context) error {
			ctx := c.Context
			log := logger(ctx).With("component", "serve")
			l, err := loadConfig(ctx, c)
			if err != nil {
				return err
			}
			// A sender that goes away leaves stdout a broken pipe; Go kills a
			// process writing to a broken fd 1 with SIGPIPE, and serve would
			// end like kill -9 (nothing recorded, actions not run).
			signal.Ignore(syscall.SIGPIPE)
			in, out, restore := pollableStdio(env.Stdin, env.Stdout)
			defer restore()
			sshConn := env.getenv("SSH_CONNECTION")
			if sshConn == "" {
				log.Debug("no SSH_CONNECTION: a local invocation; the sender's node name is taken as claimed")
			}
			// Inside the daemon, a session idling between batches ends
			// when the daemon stops.
			var quit <-chan struct{}
			if s := servedFrom(ctx); s != nil {
				quit = s.Stopping()
			}
			// The state lock is taken only once the sender authenticated
			// (and per batch, in a session the sender keeps open).
			return engine.Serve(ctx, engine.ServeOptions{
				Quit: quit,
				View: l.view, Config: l.cfg, In: in, Out: out, Log: log,
				CheckPeer: func(claimed string) error {
					return engine.CheckPeerAddress(ctx, l.view, claimed, sshConn, net.DefaultResolver.LookupHost)
				},
				OpenStore:        func(ctx context.Context) (*state.Store, error) { return openStore(ctx, c, l, false) },
				HandshakeTimeout: c.Duration("handshake-timeout"),
				IdleTimeout:      c.Duration("idle-timeout"),
				AcceptHandoff: func(st *state.Store, h state.Handoff) error {
					return ha.AcceptHandoff(ctx, st, ha.NewCLI(), l.view.Name, h)
				},
			})
		},
	}
}

// pollableStdio gives serve a stdin and stdout that support deadlines: sshd
// hands over blocking pipes or sockets, and Go's runtime poller (which the
// deadlines need) only takes non-blocking ones. restore puts the blocking
// mode back for whatever shares the descriptors after us.
func pollableStdio(in io.Reader, out io.Writer) (io.Reader, io.Writer, func()) {
	var undo []func()
	conv := func(f *os.File) *os.File {
		fd := int(f.Fd())
		if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK != 0 {
			return f
		}
		if err := unix.SetNonblock(fd, true); err != nil {
			return f
		}
		undo = append(undo, func() { _ = unix.SetNonblock(fd, false) })
		return os.NewFile(uintptr(fd), f.Name())
	}
	if f, ok := in.(*os.File); ok {
		in = conv(f)
	}
	if f, ok := out.(*os.File); ok {
		out = conv(f)
	}
	return in, out, func() {
		for _, u := range undo {
			u()
		}
	}
}
