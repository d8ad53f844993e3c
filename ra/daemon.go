package ra

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"ocf-csync/syncer/state"
)

// DaemonParams is everything the agent hands to the sync daemon.
type DaemonParams struct {
	Binary         string // the ocf-csync binary (resolved, not a link named mirror)
	Config         string
	Node           string
	StateDir       string
	ClusterIP      string // OCF overrides of the config's ha block; "" or 0: the config's
	IPResource     string
	FailoverPolicy string
	Stranded       string
	Notify         string
	RescanInterval time.Duration
	// StartTimeout bounds what the daemon does before it reports ready
	// (a catch-up from a current peer); 0: its default.
	StartTimeout time.Duration
	StatusFile   string   // the daemon writes its Health here, atomically
	StopFile     string   // Stop writes the final-sync deadline here before SIGTERM
	LogFile      string   // HA_LOGFILE: the daemon's stderr is appended there
	Environ      []string // the daemon's environment
	// Spawned, if set, is called with the pid as soon as the process exists
	// and before it is ready, so the caller can record it and a start that
	// times out leaves nothing behind that stop cannot find.
	Spawned func(pid int) error
}

// Daemon runs the background sync process. ProcessDaemon is the real one;
// tests use fakes.
type Daemon interface {
	// Start launches the daemon detached and returns its pid once it reports
	// ready (Health.State running). On error nothing of it keeps running.
	Start(ctx context.Context, p DaemonParams) (pid int, err error)
	// Stop asks the daemon pid to run its final sync and exit by deadline,
	// and kills it if it has not exited a little after. nil means it is gone.
	Stop(ctx context.Context, p DaemonParams, pid int, deadline time.Time) error
	// Health is the daemon's last self-report.
	Health(ctx context.Context, p DaemonParams) (Health, error)
}

// Daemon states in Health.State.
const (
	StateStarting = "starting"
	StateRunning  = "running" // ready: start may return
	StateStopping = "stopping"
	StateStopped  = "stopped"
	StateFailed   = "failed" // Error says why; the daemon exits
)

