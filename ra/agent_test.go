package ra

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ocf-csync/ocf"
)

// fakeDaemon runs "sleep" as the daemon, so pids are real processes.
type fakeDaemon struct {
	health   Health
	startErr error
	starts   int
	stops    int
	procs    map[int]*exec.Cmd
}

func (f *fakeDaemon) Start(ctx context.Context, p DaemonParams) (int, error) {
	f.starts++
	if f.startErr != nil {
		return 0, f.startErr
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	if f.procs == nil {
		f.procs = map[int]*exec.Cmd{}
	}
	f.procs[cmd.Process.Pid] = cmd
	if p.Spawned != nil {
		if err := p.Spawned(cmd.Process.Pid); err != nil {
			return 0, err
		}
	}
	return cmd.Process.Pid, nil
}

func (f *fakeDaemon) Stop(ctx context.Context, p DaemonParams, pid int, deadline time.Time) error {
	f.stops++
	f.kill(pid)
	return nil
}

func (f *fakeDaemon) kill(pid int) {
	if c := f.procs[pid]; c != nil {
		c.Process.Kill()
		c.Wait()
		delete(f.procs, pid)
	}
}

func (f *fakeDaemon) Health(ctx context.Context, p DaemonParams) (Health, error) {
	return f.health, nil
}

// fixture is a config whose one group has this node and one peer, with
// every file validate-all looks for, all under a temp dir.
type fixture struct {
	dir, cfg string
	env      []string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"g.key", "id", "known_hosts"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(dir, "g.key"), "0123456789012345678901234567890123456789\n")
	cfg := filepath.Join(dir, "m.cfg")
	writeFile(t, cfg, fmt.Sprintf(`group g {
	host node1 node2@127.0.0.1;
	key %[1]s/g.key;
	include %[1]s/data;
}
ssh { identity %[1]s/id; known-hosts %[1]s/known_hosts; }
`, dir))
	return &fixture{dir: dir, cfg: cfg, env: []string{
		"OCF_ROOT=/usr/lib/ocf", "OCF_RA_VERSION_MAJOR=1", "OCF_RESOURCE_INSTANCE=m1",
		"HA_RSCTMP=" + filepath.Join(dir, "rsc"),
		"OCF_RESKEY_config=" + cfg,
		"OCF_RESKEY_state_dir=" + filepath.Join(dir, "state"),
	}}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

type testAgent struct {
	*Agent
	out, errb *bytes.Buffer
	daemon    *fakeDaemon
}

func (f *fixture) agent(t *testing.T, extra ...string) *testAgent {
	t.Helper()
	var out, errb bytes.Buffer
	env := append(append([]string{}, f.env...), extra...)
	d := &fakeDaemon{health: Health{State: StateRunning}}
	a := &Agent{
		Name: "mirror", Env: ocf.NewEnv(env), Environ: env, Stdout: &out, Stderr: &errb,
		Log:    slog.New(ocf.NewLogHandler(ocf.LogOptions{Tag: "mirror(m1)", Stderr: &errb})),
		Daemon: d, Now: time.Now,
		NodeName: func(context.Context) (string, error) { return "node1", nil },
		Self:     func() (string, error) { return "/bin/true", nil },
	}
	t.Cleanup(func() {
		for pid := range d.procs {
			d.kill(pid)
		}
	})
	return &testAgent{Agent: a, out: &out, errb: &errb, daemon: d}
}

// rc runs an action and returns its exit status.
func (a *testAgent) rc(action string) ocf.Status {
	a.out.Reset()
	a.errb.Reset()
	err := a.OCF(context.Background(), action)
	if err == nil {
		return ocf.Success
	}
	var oe *ocf.Error
	if !errors.As(err, &oe) {
		return -1
	}
	return oe.Status
}

func TestValidateAll(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(f *fixture) []string // extra env
		want   ocf.Status
		reason string // regexp-free substring of the exit reason
	}{
		{"ok", func(f *fixture) []string { return nil }, ocf.Success, ""},
		{"broken config", func(f *fixture) []string {
			writeFile(t, f.cfg, "group g {\n\thost node1\n}\n")
			return nil
		}, ocf.ErrConfigured, "m.cfg:3:1:"},
		{"missing config", func(f *fixture) []string {
			return []string{"OCF_RESKEY_config=" + filepath.Join(f.dir, "nope.cfg")}
		}, ocf.ErrInstalled, "nope.cfg not found"},
		{"missing config, level 0", func(f *fixture) []string {
			return []string{"OCF_RESKEY_config=" + filepath.Join(f.dir, "nope.cfg"), "OCF_CHECK_LEVEL=0"}
		}, ocf.Success, ""},
		{"bad policy", func(f *fixture) []string { return []string{"OCF_RESKEY_failover_policy=maybe"} },
			ocf.ErrConfigured, `failover_policy="maybe" is not one of guard, skip-first, off`},
		{"bad stranded, level 0", func(f *fixture) []string {
			return []string{"OCF_RESKEY_stranded=lose", "OCF_CHECK_LEVEL=0"}
		}, ocf.ErrConfigured, "stranded="},
		{"bad cluster ip", func(f *fixture) []string { return []string{"OCF_RESKEY_cluster_ip=10.0.0.300"} },
			ocf.ErrConfigured, "not an IP address"},
		{"cidr cluster ip", func(f *fixture) []string { return []string{"OCF_RESKEY_cluster_ip=10.0.0.3/24"} },
			ocf.Success, ""},
		{"bad interval", func(f *fixture) []string { return []string{"OCF_RESKEY_rescan_interval=0"} },
			ocf.ErrConfigured, "rescan_interval"},
		{"missing key", func(f *fixture) []string { os.Remove(filepath.Join(f.dir, "g.key")); return nil },
			ocf.ErrInstalled, "key file of group g"},
		{"short key", func(f *fixture) []string { writeFile(t, filepath.Join(f.dir, "g.key"), "short\n"); return nil },
			ocf.ErrConfigured, "the key has 5 characters, at least 32 are needed"},
		{"world-readable key", func(f *fixture) []string { os.Chmod(filepath.Join(f.dir, "g.key"), 0o644); return nil },
			ocf.ErrConfigured, "readable or writable by group or others (mode 0644)"},
		{"missing identity", func(f *fixture) []string { os.Remove(filepath.Join(f.dir, "id")); return nil },
			ocf.ErrInstalled, "SSH identity file"},
		{"missing identity, agent", func(f *fixture) []string {
			os.Remove(filepath.Join(f.dir, "id"))
			return []string{"SSH_AUTH_SOCK=/nonexistent"}
		}, ocf.Success, ""},
		{"missing known_hosts", func(f *fixture) []string { os.Remove(filepath.Join(f.dir, "known_hosts")); return nil },
			ocf.ErrInstalled, "known_hosts"},
		{"state dir is a file", func(f *fixture) []string {
			writeFile(t, filepath.Join(f.dir, "sfile"), "")
			return []string{"OCF_RESKEY_state_dir=" + filepath.Join(f.dir, "sfile", "sub")}
		}, ocf.ErrArgs, "not a directory"},
		{"node not in config", func(f *fixture) []string { return []string{"OCF_RESKEY_node=node9"} },
			ocf.ErrArgs, "not a member"},
		{"binary missing", func(f *fixture) []string {
			return []string{"OCF_RESKEY_ocf_csync_binary=" + filepath.Join(f.dir, "nobin")}
		}, ocf.ErrInstalled, "ocf-csync binary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			a := f.agent(t, tt.setup(f)...)
			if got := a.rc("validate-all"); got != tt.want {
				t.Fatalf("validate-all = %v, want %v; stderr:\n%s", got, tt.want, a.errb)
			}
			line := "ocf-exit-reason:"
			if tt.want == ocf.Success {
				if strings.Contains(a.errb.String(), line) {
					t.Errorf("exit reason on success: %s", a.errb)
				}
				return
			}
			if !strings.Contains(a.errb.String(), line) || !strings.Contains(a.errb.String(), tt.reason) {
				t.Errorf("stderr lacks %q after %q:\n%s", tt.reason, line, a.errb)
			}
		})
	}
}

