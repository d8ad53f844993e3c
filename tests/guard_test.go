package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ocf-csync/tests/cluster"
)

// daemonStatus is the part of the daemon's status file (ra.Health) read here.
type daemonStatus struct {
	State    string    `json:"state"`
	LastSync time.Time `json:"last_sync"`
	Stranded int       `json:"stranded"`
	Blocked  []string  `json:"blocked"`
}

// startDaemon runs `ocf-csync daemon` on n as the agent would, and waits
// until it finished its first cycle. Without a cluster IP every node is
// active, so the daemon takes the next epoch at once.
func (e *env) startDaemon(n *cluster.Node) (*exec.Cmd, string, *syncBuffer) {
	e.t.Helper()
	status := "/run/ocf-csync-test.status"
	os.Remove(n.Path(status))
	cmd := e.csyncCmd(context.Background(), n, "daemon", "--status-file", status, "--rescan-interval", "600")
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		e.t.Fatalf("start daemon on %s: %v", n.Name, err)
	}
	e.t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	e.waitStatus(n, status, func(s daemonStatus) bool { return !s.LastSync.IsZero() })
	return cmd, status, logs
}

// syncBuffer collects a running process's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (e *env) waitStatus(n *cluster.Node, status string, ok func(daemonStatus) bool) daemonStatus {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var s daemonStatus
	for time.Now().Before(deadline) {
		if data, err := os.ReadFile(n.Path(status)); err == nil && json.Unmarshal(data, &s) == nil && ok(s) {
			return s
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.t.Fatalf("daemon status on %s never reached the expected state; last: %+v", n.Name, s)
	return s
}

// TestFailoverGuardKeepsStrandedChange: the active node crashes with a
// change nobody has; the node that takes over blocks pushes to it until a
// reconciliation found the stranded change, which is reported, not
// overwritten, and can be taken over with resolve --keep-remote.
func TestFailoverGuardKeepsStrandedChange(t *testing.T) {
	e := newEnv(t, 2)
	n1, n2 := e.node(1), e.node(2)
	e.writeFile(n1, dataDir+"/shared.txt", "v1\n", 0o644)
	d1, _, _ := e.startDaemon(n1)
	if got, err := os.ReadFile(data(n2, "shared.txt")); err != nil || string(got) != "v1\n" {
		t.Fatalf("node2 did not get shared.txt from node1's daemon: %q %v", got, err)
	}
	// node1 changes a file after its last cycle, then crashes: a stranded change.
	e.writeFile(n1, dataDir+"/stranded.txt", "only on node1\n", 0o644)
	d1.Process.Signal(syscall.SIGKILL)
	d1.Wait()

	// node2 takes over at epoch 2 without a clean handoff.
	e.writeFile(n2, dataDir+"/mine.txt", "node2 after takeover\n", 0o644)
	_, status2, logs := e.startDaemon(n2)
	s := e.waitStatus(n2, status2, func(s daemonStatus) bool { return s.Stranded == 1 })
	if !strings.Contains(logs.String(), "pushes to node1 blocked until reconciled") {
		t.Errorf("node2's takeover did not guard node1; daemon log:\n%s", logs)
	}
	if len(s.Blocked) != 0 {
		t.Errorf("node1 still blocked after reconciliation: %v", s.Blocked)
	}
	if got, err := os.ReadFile(data(n1, "stranded.txt")); err != nil || string(got) != "only on node1\n" {
		t.Fatalf("the stranded change on node1 was lost: %q %v", got, err)
	}
	if got, _ := os.ReadFile(data(n1, "mine.txt")); string(got) != "node2 after takeover\n" {
		t.Errorf("node2's own change did not reach node1 after reconciliation: %q", got)
	}
	st := e.csync(n2, "status")
	if !strings.Contains(st.stdout, "stranded:  1") || !strings.Contains(st.stdout, "stranded.txt (on node1)") {
		t.Errorf("status on node2 does not report the stranded change:\n%s", st)
	}
	r := e.csync(n2, "resolve", "--keep-remote", dataDir+"/stranded.txt")
	if r.code != 0 {
		t.Fatalf("resolve --keep-remote failed:\n%s", r)
	}
	if got, _ := os.ReadFile(data(n2, "stranded.txt")); string(got) != "only on node1\n" {
		t.Errorf("resolve --keep-remote did not copy node1's version: %q", got)
	}
	st = e.csync(n2, "status")
	if !strings.Contains(st.stdout, "stranded:  0") {
		t.Errorf("stranded change still listed after resolve:\n%s", st)
	}
}

// TestCleanHandoffMeansNoGuard: a stop runs the final sync, which carries a
// last change and writes a clean handoff; the next active node then syncs
// normally, with nobody blocked.
func TestCleanHandoffMeansNoGuard(t *testing.T) {
	e := newEnv(t, 2)
	n1, n2 := e.node(1), e.node(2)
	e.writeFile(n1, dataDir+"/a.txt", "a\n", 0o644)
	d1, status1, _ := e.startDaemon(n1)
	e.writeFile(n1, dataDir+"/last.txt", "written just before the stop\n", 0o644)
	d1.Process.Signal(syscall.SIGTERM)
	if err := d1.Wait(); err != nil {
		t.Fatalf("daemon on node1 did not stop cleanly: %v", err)
	}
	e.waitStatus(n1, status1, func(s daemonStatus) bool { return s.State == "stopped" })
	if got, _ := os.ReadFile(data(n2, "last.txt")); string(got) != "written just before the stop\n" {
		t.Fatalf("the final sync did not carry the last change: %q", got)
	}
	_, status2, logs := e.startDaemon(n2)
	s := e.waitStatus(n2, status2, func(daemonStatus) bool { return true })
	if !strings.Contains(logs.String(), "node1 handed off cleanly at epoch 1") {
		t.Errorf("node2 did not see node1's clean handoff; daemon log:\n%s", logs)
	}
	if len(s.Blocked) != 0 || s.Stranded != 0 {
		t.Errorf("after a clean handoff node2 blocked %v with %d stranded", s.Blocked, s.Stranded)
	}
}
