package ra

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"ocf-csync/ha"
	"ocf-csync/syncer/config"
	"ocf-csync/syncer/engine"
	"ocf-csync/syncer/state"
)

// Local is one config as this node runs it: what the daemon and every
// command share (cmd builds it from its flags).
type Local struct {
	ConfigPath string
	Config     *config.Config
	View       *config.NodeView
	StateDir   string
	// LockTimeout is how long OpenStore waits for the state database;
	// 0 means not at all.
	LockTimeout time.Duration
	// Overrides are the agent's OCF parameters over the config's ha block.
	// The daemon gets them as flags and records them in the state dir
	// (SaveOverrides), so that a command run by hand or from cron gates
	// the same way even when the cluster IP is only an OCF parameter.
	Overrides *HAOverrides
	Log       *slog.Logger
	// DaemonUp, if set (a command that could run in the daemon), is asked
	// while another process holds the database: true means a daemon
	// answers on the control socket now (it started after the command
	// looked), and OpenStore returns ErrDaemonUp instead of waiting.
	DaemonUp func() bool
}

// ErrDaemonUp: a daemon started while the command waited for the state
// database; run the command in it (Forward).
var ErrDaemonUp = errors.New("an ocf-csync daemon started and holds the state database")

// daemonPoll is how often OpenStore asks DaemonUp while it waits.
const daemonPoll = 250 * time.Millisecond

// HAOverrides are OCF parameters that replace values of the ha block; ""
// keeps the config's value.
type HAOverrides struct {
	ClusterIP      string `json:"cluster-ip,omitempty"`
	IPResource     string `json:"ip-resource,omitempty"`
	FailoverPolicy string `json:"failover-policy,omitempty"`
	Stranded       string `json:"stranded,omitempty"`
	Notify         string `json:"notify,omitempty"`
}

func (o *HAOverrides) empty() bool { return o == nil || *o == HAOverrides{} }

func (l *Local) overridesPath() string { return filepath.Join(l.StateDir, "agent-ha.json") }

// HA is the config's ha block with the agent's overrides: those given to
// this process, else those the daemon recorded last.
func (l *Local) HA() config.HA {
	h := l.Config.HA
	o := l.Overrides
	if o == nil {
		o = &HAOverrides{}
		if data, err := os.ReadFile(l.overridesPath()); err == nil {
			_ = json.Unmarshal(data, o)
		}
	}
	for _, f := range []struct {
		v   string
		dst *string
	}{{o.ClusterIP, &h.ClusterIP}, {o.IPResource, &h.IPResource}, {o.FailoverPolicy, &h.FailoverPolicy}, {o.Notify, &h.Notify}} {
		if f.v != "" {
			*f.dst = f.v
		}
	}
	if o.Stranded != "" {
		h.Stranded = config.Stranded(o.Stranded)
	}
	return h
}

// SaveOverrides records this process's overrides for later commands (the
// daemon does it at start); none removes the record.
func (l *Local) SaveOverrides() error {
	if l.Overrides.empty() {
		err := os.Remove(l.overridesPath())
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	if err := os.MkdirAll(l.StateDir, 0o700); err != nil {
		return err
	}
	data, _ := json.Marshal(l.Overrides)
	return os.WriteFile(l.overridesPath(), data, 0o600)
}

// OpenStore opens the state database, waiting up to LockTimeout for it.
func (l *Local) OpenStore(ctx context.Context, rebuild bool) (*state.Store, error) {
	timeout := l.LockTimeout
	if timeout <= 0 {
		timeout = time.Nanosecond // 0 means "do not wait"; state.Open reads 0 as its 12s default
	}
	open := func(wait time.Duration) (*state.Store, error) {
		return state.Open(ctx, state.Options{
			Dir:          l.StateDir,
			Node:         l.View.Name,
			LockTimeout:  wait,
			Logger:       l.logger().With("component", "state"),
			AllowRebuild: rebuild,
		})
	}
	var st *state.Store
	var err error
	if l.DaemonUp == nil {
		st, err = open(timeout)
	} else {
		// Wait in slices, asking between them whether a daemon took the
		// database (Pacemaker restarting a killed one): the command then
		// goes to it instead of waiting out the lock timeout.
		begin := time.Now()
		for {
			st, err = open(max(min(daemonPoll, timeout-time.Since(begin)), time.Nanosecond))
			var le *state.LockedError
			if !errors.As(err, &le) || ctx.Err() != nil {
				break
			}
			if l.DaemonUp() {
				return nil, ErrDaemonUp
			}
			if time.Since(begin) >= timeout {
				le.Waited = time.Since(begin)
				break
			}
		}
	}
	if err != nil {
		return nil, err
	}
	if err := ha.ImportGuardFile(st, l.StateDir); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

// Gate is the active-node gate of this config.
func (l *Local) Gate() *ha.Gate {
	return ha.NewGate(l.HA(), nil, l.logger().With("component", "gate"))
}

// Connector opens sessions to the peers over SSH.
func (l *Local) Connector() engine.Connector {
	return engine.SSHConnector(l.Config, l.ConfigPath, l.logger())
}

// Notify runs the configured notify hook; failures are only logged.
func (l *Local) Notify(ctx context.Context, event, peer, detail string) {
	if err := ha.Notify(ctx, l.HA().Notify, event, l.View.Name, peer, detail); err != nil {
		l.logger().Warn("notify hook failed", "event", event, "err", err)
	}
}

func (l *Local) logger() *slog.Logger {
	if l.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l.Log
}

// errOverlapText is kept word for word: scripts and the notify hook see it.
const errOverlapText = "the previous sync run is still going"

// ErrOverlap: the previous sync run is still going (cron fallback, exit 75).
var ErrOverlap = errors.New(errOverlapText)

// RunLock keeps two sync runs of one config from overlapping. It never
// waits: the caller reports the overlap.
type RunLock struct{ f *os.File }

// TakeRunLock takes the run lock of the state dir, or fails with
// ErrOverlap at once.
func (l *Local) TakeRunLock() (*RunLock, error) {
	return takeRunLock(l.StateDir)
}

func takeRunLock(dir string) (*RunLock, error) {
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
			return nil, fmt.Errorf("%w (lock %s is held); not starting a second one", ErrOverlap, path)
		}
		return nil, fmt.Errorf("lock %q: %w", path, err)
	}
	return &RunLock{f: f}, nil
}

// Release frees the run lock.
func (r *RunLock) Release() { r.f.Close() }
