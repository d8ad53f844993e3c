package ha

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Notify events (DESIGN.md §7, issue 6 item 8).
const (
	EventStart               = "start"
	EventStop                = "stop"
	EventTakeoverUnclean     = "takeover-unclean"
	EventPeerUnreachable     = "peer-unreachable"
	EventConflict            = "conflict"
	EventStranded            = "stranded"
	EventOverlap             = "overlap"
	EventFinalSyncIncomplete = "final-sync-incomplete"
	EventMassDeleteRefused   = "mass-delete-refused" // a cycle would delete more than the safety block allows
	EventRootRefused         = "root-refused"        // an include root vanished, emptied or changed file system (here or on PEER)
	// EventNotCurrent: this node became active with data that is not
	// current and could not catch up from a current peer.
	EventNotCurrent      = "not-current"
	DefaultNotifyTimeout = 30 * time.Second
	notifyOutputLimit    = 4096
)

// Notifier runs the configured notify command.
type Notifier struct {
	Command string        // shell command; "" disables notifications
	Timeout time.Duration // DefaultNotifyTimeout when 0
	Log     *slog.Logger  // gets the command's output; nil discards
}

// Notify runs cmd (a shell command line, as configured in ha { notify … })
// with EVENT, NODE, PEER and DETAIL appended as four arguments (to the
// line's last command: notify "/usr/local/sbin/page-admins" runs
// page-admins EVENT NODE PEER DETAIL) and set in its environment, bounded
// by DefaultNotifyTimeout; on timeout its whole process group is killed.
// An empty cmd does nothing. Failures are returned; callers only log them.
func Notify(ctx context.Context, cmd, event, node, peer, detail string) error {
	return (&Notifier{Command: cmd}).Notify(ctx, event, node, peer, detail)
}

// Notify runs the command; see the function Notify.
func (n *Notifier) Notify(ctx context.Context, event, node, peer, detail string) error {
	if strings.TrimSpace(n.Command) == "" {
		return nil
	}
	t := n.Timeout
	if t <= 0 {
		t = DefaultNotifyTimeout
	}
	log := n.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(ctx, t)
	defer cancel()
	// "$@" hands the four values over as arguments without the shell
	// re-splitting them, whatever they contain.
	c := exec.CommandContext(ctx, "/bin/sh", "-c", n.Command+` "$@"`, "notify", event, node, peer, detail)
	c.Env = append(os.Environ(), "EVENT="+event, "NODE="+node, "PEER="+peer, "DETAIL="+detail)
	// Its own process group, so a timeout also kills what the hook started.
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	c.WaitDelay = time.Second
	var out limitedBuffer
	c.Stdout, c.Stderr = &out, &out
	start := time.Now()
	err := c.Run()
	output := strings.TrimSpace(out.String())
	l := log.With("event", event, "peer", peer, "command", n.Command)
	if output != "" {
		l.Info("notify hook output", "output", output)
	}
	if err != nil {
		if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("no exit within %v, killed", t)
		}
		l.Warn("notify hook failed", "err", err, "took", time.Since(start).Round(time.Millisecond))
		if output != "" {
			return fmt.Errorf("notify hook %q for event %s: %w: %s", n.Command, event, err, firstLine(output))
		}
		return fmt.Errorf("notify hook %q for event %s: %w", n.Command, event, err)
	}
	l.Debug("notify hook ran", "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// limitedBuffer keeps the first notifyOutputLimit bytes written to it.
type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := notifyOutputLimit - b.Len(); room > 0 {
		if len(p) > room {
			b.Buffer.Write(p[:room])
		} else {
			b.Buffer.Write(p)
		}
	}
	return len(p), nil
}
