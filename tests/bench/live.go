package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"ocf-csync/tests/cluster"
)

// Live changes: the daemon on node1 (watch on, rescans 10 minutes apart)
// pushes one small file to node2 and node3; the latency is from the write
// on node1 to the new content being in place on both peers, seen through
// inotify on the peers' directories.
const (
	liveSrc    = "/srv/ocf-csync/live"
	liveFile   = "live.txt"
	liveStatus = "/run/bench-live.status"
	liveGap    = 30 * time.Millisecond // between a sample's arrival and the next write
	liveWait   = 10 * time.Second      // a sample that takes longer fails
)

func (b *bench) livePeers() []*cluster.Node { return b.r.c.Nodes()[1:3] }

// startDaemon starts the daemon on node1 and waits for its first cycle.
func (b *bench) startDaemon(ctx context.Context) (*exec.Cmd, *bytes.Buffer, error) {
	n1 := b.r.n1
	os.Remove(n1.Path(liveStatus))
	cmd := n1.Command(ctx, "ocf-csync", "--config", "/etc/ocf-csync/live.cfg", "--node", "node1",
		"daemon", "--status-file", liveStatus, "--rescan-interval", "600")
	cmd.Env = append(cmd.Env, ocfEnv()...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start the daemon on node1: %w", err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		var st struct {
			State    string    `json:"state"`
			LastSync time.Time `json:"last_sync"`
			Watch    bool      `json:"watch"`
		}
		if data, err := os.ReadFile(n1.Path(liveStatus)); err == nil && json.Unmarshal(data, &st) == nil && !st.LastSync.IsZero() {
			return cmd, &logs, nil
		}
		if cmd.ProcessState != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	return nil, nil, fmt.Errorf("the daemon on node1 did not finish its first cycle within 60 s: %s", lastLines(logs.String(), 8))
}

// stopDaemon sends SIGTERM and returns how long the daemon took to exit
// (its final sync).
func stopDaemon(cmd *exec.Cmd, logs *bytes.Buffer) (time.Duration, error) {
	t0 := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		d := time.Since(t0)
		if err != nil {
			return d, fmt.Errorf("daemon exit: %w: %s", err, lastLines(logs.String(), 6))
		}
		return d, nil
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		return 0, errors.New("the daemon did not stop within 60 s of SIGTERM")
	}
}

func (b *bench) live(ctx context.Context) error {
	nodes := append([]*cluster.Node{b.r.n1}, b.livePeers()...)
	text := b.ocfConfigHosts("live", liveSrc, "", []string{"node1", "node2", "node3"}, false)
	for _, n := range nodes {
		if err := os.MkdirAll(n.Path(liveSrc), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(n.Path("/etc/ocf-csync/live.cfg"), []byte(text), 0o600); err != nil {
			return err
		}
	}
	if err := os.WriteFile(b.r.n1.Path(liveSrc+"/seed.txt"), []byte("seed\n"), 0o644); err != nil {
		return err
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("live: inotify: %w", err)
	}
	defer w.Close()
	for _, n := range b.livePeers() {
		if err := w.Add(n.Path(liveSrc)); err != nil {
			return fmt.Errorf("live: watch %s: %w", n.Path(liveSrc), err)
		}
	}

	sec := b.rep.section("live")
	logf("live: starting the daemon on node1; %d samples to node2 and node3", b.p.liveSamples)
	cmd, logs, err := b.startDaemon(ctx)
	if err != nil {
		return err
	}
	began := time.Now()
	for i := range b.p.liveSamples {
		if b.p.liveCap > 0 && time.Since(began) > b.p.liveCap {
			sec.note(fmt.Sprintf("QUICK: sampling stopped after %v (%d of %d samples)", b.p.liveCap, i, b.p.liveSamples))
			break
		}
		if err := ctx.Err(); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return err
		}
		body := []byte(fmt.Sprintf("sample %d at %d\n", i, time.Now().UnixNano()))
		t0 := time.Now()
		if err := os.WriteFile(b.r.n1.Path(liveSrc+"/"+liveFile), body, 0o644); err != nil {
			return err
		}
		s := sample{tool: "live", round: i}
		s.wall, s.err = b.waitArrival(w, body, t0)
		if s.err != nil {
			logf("live: sample %d: %v", i, s.err)
		}
		sec.samples = append(sec.samples, s)
		time.Sleep(liveGap)
	}
	sec.command(cmdLine(job{args: cmd.Args[slices.Index(cmd.Args, "--")+1:]}))
	logf("live: stopping the daemon (final sync, nothing pending)")
	stop := b.rep.section("stop")
	for round := range b.p.reps {
		if round > 0 {
			if cmd, logs, err = b.startDaemon(ctx); err != nil {
				return err
			}
		}
		d, err := stopDaemon(cmd, logs)
		stop.samples = append(stop.samples, sample{tool: "final sync on stop", wall: d, err: err, round: round})
		logf("live: stop %d took %.3fs (%v)", round+1, d.Seconds(), err)
	}
	return nil
}

// waitArrival waits until both live peers hold body, from inotify events
// on their directories (a poll every 100 ms backs them up).
func (b *bench) waitArrival(w *fsnotify.Watcher, body []byte, t0 time.Time) (time.Duration, error) {
	have := func() bool {
		for _, n := range b.livePeers() {
			got, err := os.ReadFile(n.Path(liveSrc + "/" + liveFile))
			if err != nil || !bytes.Equal(got, body) {
				return false
			}
		}
		return true
	}
	deadline := time.NewTimer(liveWait)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case ev := <-w.Events:
			if filepath.Base(ev.Name) != liveFile {
				continue
			}
			if have() {
				return time.Since(t0), nil
			}
		case err := <-w.Errors:
			return 0, fmt.Errorf("inotify: %w", err)
		case <-tick.C:
			if have() {
				return time.Since(t0), nil
			}
		case <-deadline.C:
			return 0, fmt.Errorf("the change did not reach node2 and node3 within %v", liveWait)
		}
	}
}
