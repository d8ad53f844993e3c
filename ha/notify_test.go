package ha

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNotify(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	hook := filepath.Join(dir, "hook")
	script := "#!/bin/sh\nprintf '%s|' \"$@\" >" + out + "\nprintf 'env %s %s %s %s' \"$EVENT\" \"$NODE\" \"$PEER\" \"$DETAIL\" >>" + out + "\necho hello from hook\n"
	if err := os.WriteFile(hook, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	n := &Notifier{Command: hook + " --flag", Log: slog.New(slog.NewTextHandler(&logs, nil))}
	detail := `2 files: "a b" and $HOME`
	if err := n.Notify(context.Background(), EventStranded, "node2", "node1", detail); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	want := `--flag|stranded|node2|node1|` + detail + `|env stranded node2 node1 ` + detail
	if string(got) != want {
		t.Errorf("hook saw %q, want %q", got, want)
	}
	if !strings.Contains(logs.String(), "hello from hook") {
		t.Errorf("hook output not logged: %s", logs.String())
	}
}

func TestNotifyFailures(t *testing.T) {
	ctx := context.Background()
	if err := Notify(ctx, "", EventStart, "n", "", ""); err != nil {
		t.Errorf("empty command: %v", err)
	}
	err := Notify(ctx, "echo broken >&2; exit 3", EventConflict, "n", "p", "d")
	if err == nil || !strings.Contains(err.Error(), "broken") || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("failing hook: err = %v, want exit status 3 and its output", err)
	}
	// A hook that hangs (and leaves a child holding the output pipe) is
	// killed with its process group.
	n := &Notifier{Command: "sleep 30 & sleep 30; true", Timeout: 100 * time.Millisecond}
	start := time.Now()
	err = n.Notify(ctx, EventOverlap, "n", "", "")
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("hanging hook: err = %v, want a timeout", err)
	}
	t.Logf("hanging hook returned after %v", time.Since(start).Round(time.Millisecond))
}