func TestLifecycle(t *testing.T) {
	f := newFixture(t)
	a := f.agent(t, "OCF_RESKEY_CRM_meta_interval=30000")
	probe := f.agent(t) // no interval: a probe
	steps := []struct {
		a      *testAgent
		action string
		want   ocf.Status
		reason bool // an exit reason is written
	}{
		{probe, "monitor", ocf.NotRunning, false},
		{a, "monitor", ocf.NotRunning, true},
		{a, "stop", ocf.Success, false},
		{a, "start", ocf.Success, false},
		{a, "monitor", ocf.Success, false},
		{probe, "monitor", ocf.Success, false},
		{a, "start", ocf.Success, false},
		{a, "notify", ocf.Success, false},
		{a, "promote", ocf.ErrUnimpl, true},
		{a, "frobnicate", ocf.ErrUnimpl, true},
		{a, "stop", ocf.Success, false},
		{a, "monitor", ocf.NotRunning, true},
		{a, "stop", ocf.Success, false},
	}
	for i, s := range steps {
		got := s.a.rc(s.action)
		if got != s.want {
			t.Fatalf("step %d: %s = %v, want %v; stderr:\n%s", i, s.action, got, s.want, s.a.errb)
		}
		if has := strings.Contains(s.a.errb.String(), "ocf-exit-reason:"); has != s.reason {
			t.Errorf("step %d: %s: exit reason written = %v, want %v; stderr:\n%s", i, s.action, has, s.reason, s.a.errb)
		}
	}
	if a.daemon.starts != 1 || a.daemon.stops != 1 {
		t.Errorf("daemon starts=%d stops=%d, want 1 and 1", a.daemon.starts, a.daemon.stops)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "rsc", "ocf-csync-m1.state")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state file left after stop: %v", err)
	}
}

