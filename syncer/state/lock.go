package state

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	lockName        = "ocf-csync.lock"
	usedName        = "ocf-csync.used"
	lockRetryPeriod = 100 * time.Millisecond
)

// holder is what the lock owner writes into the lock file so that a waiting
// process can say who is in the way.
type holder struct {
	PID     int       `json:"pid"`
	Cmdline string    `json:"cmdline"`
	Node    string    `json:"node,omitempty"`
	Since   time.Time `json:"since"`
}

// dirLock is an flock on <Dir>/ocf-csync.lock. The kernel drops it when the
// process dies, so a stale file never blocks anyone.
type dirLock struct {
	f     *os.File
	since time.Time
	// dead is what the previous owner wrote, when it ended without
	// releasing the lock (killed, crashed, power lost): release empties it.
	dead *holder
}

// acquireLock takes the lock, retrying until timeout or ctx ends. The file is
// opened O_CLOEXEC (Go's default), so children never inherit the lock.
func acquireLock(ctx context.Context, dir, node string, timeout time.Duration) (*dirLock, error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open state db lock %q: %w", path, err)
	}
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock state db %q: %w", path, err)
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			f.Close()
			return nil, lockedBy(dir, readHolder(path), time.Since(start))
		}
		t := time.NewTimer(min(wait, lockRetryPeriod))
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			le := lockedBy(dir, readHolder(path), time.Since(start))
			return nil, fmt.Errorf("%w (%w)", le, ctx.Err())
		case <-t.C:
		}
	}
	lk := &dirLock{f: f, since: time.Now()}
	if prev, err := io.ReadAll(io.NewSectionReader(f, 0, 64<<10)); err == nil && len(bytes.TrimSpace(prev)) > 0 {
		var h holder
		_ = json.Unmarshal(bytes.TrimSpace(prev), &h)
		lk.dead = &h
	}
	h := holder{PID: os.Getpid(), Cmdline: selfCmdline(), Node: node, Since: lk.since}
	data, _ := json.Marshal(h)
	data = append(data, '\n')
	// The file is ours now; a failed write only costs the waiter's message.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt(data, 0)
	}
	return lk, nil
}

func (l *dirLock) release() error {
	if l == nil || l.f == nil {
		return nil
	}
	// Leave the file in place: removing it would race with a waiter that
	// already opened it and then locks an unlinked inode.
	_ = l.f.Truncate(0)
	err := l.f.Close() // closing the last fd drops the flock
	l.f = nil
	return err
}

func lockedBy(dir string, h holder, waited time.Duration) *LockedError {
	return &LockedError{Dir: dir, PID: h.PID, Cmdline: h.Cmdline, Node: h.Node, Since: h.Since, Waited: waited}
}

// readHolder reads the lock file without the lock: it may be mid-write,
// so a parse failure just yields an unknown holder.
func readHolder(path string) holder {
	var h holder
	data, err := os.ReadFile(path)
	if err != nil {
		return h
	}
	if json.Unmarshal(bytes.TrimSpace(data), &h) != nil {
		return holder{}
	}
	return h
}

// badgerHolder describes the process named in badger's own LOCK pid file,
// for the case where badger's directory lock is held but ours is not (an
// old version or a foreign tool).
func badgerHolder(dir string) holder {
	data, err := os.ReadFile(filepath.Join(dir, "LOCK"))
	if err != nil {
		return holder{}
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return holder{}
	}
	h := holder{PID: pid, Cmdline: procCmdline(pid)}
	if fi, err := os.Stat(filepath.Join(dir, "LOCK")); err == nil {
		h.Since = fi.ModTime()
	}
	return h
}

func selfCmdline() string {
	if s := procCmdline(os.Getpid()); s != "" {
		return s
	}
	return strings.Join(os.Args, " ")
}

func procCmdline(pid int) string {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return ""
	}
	data = bytes.TrimRight(data, "\x00")
	return strings.ToValidUTF8(string(bytes.ReplaceAll(data, []byte{0}, []byte{' '})), "?")
}

// isBadgerLockErr recognises badger's directory-lock failure. badger wraps
// the flock errno with its own text, so the text is all there is to match.
func isBadgerLockErr(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "Cannot acquire directory lock") ||
		errors.Is(err, unix.EWOULDBLOCK))
}
