package ra

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"ocf-csync/ocf"
)

// IO is what the agent takes from its process.
type IO struct {
	Stdout, Stderr io.Writer
	Environ        []string
}

// Agent runs the actions. New fills every field; tests replace some.
type Agent struct {
	Name     string // the name it was called by ("mirror"): meta-data and log tag
	Env      ocf.Env
	Environ  []string // passed on to the daemon
	Stdout   io.Writer
	Stderr   io.Writer
	Log      *slog.Logger
	Daemon   Daemon
	Now      func() time.Time
	NodeName func(ctx context.Context) (string, error)
	Self     func() (string, error) // this executable
}

// New returns an agent with the real daemon and ocf_log logging.
func New(o IO, name string) *Agent {
	env := ocf.NewEnv(o.Environ)
	log := slog.New(ocf.NewLogHandler(ocf.LogOptionsFromEnv(env, name, o.Stderr)))
	return &Agent{
		Name: name, Env: env, Environ: o.Environ, Stdout: o.Stdout, Stderr: o.Stderr, Log: log,
		Daemon: ProcessDaemon{},
		Now:    time.Now, NodeName: defaultNodeName, Self: os.Executable,
	}
}

// RunOCF runs one OCF action (OCF mode). The error is nil or an *ocf.Error
// whose Status is the exit code; its exit reason is already written.
func RunOCF(ctx context.Context, o IO, name, action string) error {
	return New(o, name).OCF(ctx, action)
}

// RunInit runs the init/haresources script: args are
// "mirror [config] start|stop|status|restart|monitor|validate-all|meta-data".
// The error is nil or an *ocf.Error whose Status is the LSB exit code.
func RunInit(ctx context.Context, o IO, args []string) error {
	name := "mirror"
	if len(args) > 0 {
		name = filepath.Base(args[0])
	}
	return New(o, name).Init(ctx, args)
}

// errDied marks a monitor failure because the daemon is gone without a stop.
var errDied = errors.New("died without a stop (see the log; stop cleans up)")

const usageText = "usage: %s {start|stop|monitor|status|notify|validate-all|meta-data|usage|methods}\n"

// OCF dispatches an OCF action.
func (a *Agent) OCF(ctx context.Context, action string) error {
	err := a.do(ctx, action)
	return a.finish(action, err)
}

// finish writes the exit reason and logs a failure once.
func (a *Agent) finish(action string, err error) error {
	if err == nil {
		return nil
	}
	var oe *ocf.Error
	if !errors.As(err, &oe) {
		oe = &ocf.Error{Status: ocf.ErrGeneric, Reason: err.Error()}
	}
	if oe.Status == ocf.Success {
		return nil
	}
	// A probe or status finding it stopped is an answer, not a failure.
	quiet := oe.Status == ocf.NotRunning && (a.Env.IsProbe(action) || action == ocf.ActionStatus)
	if !quiet && oe.Reason != "" {
		ocf.WriteExitReason(a.Stderr, a.Env.Get("OCF_EXIT_REASON_PREFIX"), oe.Error())
	}
	switch oe.Status {
	case ocf.NotRunning:
		a.Log.Debug(action+": "+oe.Error(), "rc", oe.Status.String())
	case ocf.Degraded, ocf.DegradedPromo:
		a.Log.Warn(action+": "+oe.Error(), "rc", oe.Status.String())
	default:
		a.Log.Error(action+": "+oe.Error(), "rc", oe.Status.String())
	}
	return oe
}

