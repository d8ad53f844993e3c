package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/urfave/cli/v2"

	"ocf-csync/ha"
	"ocf-csync/syncer/config"
	"ocf-csync/syncer/engine"
	"ocf-csync/syncer/scan"
	"ocf-csync/syncer/state"
)

// errOverlap: the previous sync run is still going (cron fallback, exit 75).
var errOverlap = errors.New("the previous sync run is still going")

// haConfig is the config's ha block with the agent's OCF overrides: the
// daemon receives them as flags and records them in the state dir, so that
// `ocf-csync sync` from cron on a standby gates the same way even when the
// cluster IP is only an OCF parameter.
func haConfig(c *cli.Context, l *loaded) config.HA {
	h := l.cfg.HA
	saved := map[string]string{}
	if data, err := os.ReadFile(agentHAPath(stateDir(c, l.path))); err == nil {
		_ = json.Unmarshal(data, &saved)
	}
	for name, dst := range map[string]*string{
		"cluster-ip": &h.ClusterIP, "ip-resource": &h.IPResource,
		"failover-policy": &h.FailoverPolicy, "stranded": &h.Stranded, "notify": &h.Notify,
	} {
		if v := c.String(name); v != "" {
			*dst = v
		} else if v := saved[name]; v != "" {
			*dst = v
		}
	}
	return h
}

func agentHAPath(dir string) string { return filepath.Join(dir, "agent-ha.json") }

// saveAgentHA records the daemon's OCF overrides for later CLI runs.
func saveAgentHA(c *cli.Context, l *loaded) error {
	saved := map[string]string{}
	for _, name := range []string{"cluster-ip", "ip-resource", "failover-policy", "stranded", "notify"} {
		if v := c.String(name); v != "" {
			saved[name] = v
		}
	}
	dir := stateDir(c, l.path)
	if len(saved) == 0 {
		err := os.Remove(agentHAPath(dir))
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	data, _ := json.Marshal(saved)
	return os.WriteFile(agentHAPath(dir), data, 0o600)
}

// runLock keeps two sync runs of one config from overlapping. It never
// waits: the caller reports the overlap.
type runLock struct{ f *os.File }

func takeRunLock(dir string) (*runLock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir %q: %w", dir, err)
	}
	path := filepath.Join(dir, "sync.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open run lock %q: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (lock %s is held); not starting a second one", errOverlap, path)
		}
		return nil, fmt.Errorf("lock %q: %w", path, err)
	}
	return &runLock{f: f}, nil
}

func (l *runLock) release() { l.f.Close() }

// cycle is one check-and-push run, shared by `sync`, `update` and the daemon.
type cycle struct {
	check     bool
	paths     []string
	recursive bool
	dry       bool
	peers     []string
	groups    []string
	progress  io.Writer
	warn      io.Writer // check warnings; nil logs them
	blocked   map[string]string
	parents   []string // directories to check without recursion (watch hints)
	mark      *state.Handoff
	handoff   *state.Handoff
	// allowMassDelete is sync --allow-mass-delete: this run only, never
	// implied by another flag and never set by the daemon.
	allowMassDelete bool
}

type cycleOutcome struct {
	gate   ha.Decision
	pushed bool
	res    engine.Result
}

// runCycle checks the active-node gate, scans, checks the gate again right
// before the push batch, and pushes. A standby does nothing.
func runCycle(ctx context.Context, c *cli.Context, l *loaded, st *state.Store, o cycle) (cycleOutcome, error) {
	log := logger(ctx)
	gate := ha.NewGate(haConfig(c, l), nil, log.With("component", "gate"))
	var out cycleOutcome
	var err error
	if out.gate, err = gate.Active(ctx); !out.gate.Active {
		log.Info("not the active node: nothing pushed", "reason", out.gate.Reason, "err", err)
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
	if o.check && !o.dry {
		res, err := scan.Check(ctx, st, l.view, o.paths, o.recursive || len(o.paths) == 0, scan.Options{
			Ignore: l.cfg.Ignore, Logger: log.With("component", "scan"), AllowMassDelete: o.allowMassDelete,
		})
		if err != nil {
			return out, err
		}
		scanned = true
		addRefused(res.Refused)
		for _, e := range res.Errors {
			if o.warn != nil {
				fmt.Fprintf(o.warn, "ocf-csync: warning: %v\n", e)
			} else {
				log.Warn("check", "problem", e.Error())
			}
		}
		log.Debug("check done", "scanned", res.Scanned, "dirtied", res.Dirtied)
	}
	if len(o.parents) > 0 && !o.dry {
		res, err := scan.Check(ctx, st, l.view, o.parents, false, scan.Options{
			Ignore: l.cfg.Ignore, Logger: log.With("component", "scan"), AllowMassDelete: o.allowMassDelete,
		})
		if err != nil {
			return out, err
		}
		scanned = true
		addRefused(res.Refused)
	}
	if out.gate.Gated {
		if out.gate, err = gate.Active(ctx); !out.gate.Active {
			log.Info("no longer the active node: nothing pushed", "reason", out.gate.Reason, "err", err)
			return out, nil
		}
	}
	out.res, err = engine.Push(ctx, engine.Options{
		View: l.view, Store: st, Connect: engine.SSHConnector(l.cfg, l.path, log),
		Peers: o.peers, Groups: o.groups, Paths: append(o.paths, o.parents...),
		Recursive: o.recursive, DryRun: o.dry, Log: log, Progress: o.progress,
		Blocked: o.blocked, Mark: o.mark, Handoff: o.handoff,
		Refusals: refused, Scanned: scanned, AllowMassDelete: o.allowMassDelete,
	})
	out.pushed = err == nil
	for _, r := range out.res.Fresh {
		event := ha.EventRootRefused
		if r.Kind == state.RefusedMassDelete {
			event = ha.EventMassDeleteRefused
		}
		notify(ctx, c, l, event, r.Peer, r.String())
	}
	return out, err
}

// notify runs the configured notify hook; failures are only logged.
func notify(ctx context.Context, c *cli.Context, l *loaded, event, peer, detail string) {
	cmd := haConfig(c, l).Notify
	if cmd == "" {
		return
	}
	if err := ha.Notify(ctx, cmd, event, l.view.Name, peer, detail); err != nil {
		logger(ctx).Warn("notify hook failed", "event", event, "err", err)
	}
}
