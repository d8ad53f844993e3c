package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"ocf-csync/ocf"
	"ocf-csync/syncer/engine"
)

// TestShowProgress is the decision table: live lines only on a terminal,
// never under OCF, in cron (no TERM), with -q, --json or -v, unless
// --progress says so; --no-progress always wins.
func TestShowProgress(t *testing.T) {
	tty := progressSituation{tty: true}
	for _, tc := range []struct {
		name string
		s    progressSituation
		want bool
	}{
		{"terminal", tty, true},
		{"pipe", progressSituation{}, false},
		{"pipe with --progress", progressSituation{on: true}, true},
		{"terminal with --no-progress", progressSituation{tty: true, off: true}, false},
		{"both flags: --no-progress wins", progressSituation{tty: true, on: true, off: true}, false},
		{"under OCF", progressSituation{tty: true, ocf: true}, false},
		{"cron: no TERM", progressSituation{tty: true, dumbTerm: true}, false},
		{"-q or --json", progressSituation{tty: true, quiet: true}, false},
		{"-v prints a line per file", progressSituation{tty: true, verbose: true}, false},
		{"under OCF with --progress", progressSituation{tty: true, ocf: true, on: true}, true},
	} {
		if got := showProgress(tc.s); got != tc.want {
			t.Errorf("%s: showProgress = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestProgressRendering draws two peers' lines into a pty and reads what a
// terminal would show.
func TestProgressRendering(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pty here: %v", err)
	}
	defer ptmx.Close()
	defer tty.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 24, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	var screen bytes.Buffer
	done := make(chan struct{})
	go func() { io.Copy(&screen, ptmx); close(done) }()

	env := Env{Stderr: tty, Environ: []string{"TERM=xterm"}}
	s := progressSituation{tty: true}
	s.tty = isTTY(env)
	if !showProgress(s) {
		t.Fatal("a pty is not taken for a terminal")
	}
	ui := newProgressUI(tty)
	ui.observe(engine.PeerProgress{Peer: "node2", Planned: 4, PlannedBytes: 4 << 20})
	ui.observe(engine.PeerProgress{Peer: "node3", Planned: 2})
	ui.observe(engine.PeerProgress{Peer: "node4"}) // nothing planned: no line
	for i := 1; i <= 4; i++ {
		ui.observe(engine.PeerProgress{Peer: "node2", Planned: 4, PlannedBytes: 4 << 20, Done: i, DoneBytes: int64(i) << 20})
		time.Sleep(200 * time.Millisecond)
		if i == 2 {
			ui.observe(engine.PeerProgress{Peer: "node3", Planned: 2, Done: 1})
		}
	}
	ui.observe(engine.PeerProgress{Peer: "node2", Finished: true})
	ui.observe(engine.PeerProgress{Peer: "node3", Finished: true, Err: context.DeadlineExceeded})
	ui.wait()
	tty.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
	out := screen.String()
	for _, want := range []string{"node2", "2/4 files 2.0 MiB/4.0 MiB", "4/4 files 4.0 MiB/4.0 MiB", "MiB/s", "node3", "1/2 files", "failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("the terminal does not show %q:\n%q", want, out)
		}
	}
	if strings.Contains(out, "node4") {
		t.Errorf("a peer with nothing planned got a line:\n%q", out)
	}
}

func isTTY(env Env) bool { return ocf.IsTerminal(env.Stderr) }

// TestProgressOnlyOnATerminal runs check with stderr on a pty (a scan
// line appears) and on a pipe (nothing but the result).
func TestProgressOnlyOnATerminal(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.cfg")
	key := filepath.Join(dir, "key")
	os.MkdirAll(filepath.Join(dir, "data"), 0o755)
	os.WriteFile(filepath.Join(dir, "data", "a"), []byte("a"), 0o644)
	os.WriteFile(key, []byte(strings.Repeat("k", 40)), 0o600)
	os.WriteFile(cfg, []byte("group g { host n1 n2; key "+key+"; include "+filepath.Join(dir, "data")+"; }\n"), 0o644)
	run := func(stderr *os.File, extra ...string) {
		t.Helper()
		env := Env{Stdout: io.Discard, Stderr: stderr, Environ: []string{"TERM=xterm"}}
		args := append([]string{"ocf-csync", "--config", cfg, "--node", "n1", "--state-dir", filepath.Join(dir, "state"), "check"}, extra...)
		if err := Main(context.Background(), env, args); err != nil {
			t.Fatal(err)
		}
	}
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pty here: %v", err)
	}
	defer ptmx.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 24, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	var screen bytes.Buffer
	done := make(chan struct{})
	go func() { io.Copy(&screen, ptmx); close(done) }()
	run(tty)
	run(tty, "--no-progress")
	tty.Close()
	<-done
	if n := strings.Count(screen.String(), "entries,"); n != 1 {
		t.Errorf("check on a terminal drew %d scan lines, want 1 (the second run had --no-progress):\n%q", n, screen.String())
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	run(pw)
	pw.Close()
	piped, _ := io.ReadAll(pr)
	if len(piped) != 0 {
		t.Errorf("check on a pipe wrote to stderr: %q", piped)
	}
}