func (a *Agent) do(ctx context.Context, action string) error {
	switch action {
	case ocf.ActionMetaData:
		return a.fail(WriteMetaData(a.Stdout, a.Name))
	case ocf.ActionUsage:
		fmt.Fprintf(a.Stdout, usageText, a.Name)
		return nil
	case ocf.ActionMethods:
		for _, m := range []string{"start", "stop", "monitor", "status", "notify", "validate-all", "meta-data", "usage", "methods"} {
			fmt.Fprintln(a.Stdout, m)
		}
		return nil
	}
	p, perr := ParseParams(a.Env)
	switch action {
	case ocf.ActionValidateAll:
		level := LevelHost
		// Unset means the full check: Pacemaker and ocf-tester call
		// validate-all without a level and expect local problems found,
		// as every shell agent does; an explicit 0 checks parameters only.
		if l, ok := a.Env.CheckLevel(); ok {
			level = l
		}
		_, err := a.validate(ctx, p, perr, level)
		return err
	case ocf.ActionStart:
		return a.start(ctx, p, perr)
	case ocf.ActionStop:
		return a.stop(ctx, p)
	case ocf.ActionMonitor:
		return a.monitor(ctx, p, false)
	case ocf.ActionStatus:
		return a.monitor(ctx, p, true)
	case ocf.ActionNotify:
		return nil
	}
	fmt.Fprintf(a.Stderr, usageText, a.Name)
	return ocf.Errorf(ocf.ErrUnimpl, "action %q is not supported", action)
}

func (a *Agent) fail(err error) error {
	if err == nil {
		return nil
	}
	return &ocf.Error{Status: ocf.ErrGeneric, Err: err}
}

// opTimeout is the operation's timeout from Pacemaker, or def.
func (a *Agent) opTimeout(def time.Duration) time.Duration {
	return time.Duration(a.Env.TimeoutMs(def.Milliseconds())) * time.Millisecond
}

func (a *Agent) daemonParams(p *Params, bin string) DaemonParams {
	return DaemonParams{
		Binary: bin, Config: p.Config, Node: p.Node, StateDir: p.stateDir(),
		ClusterIP: p.ClusterIP, IPResource: p.IPResource, FailoverPolicy: p.FailoverPolicy,
		Stranded: p.Stranded, Notify: p.Notify, RescanInterval: p.RescanInterval,
		StatusFile: p.StatusFile(), StopFile: p.StopFile(), LogFile: a.Env.Get("HA_LOGFILE"),
		Environ: a.Environ,
	}
}

func (a *Agent) rscTmp(p *Params) error {
	if err := os.MkdirAll(p.RscTmp, 0o755); err != nil {
		return &ocf.Error{Status: ocf.ErrArgs, Reason: fmt.Sprintf("create HA_RSCTMP directory %s: %v", p.RscTmp, err)}
	}
	return nil
}

func (a *Agent) start(ctx context.Context, p *Params, perr error) error {
	begin := a.Now()
	if _, err := a.validate(ctx, p, perr, LevelHost); err != nil {
		return err
	}
	if err := a.rscTmp(p); err != nil {
		return err
	}
	if s, err := ReadState(p.StateFile()); err == nil {
		if s.alive() {
			a.Log.Info("already running", "pid", s.Pid, "epoch", s.Epoch)
			return nil
		}
		a.Log.Warn("daemon died since the last start; starting it again", "pid", s.Pid)
		a.cleanup(p)
	} else if !errors.Is(err, fs.ErrNotExist) {
		a.Log.Warn("ignoring unreadable state file", "err", err)
		a.cleanup(p)
	}
	bin, err := a.binary(p)
	if err != nil {
		return &ocf.Error{Status: ocf.ErrInstalled, Reason: err.Error()}
	}
	// The daemon takes an epoch itself, when this node becomes active
	// (now, if it holds the cluster IP; else later, or never).
	dp := a.daemonParams(p, bin)
	// The daemon may catch up from a current peer before it is ready:
	// that must end well inside the start timeout.
	dp.StartTimeout = max(a.opTimeout(60*time.Second)-5*time.Second, time.Second)
	var epoch uint64
	record := func(pid int) error {
		ps, _ := procStart(pid)
		return WriteState(p.StateFile(), &State{Pid: pid, PidStart: ps, Epoch: epoch, Config: p.Config,
			Node: p.Node, StateDir: p.stateDir(), Started: begin})
	}
	dp.Spawned = record
	// Leave a second of the start timeout to report the failure.
	sctx, cancel := context.WithDeadline(ctx, begin.Add(a.opTimeout(60*time.Second)-time.Second))
	defer cancel()
	pid, err := a.Daemon.Start(sctx, dp)
	if err != nil {
		a.cleanup(p)
		return &ocf.Error{Status: ocf.ErrGeneric, Reason: err.Error()}
	}
	h, _ := a.Daemon.Health(ctx, dp)
	epoch = h.Epoch
	if err := record(pid); err != nil {
		_ = a.Daemon.Stop(ctx, dp, pid, a.Now())
		a.cleanup(p)
		return &ocf.Error{Status: ocf.ErrGeneric, Reason: err.Error()}
	}
	if h.Role == RoleStandby {
		a.Log.Warn("started as a standby: this node does not hold the cluster IP, so it takes no epoch and pushes nothing until it does",
			"pid", pid, "node", p.Node, "why", h.RoleWhy)
	} else {
		a.Log.Info("started", "pid", pid, "epoch", epoch, "node", p.Node, "config", p.Config)
	}
	for _, w := range h.StartWarnings {
		a.Log.Warn(w)
	}
	return nil
}