func TestMonitorStates(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name   string
		health Health
		died   bool
		want   ocf.Status
		reason string
	}{
		{"healthy", Health{State: StateRunning}, false, ocf.Success, ""},
		{"died", Health{State: StateRunning}, true, ocf.ErrGeneric, "died without a stop"},
		{"failed", Health{State: StateFailed, Error: "boom"}, false, ocf.ErrGeneric, "daemon failed: boom"},
		{"conflicts", Health{State: StateRunning, Conflicts: 2}, false, ocf.Degraded, "2 conflict(s)"},
		{"stranded", Health{State: StateRunning, Stranded: 1}, false, ocf.Degraded, "1 stranded change(s)"},
		{"blocked", Health{State: StateRunning, Blocked: []string{"node2"}}, false, ocf.Degraded, "pushes blocked to node2"},
		{"peer down long", Health{State: StateRunning, Peers: []PeerHealth{{Name: "node2", FailingSince: now.Add(-10 * time.Minute), Error: "refused"}}},
			false, ocf.Degraded, "peer node2 unreachable for 10m"},
		{"peer down briefly", Health{State: StateRunning, Peers: []PeerHealth{{Name: "node2", FailingSince: now.Add(-time.Minute)}}},
			false, ocf.Success, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			a := f.agent(t, "OCF_RESKEY_CRM_meta_interval=30000")
			a.Now = func() time.Time { return now }
			if got := a.rc("start"); got != ocf.Success {
				t.Fatalf("start = %v: %s", got, a.errb)
			}
			a.daemon.health = tt.health
			if tt.died {
				s, err := ReadState(filepath.Join(f.dir, "rsc", "ocf-csync-m1.state"))
				if err != nil {
					t.Fatal(err)
				}
				a.daemon.kill(s.Pid)
			}
			if got := a.rc("monitor"); got != tt.want {
				t.Fatalf("monitor = %v, want %v; stderr:\n%s", got, tt.want, a.errb)
			}
			if tt.reason != "" && !strings.Contains(a.errb.String(), "ocf-exit-reason:") {
				t.Errorf("no exit reason: %s", a.errb)
			}
			if !strings.Contains(a.errb.String(), tt.reason) {
				t.Errorf("stderr lacks %q:\n%s", tt.reason, a.errb)
			}
			// stop cleans up in every case, and returns 0.
			if got := a.rc("stop"); got != ocf.Success {
				t.Errorf("stop = %v: %s", got, a.errb)
			}
		})
	}
}

