package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"ocf-csync/syncer/proto"
	"ocf-csync/syncer/state"
)

// The sender goes away (killed, or its connection dropped) while serve has
// something to say: serve's next write to stdout meets a broken pipe. Go
// kills a process that writes to a broken fd 1 with SIGPIPE, which would end
// serve like kill -9 (nothing recorded, actions not run); serve must get the
// error instead and end cleanly.
func TestServeSurvivesBrokenStdout(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	if err := os.WriteFile(key, []byte(strings.Repeat("k", 64)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "ocf-csync.cfg")
	if err := os.WriteFile(cfg, []byte("group g {\n  host a b;\n  key "+key+";\n  include "+dir+"/data;\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "ocf-csync")
	if err := os.Symlink(os.Args[0], bin); err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(dir, "state")
	cmd := exec.Command(bin, "--config", cfg, "--node", "b", "serve")
	cmd.Env = append(os.Environ(), "OCF_CSYNC_STATE_DIR="+stateDir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := proto.NewConn(stdout, stdin)
	if _, err := proto.ClientHandshake(c, "a", map[string][]byte{"g": []byte(strings.Repeat("k", 64))}, 0); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("handshake: %v; serve said: %s", err, stderr.String())
	}
	stdout.Close() // the sender is gone: whatever serve writes now hits a broken pipe
	if err := c.Send(proto.EndBatch{Seq: 1}); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var werr error
	select {
	case werr = <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("serve did not end after its stdout broke; stderr: %s", stderr.String())
	}
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			t.Fatalf("serve was killed by %v when its stdout broke (stderr: %s)", ws.Signal(), stderr.String())
		}
	}
	stdin.Close()
	t.Logf("serve ended: %v; stderr: %s", werr, stderr.String())
	// It closed the state db on its way out: no unclean end recorded.
	st, err := state.Open(context.Background(), state.Options{Dir: stateDir, Node: "b"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if u, ok, _ := st.Unclean(); ok {
		t.Errorf("serve ended without closing its state db: %+v", u)
	}
}