// cleanup removes the agent's files of this instance.
func (a *Agent) cleanup(p *Params) {
	for _, f := range []string{p.StateFile(), p.StatusFile(), p.StopFile()} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			a.Log.Warn("remove agent file", "file", f, "err", err)
		}
	}
}

// stop never fails because of peers: a failed stop means fencing. It fails
// only if the daemon cannot be made to exit.
func (a *Agent) stop(ctx context.Context, p *Params) error {
	begin := a.Now()
	s, err := ReadState(p.StateFile())
	if errors.Is(err, fs.ErrNotExist) {
		a.cleanup(p)
		a.Log.Debug("already stopped")
		return nil
	}
	if err != nil {
		a.Log.Warn("removing unreadable state file", "err", err)
		a.cleanup(p)
		return nil
	}
	if s.alive() {
		timeout := a.opTimeout(300 * time.Second)
		margin := p.FinalSyncMargin
		if margin >= timeout {
			margin = timeout / 2
		}
		deadline := begin.Add(timeout - margin)
		sctx, cancel := context.WithDeadline(ctx, begin.Add(timeout-time.Second))
		defer cancel()
		dp := a.daemonParams(p, "")
		dp.Config, dp.Node, dp.StateDir = s.Config, s.Node, s.StateDir
		if h, err := a.Daemon.Health(ctx, dp); err == nil && h.Epoch > 0 {
			s.Epoch = h.Epoch // it became active after the start
		}
		err := a.Daemon.Stop(sctx, dp, s.Pid, deadline)
		if s.alive() {
			return &ocf.Error{Status: ocf.ErrGeneric, Reason: fmt.Sprintf("daemon (pid %d) does not stop: %v", s.Pid, err)}
		}
		if err != nil {
			a.Log.Warn("daemon stopped uncleanly", "pid", s.Pid, "err", err)
		}
		a.Log.Info("stopped", "pid", s.Pid, "epoch", s.Epoch, "took", a.Now().Sub(begin).Round(time.Millisecond))
	} else {
		a.Log.Warn("daemon was not running any more", "pid", s.Pid)
	}
	a.cleanup(p)
	return nil
}

// monitor answers from the state file and the daemon's status file only;
// it never syncs. status prints running/stopped as IPaddr2 does.
func (a *Agent) monitor(ctx context.Context, p *Params, status bool) error {
	_ = os.MkdirAll(p.RscTmp, 0o755)
	say := func(s string) {
		if status {
			fmt.Fprintln(a.Stdout, s)
		}
	}
	s, err := ReadState(p.StateFile())
	if errors.Is(err, fs.ErrNotExist) {
		say("stopped")
		return ocf.Errorf(ocf.NotRunning, "not running (no state file %s)", p.StateFile())
	}
	if err != nil {
		say("stopped")
		return &ocf.Error{Status: ocf.ErrGeneric, Reason: err.Error()}
	}
	if !s.alive() {
		say("stopped")
		return &ocf.Error{Status: ocf.ErrGeneric, Reason: fmt.Sprintf("daemon (pid %d)", s.Pid), Err: errDied}
	}
	dp := a.daemonParams(p, "")
	h, err := a.Daemon.Health(ctx, dp)
	if err != nil {
		say("running")
		return ocf.Errorf(ocf.ErrGeneric, "daemon (pid %d) runs but its status is unreadable: %v", s.Pid, err)
	}
	if h.State == StateFailed {
		say("stopped")
		return ocf.Errorf(ocf.ErrGeneric, "daemon failed: %s", h.Error)
	}
	say("running")
	if probs := h.Problems(a.Now(), p.UnreachableThreshold); len(probs) > 0 {
		return ocf.Errorf(ocf.Degraded, "degraded: %s", strings.Join(probs, "; "))
	}
	return nil
}