func TestStartFailureLeavesNothing(t *testing.T) {
	f := newFixture(t)
	a := f.agent(t)
	a.daemon.startErr = errors.New("daemon failed to start: no way")
	if got := a.rc("start"); got != ocf.ErrGeneric {
		t.Fatalf("start = %v, want 1", got)
	}
	if !strings.Contains(a.errb.String(), "ocf-exit-reason:daemon failed to start: no way") {
		t.Errorf("exit reason missing: %s", a.errb)
	}
	if got := a.rc("monitor"); got != ocf.NotRunning {
		t.Errorf("monitor after failed start = %v, want 7", got)
	}
}

func TestInitMode(t *testing.T) {
	f := newFixture(t)
	a := f.agent(t)
	// By hand or from haresources: no OCF variables, the config as an argument.
	env := []string{"HA_RSCTMP=" + filepath.Join(f.dir, "rsc"), "OCF_RESKEY_state_dir=" + filepath.Join(f.dir, "state")}
	a.Env, a.Environ = ocf.NewEnv(env), env
	run := func(args ...string) (ocf.Status, string) {
		a.out.Reset()
		err := a.Init(context.Background(), append([]string{"/etc/ha.d/resource.d/mirror"}, args...))
		var oe *ocf.Error
		if errors.As(err, &oe) {
			return oe.Status, a.out.String()
		}
		return 0, a.out.String()
	}
	steps := []struct {
		args []string
		want ocf.Status
		out  string
	}{
		{[]string{f.cfg, "status"}, ocf.LSBNotRunning, "stopped\n"},
		{[]string{f.cfg, "start"}, 0, ""},
		{[]string{f.cfg, "status"}, ocf.LSBRunning, "running\n"},
		{[]string{f.cfg, "start"}, 0, ""},
		{[]string{f.cfg, "stop"}, 0, ""},
		{[]string{f.cfg, "status"}, ocf.LSBNotRunning, "stopped\n"},
		{[]string{f.cfg, "stop"}, 0, ""},
		{[]string{f.cfg, "reload-everything"}, ocf.ErrUnimpl, ""},
	}
	for i, s := range steps {
		got, out := run(s.args...)
		if got != s.want || out != s.out {
			t.Fatalf("step %d %v: rc %d stdout %q, want %d %q; stderr:\n%s", i, s.args, got, out, s.want, s.out, a.errb)
		}
	}
	// The instance comes from the config's name: m.cfg → ocf-csync-m.state.
	if a.daemon.starts != 1 {
		t.Errorf("daemon started %d times, want 1", a.daemon.starts)
	}
	if strings.Contains(a.errb.String(), "ocf-exit-reason:not running") {
		t.Errorf("status wrote an exit reason for a clean stop:\n%s", a.errb)
	}
}

func TestParseParamsDefaults(t *testing.T) {
	p, err := ParseParams(ocf.NewEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	// DefaultConfig, or /etc/csync2.cfg where only that exists (config.Locate's test covers the choice).
	if p.Config != defaultConfig() || p.RscTmp != DefaultRscTmp || p.Instance != "default" ||
		p.FinalSyncMargin != DefaultFinalSyncMargin || p.UnreachableThreshold != DefaultUnreachableThreshold ||
		p.RescanInterval != 0 || p.FailoverPolicy != "" {
		t.Errorf("defaults: %+v", p)
	}
	if got, want := p.stateDir(), DefaultStateDir(p.Config); got != want {
		t.Errorf("state dir %q, want %q", got, want)
	}
	if got, want := p.StateFile(), "/run/resource-agents/ocf-csync-default.state"; got != want {
		t.Errorf("state file %q, want %q", got, want)
	}
	// A bad value still yields usable Params, so stop can find the state file.
	p, err = ParseParams(ocf.NewEnv([]string{"OCF_RESKEY_stranded=x", "HA_RSCTMP=/r", "OCF_RESOURCE_INSTANCE=i"}))
	if err == nil || p == nil || p.StateFile() != "/r/ocf-csync-i.state" || p.FinalSyncMargin != DefaultFinalSyncMargin {
		t.Errorf("bad stranded: %v %+v", err, p)
	}
}
