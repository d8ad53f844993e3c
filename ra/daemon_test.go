package ra

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeDaemonScript stands in for "ocf-csync daemon": it finds --status-file
// in its arguments and behaves as $FAKE_MODE says: ok (ready, exits on
// TERM), stubborn (ready, ignores TERM), fail (reports failed), exit
// (exits at once without a report).
const fakeDaemonScript = `#!/bin/sh
while [ $# -gt 0 ]; do
	case "$1" in --status-file) S=$2; shift;; esac
	shift
done
report() { printf '{"pid":%d,"state":"%s","error":"%s"}\n' $$ "$1" "$2" >"$S.tmp" && mv "$S.tmp" "$S"; }
case "$FAKE_MODE" in
fail) report failed "cannot open the state db"; exit 1;;
exit) exit 3;;
stubborn) trap '' TERM;;
*) trap 'report stopped; exit 0' TERM;;
esac
report running
while :; do sleep 0.05; done
`

func daemonFixture(t *testing.T, mode string) DaemonParams {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "ocf-csync")
	if err := os.WriteFile(bin, []byte(fakeDaemonScript), 0o755); err != nil {
		t.Fatal(err)
	}
	return DaemonParams{
		Binary: bin, Config: "/etc/x.cfg", Node: "node1", StateDir: dir,
		StatusFile: filepath.Join(dir, "s.status"), StopFile: filepath.Join(dir, "s.stop"),
		Environ: []string{"PATH=/usr/bin:/bin", "FAKE_MODE=" + mode},
	}
}

func TestProcessDaemonStartStop(t *testing.T) {
	p := daemonFixture(t, "ok")
	var spawned int
	p.Spawned = func(pid int) error { spawned = pid; return nil }
	d := ProcessDaemon{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pid, err := d.Start(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	if spawned != pid {
		t.Errorf("Spawned got pid %d, Start returned %d", spawned, pid)
	}
	if _, ok := procStart(pid); !ok {
		t.Fatal("daemon not running after Start")
	}
	// Detached: its own session, so Pacemaker's process group kills miss it.
	if sid, _ := syscall.Getpgid(pid); sid != pid {
		t.Errorf("daemon process group %d, want its own (%d)", sid, pid)
	}
	h, err := d.Health(ctx, p)
	if err != nil || h.Pid != pid || h.State != StateRunning {
		t.Errorf("Health = %+v, %v", h, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	begin := time.Now()
	if err := d.Stop(ctx, p, pid, deadline); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("Stop of a daemon that exits on TERM took %v", took)
	}
	if _, ok := procStart(pid); ok {
		t.Error("daemon still running after Stop")
	}
	if got, ok := ReadStopDeadline(p.StopFile); !ok || !got.Equal(deadline) {
		t.Errorf("stop file deadline %v %v, want %v", got, ok, deadline)
	}
	if h, _ := ReadHealth(p.StatusFile); h.State != StateStopped {
		t.Errorf("daemon's final state %q, want stopped", h.State)
	}
}

func TestProcessDaemonKillsStubborn(t *testing.T) {
	p := daemonFixture(t, "stubborn")
	d := ProcessDaemon{KillGrace: 100 * time.Millisecond}
	ctx := context.Background()
	pid, err := d.Start(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	begin := time.Now()
	err = d.Stop(ctx, p, pid, time.Now().Add(200*time.Millisecond))
	if err == nil || !strings.Contains(err.Error(), "was killed") {
		t.Errorf("Stop = %v, want a 'was killed' error", err)
	}
	if _, ok := procStart(pid); ok {
		t.Error("stubborn daemon survived Stop")
	}
	if took := time.Since(begin); took > 3*time.Second {
		t.Errorf("Stop took %v with a 300ms budget", took)
	}
}

func TestProcessDaemonStartFailures(t *testing.T) {
	tests := []struct{ mode, want string }{
		{"fail", "daemon failed to start: cannot open the state db"},
		{"exit", "exited before it was ready: exit status 3"},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			p := daemonFixture(t, tt.mode)
			_, err := ProcessDaemon{}.Start(context.Background(), p)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Start = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestDaemonArgs(t *testing.T) {
	got := strings.Join(DaemonArgs(DaemonParams{Config: "/c", Node: "n", StateDir: "/s",
		StatusFile: "/r/x.status", StopFile: "/r/x.stop", ClusterIP: "10.0.0.1", RescanInterval: 90 * time.Second}), " ")
	want := "ocf-csync --config /c --node n --state-dir /s daemon --status-file /r/x.status --stop-file /r/x.stop --cluster-ip 10.0.0.1 --rescan-interval 90"
	if got != want {
		t.Errorf("args\n got %s\nwant %s", got, want)
	}
}

func TestGuardRetryBackoff(t *testing.T) {
	g := newGuardRetry()
	var waits []time.Duration
	for range 7 {
		waits = append(waits, g.backoff)
		g.arm([]string{"node1"})
		g.fired()
	}
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30}
	for i := range want {
		if waits[i] != want[i]*time.Second {
			t.Fatalf("retry waits %v, want 1s doubling to a 30s cap", waits)
		}
	}
	g.arm(nil) // nobody blocked any more: the next guard starts short again
	if g.backoff != time.Second || g.armed {
		t.Errorf("after the guard emptied: backoff %v armed %v", g.backoff, g.armed)
	}
}
