package state

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel errors; match them with errors.Is. The concrete errors carry a
// message for the user that names the directory and what to do.
var (
	// ErrLocked: another process owns the state DB (see *LockedError).
	ErrLocked = errors.New("state db is locked by another process")
	// ErrNoSentinel: the DB was used before but has lost its sentinel.
	ErrNoSentinel = errors.New("state db has lost its sentinel")
	// ErrCorrupt: badger found (or tripped over) damaged data.
	ErrCorrupt = errors.New("state db is corrupt")
	// ErrSchema: the DB was written by a newer ocf-csync.
	ErrSchema = errors.New("state db schema is newer than this program")
	// ErrNodeMismatch: the sentinel names another node.
	ErrNodeMismatch = errors.New("state db belongs to another node")
	// ErrNoDB: a read-only open found no DB.
	ErrNoDB = errors.New("state db does not exist")
	// ErrClosed: the store was used after Close.
	ErrClosed = errors.New("state db is closed")
	// ErrReadOnly: a write on a store opened with ReadOnly.
	ErrReadOnly = errors.New("state db is open read-only")
	// ErrNoSpace: the DB's file system has less than MinFree left, so
	// nothing is written to it (see MinFree).
	ErrNoSpace = errors.New("no space left for the state db")
)

// LockedError says who holds the state DB. errors.Is(err, ErrLocked) holds.
type LockedError struct {
	Dir     string
	PID     int       // 0 if unknown
	Cmdline string    // holder's command line, NULs turned into spaces
	Node    string    // holder's node name, if it wrote one
	Since   time.Time // when the holder took the lock; zero if unknown
	Waited  time.Duration
}

func (e *LockedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "state db %q is in use by ", e.Dir)
	if e.PID > 0 {
		fmt.Fprintf(&b, "pid %d", e.PID)
		if e.Cmdline != "" {
			fmt.Fprintf(&b, " (%s)", e.Cmdline)
		}
	} else {
		b.WriteString("another process")
	}
	if !e.Since.IsZero() {
		layout := "15:04:05"
		if y, m, d := e.Since.Date(); !sameDay(y, m, d, time.Now()) {
			layout = "2006-01-02 15:04:05"
		}
		fmt.Fprintf(&b, " since %s", e.Since.Local().Format(layout))
	}
	fmt.Fprintf(&b, "; waited %s. Stop that process, or use the running daemon (ocf-csync status), then retry.",
		e.Waited.Round(100*time.Millisecond))
	return b.String()
}

func sameDay(y int, m time.Month, d int, t time.Time) bool {
	ty, tm, td := t.Date()
	return y == ty && m == tm && d == td
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// dbError is a user-facing error that matches a sentinel error.
type dbError struct {
	kind error
	msg  string
}

func (e *dbError) Error() string        { return e.msg }
func (e *dbError) Is(target error) bool { return target == e.kind }
func (e *dbError) Unwrap() error        { return e.kind }

func corruptError(dir string, cause any) error {
	return &dbError{ErrCorrupt, fmt.Sprintf(
		"state db %q is corrupt (%s); nothing was changed; run `ocf-csync rebuild` to rebuild it from a scan",
		dir, shortCause(cause))}
}

// shortCause keeps the first line of a panic value or error: badger's panic
// text carries a multi-line table dump nobody should have to read.
func shortCause(cause any) string {
	s := fmt.Sprint(cause)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimSpace(strings.Trim(s, "="))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	if s == "" || s == "Recovered" {
		s = "damaged table data"
	}
	return s
}