// Init runs the init/haresources script: the action is the last argument,
// a config path may come before it.
func (a *Agent) Init(ctx context.Context, args []string) error {
	if len(args) < 2 {
		fmt.Fprintf(a.Stderr, "usage: %s [config] {start|stop|status|restart|monitor|validate-all|meta-data}\n", a.Name)
		return &ocf.Error{Status: ocf.ErrArgs}
	}
	action := args[len(args)-1]
	extra := []string{}
	if len(args) >= 3 {
		extra = append(extra, "OCF_RESKEY_config="+args[1])
	}
	if a.Env.Get("OCF_RESOURCE_INSTANCE") == "" {
		// Without a cluster name, one instance per config file, so that
		// two haresources lines with different configs do not collide.
		cfg := defaultConfig()
		if len(args) >= 3 {
			cfg = args[1]
		} else if v, ok := a.Env.Param("config"); ok && v != "" {
			cfg = v
		}
		extra = append(extra, "OCF_RESOURCE_INSTANCE="+strings.TrimSuffix(filepath.Base(cfg), ".cfg"))
	}
	if len(extra) > 0 {
		a.Environ = append(append([]string{}, a.Environ...), extra...)
		a.Env = ocf.NewEnv(a.Environ)
		a.Log = slog.New(ocf.NewLogHandler(ocf.LogOptionsFromEnv(a.Env, a.Name, a.Stderr)))
	}
	switch action {
	case "restart":
		if err := a.OCF(ctx, ocf.ActionStop); err != nil {
			return lsb(err)
		}
		return lsb(a.OCF(ctx, ocf.ActionStart))
	case ocf.ActionStatus:
		err := a.OCF(ctx, ocf.ActionStatus)
		var oe *ocf.Error
		switch {
		case err == nil, errors.As(err, &oe) && oe.Status == ocf.Degraded:
			return nil
		case errors.As(err, &oe) && oe.Status == ocf.NotRunning:
			return &ocf.Error{Status: ocf.LSBNotRunning, Reason: oe.Reason}
		case errors.Is(err, errDied):
			return &ocf.Error{Status: ocf.LSBDeadPidFile, Reason: oe.Reason}
		}
		return &ocf.Error{Status: ocf.LSBStatusUnknown, Err: err}
	case ocf.ActionStart, ocf.ActionStop, ocf.ActionMonitor, ocf.ActionValidateAll, ocf.ActionMetaData,
		ocf.ActionUsage, ocf.ActionMethods, ocf.ActionNotify:
		return lsb(a.OCF(ctx, action))
	}
	fmt.Fprintf(a.Stderr, "usage: %s [config] {start|stop|status|restart|monitor|validate-all|meta-data}\n", a.Name)
	return &ocf.Error{Status: ocf.ErrUnimpl, Reason: fmt.Sprintf("action %q is not supported", action)}
}

// lsb maps an OCF result of a non-status action to LSB: 0–7 mean the same;
// degraded is running.
func lsb(err error) error {
	var oe *ocf.Error
	if errors.As(err, &oe) && (oe.Status == ocf.Degraded || oe.Status == ocf.DegradedPromo) {
		return nil
	}
	if err != nil && errors.As(err, &oe) && oe.Status > 7 {
		return &ocf.Error{Status: ocf.ErrGeneric, Reason: oe.Reason, Err: oe.Err}
	}
	return err
}