// Health is the status file the daemon keeps current: what monitor judges.
type Health struct {
	Pid       int       `json:"pid"`
	State     string    `json:"state"`
	Error     string    `json:"error,omitempty"`
	Epoch     uint64    `json:"epoch,omitempty"` // of this node's term; 0 until it became active
	Updated   time.Time `json:"updated"`
	LastSync  time.Time `json:"last_sync,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	Role      string    `json:"role,omitempty"` // RoleActive or RoleStandby, per the gate
	RoleWhy   string    `json:"role_reason,omitempty"`
	IPHolder  string    `json:"ip_holder,omitempty"`
	// Watch: the inotify watch runs (live sync); rescans run regardless.
	Watch bool `json:"watch"`
	// PacemakerSeen: the gate found Pacemaker running at the last cycle.
	PacemakerSeen bool         `json:"pacemaker,omitempty"`
	Conflicts     int          `json:"conflicts"`
	Stranded      int          `json:"stranded"`
	Blocked       []string     `json:"blocked,omitempty"` // peers the failover guard blocks
	Peers         []PeerHealth `json:"peers,omitempty"`
	// Refusals: what the last cycle held back to protect data (a vanished
	// or replaced include root, a mass deletion, a peer's changed root).
	Refusals []state.Refusal `json:"refusals,omitempty"`
	// StartWarnings are said by the agent's start (e.g. a catch-up that
	// found no current peer).
	StartWarnings []string `json:"start_warnings,omitempty"`
	// NotCurrent says why this node's data is not current while it waits
	// for a catch-up from a current peer.
	NotCurrent string `json:"not_current,omitempty"`
}

// Roles in Health.Role.
const (
	RoleActive  = "active"
	RoleStandby = "standby"
)

// PeerHealth is one peer as the daemon last saw it.
type PeerHealth struct {
	Name         string    `json:"name"`
	LastOK       time.Time `json:"last_ok,omitzero"`
	FailingSince time.Time `json:"failing_since,omitzero"` // zero while pushes succeed
	Error        string    `json:"error,omitempty"`
}

// Problems lists why a running daemon is degraded (empty: healthy):
// conflicts, stranded changes, blocked peers, and peers failing for longer
// than threshold.
func (h Health) Problems(now time.Time, threshold time.Duration) []string {
	var out []string
	if h.Conflicts > 0 {
		out = append(out, fmt.Sprintf("%d conflict(s), see 'ocf-csync status'", h.Conflicts))
	}
	if h.Stranded > 0 {
		out = append(out, fmt.Sprintf("%d stranded change(s) on a former active node", h.Stranded))
	}
	if len(h.Blocked) > 0 {
		out = append(out, "pushes blocked to "+strings.Join(h.Blocked, ", "))
	}
	for _, r := range h.Refusals {
		out = append(out, r.String())
	}
	if h.NotCurrent != "" {
		out = append(out, "this node's data is not current ("+h.NotCurrent+"); it catches up as soon as a current peer answers")
	}
	for _, p := range h.Peers {
		if !p.FailingSince.IsZero() && now.Sub(p.FailingSince) >= threshold {
			msg := fmt.Sprintf("peer %s unreachable for %s", p.Name, now.Sub(p.FailingSince).Round(time.Second))
			if p.Error != "" {
				msg += ": " + p.Error
			}
			out = append(out, msg)
		}
	}
	return out
}

// WriteHealth replaces the status file atomically (the daemon's side).
func WriteHealth(path string, h Health) error { return writeJSONFile(path, h) }

// ReadHealth reads the status file.
func ReadHealth(path string) (Health, error) {
	var h Health
	data, err := os.ReadFile(path)
	if err != nil {
		return h, err
	}
	if err := json.Unmarshal(data, &h); err != nil {
		return h, fmt.Errorf("read daemon status file %s: %w", path, err)
	}
	return h, nil
}

type stopRequest struct {
	Deadline time.Time `json:"deadline"`
}

// ReadStopDeadline is the daemon's side of Stop: the time its final sync
// must be done by, if the agent wrote one.
func ReadStopDeadline(path string) (time.Time, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return time.Time{}, false
	}
	var r stopRequest
	if json.Unmarshal(data, &r) != nil || r.Deadline.IsZero() {
		return time.Time{}, false
	}
	return r.Deadline, true
}

// ProcessDaemon starts "<binary> --config C --node N --state-dir D daemon
// --status-file S --stop-file F [overrides]" in its own session,
// with stdin and stdout on /dev/null and stderr appended to HA_LOGFILE (or
// /dev/null). Ready means the status file shows its pid in state running.
type ProcessDaemon struct {
	Poll      time.Duration // status polling period; 50ms if 0
	KillGrace time.Duration // SIGKILL this long after the deadline; 2s if 0
}

func (d ProcessDaemon) poll() time.Duration {
	if d.Poll > 0 {
		return d.Poll
	}
	return 50 * time.Millisecond
}

// DaemonArgs is the daemon's command line (argv[0] "ocf-csync", so the
// binary runs in CLI mode whatever its file is called).
func DaemonArgs(p DaemonParams) []string {
	args := []string{"ocf-csync", "--config", p.Config, "--node", p.Node, "--state-dir", p.StateDir,
		"daemon", "--status-file", p.StatusFile, "--stop-file", p.StopFile}
	opt := func(flag, v string) {
		if v != "" {
			args = append(args, flag, v)
		}
	}
	opt("--cluster-ip", p.ClusterIP)
	opt("--ip-resource", p.IPResource)
	opt("--failover-policy", p.FailoverPolicy)
	opt("--stranded", p.Stranded)
	opt("--notify", p.Notify)
	if p.RescanInterval > 0 {
		opt("--rescan-interval", strconv.Itoa(int(p.RescanInterval/time.Second)))
	}
	if p.StartTimeout > 0 {
		opt("--start-timeout", strconv.Itoa(int(p.StartTimeout/time.Second)))
	}
	return args
}

// Start implements Daemon.
func (d ProcessDaemon) Start(ctx context.Context, p DaemonParams) (int, error) {
	for _, f := range []string{p.StatusFile, p.StopFile} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("remove old %s: %w", f, err)
		}
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer null.Close()
	stderr := null
	if p.LogFile != "" {
		if f, err := os.OpenFile(p.LogFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640); err == nil {
			defer f.Close()
			stderr = f
		}
	}
	cmd := &exec.Cmd{
		Path: p.Binary, Args: DaemonArgs(p), Env: p.Environ, Dir: "/",
		Stdin: null, Stdout: null, Stderr: stderr,
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start daemon %s: %w", p.Binary, err)
	}
	pid := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	fail := func(err error) (int, error) {
		_ = cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(2 * time.Second):
		}
		return 0, err
	}
	if p.Spawned != nil {
		if err := p.Spawned(pid); err != nil {
			return fail(err)
		}
	}
	t := time.NewTicker(d.poll())
	defer t.Stop()
	for {
		h, herr := ReadHealth(p.StatusFile)
		if herr == nil && h.Pid == pid {
			switch h.State {
			case StateRunning:
				return pid, nil
			case StateFailed:
				return fail(fmt.Errorf("daemon failed to start: %s", h.Error))
			}
		}
		select {
		case werr := <-exited:
			msg := fmt.Sprintf("daemon (pid %d) exited before it was ready: %v", pid, werr)
			if h, err := ReadHealth(p.StatusFile); err == nil && h.Pid == pid && h.Error != "" {
				msg = fmt.Sprintf("daemon failed to start: %s", h.Error)
			}
			return 0, errors.New(msg)
		case <-ctx.Done():
			return fail(fmt.Errorf("daemon (pid %d) not ready: %w", pid, ctx.Err()))
		case <-t.C:
		}
	}
}

// Stop implements Daemon: write the deadline, SIGTERM, wait, SIGKILL.
func (d ProcessDaemon) Stop(ctx context.Context, p DaemonParams, pid int, deadline time.Time) error {
	if err := writeJSONFile(p.StopFile, stopRequest{Deadline: deadline}); err != nil {
		return err
	}
	start, ok := procStart(pid)
	if !ok {
		return nil
	}
	gone := func() bool { st, ok := procStart(pid); return !ok || st != start }
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal daemon (pid %d): %w", pid, err)
	}
	grace := d.KillGrace
	if grace <= 0 {
		grace = 2 * time.Second
	}
	killAt := deadline.Add(grace)
	if dl, ok := ctx.Deadline(); ok && dl.Before(killAt) {
		killAt = dl
	}
	t := time.NewTicker(d.poll())
	defer t.Stop()
	for !gone() {
		if time.Now().After(killAt) {
			break
		}
		<-t.C
	}
	if gone() {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); <-t.C {
		if gone() {
			return fmt.Errorf("daemon (pid %d) did not finish by its deadline and was killed", pid)
		}
	}
	return fmt.Errorf("daemon (pid %d) survived SIGKILL", pid)
}

// Health implements Daemon.
func (d ProcessDaemon) Health(_ context.Context, p DaemonParams) (Health, error) {
	return ReadHealth(p.StatusFile)
}
