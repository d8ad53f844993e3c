package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"
)

// Sentinels for classification with errors.Is. Every error Dial, Exec and
// the session methods return for these causes matches exactly one of them.
var (
	// ErrHostKey: the peer's host key is unknown, changed, revoked, or the
	// known_hosts file cannot be read.
	ErrHostKey = errors.New("ssh host key verification failed")
	// ErrAuth: the key file cannot be used or the peer refused our keys.
	ErrAuth = errors.New("ssh authentication failed")
	// ErrUnreachable: TCP connect failed, the handshake timed out or broke,
	// or an established connection was lost (keepalive, reset).
	ErrUnreachable = errors.New("ssh peer unreachable")
)

// DialError reports a peer that cannot be reached or whose connection broke.
type DialError struct {
	Peer string
	Addr string
	Port int
	// Op is the step that failed: "connect", "handshake" or "connection"
	// (an established connection that was lost).
	Op string
	// Reason is a short classification: "connection refused", "timed out",
	// "no route to host", "name resolution failed", "connection lost", ….
	Reason string
	// Hint says what to do.
	Hint string
	Err  error
}

func (e *DialError) Error() string {
	where := fmt.Sprintf("peer %s (%s)", e.Peer, hostPort(e.Addr, e.Port))
	var msg string
	switch e.Op {
	case "connect":
		msg = "cannot connect to " + where + ": " + e.Reason
	case "handshake":
		msg = "ssh handshake with " + where + " failed: " + e.Reason
	default:
		msg = "connection to " + where + " lost: " + e.Reason
	}
	if e.Err != nil && e.Err.Error() != e.Reason {
		msg += " (" + e.Err.Error() + ")"
	}
	if e.Hint != "" {
		msg += "; " + e.Hint
	}
	return msg
}

func (e *DialError) Unwrap() error { return e.Err }

func (e *DialError) Is(target error) bool { return target == ErrUnreachable }

// hostPort is net.JoinHostPort with an int port.
func hostPort(addr string, port int) string {
	return net.JoinHostPort(addr, strconv.Itoa(port))
}

// classifyNetErr turns a dial or handshake I/O error into a DialError with a
// reason and a hint a user can act on.
func classifyNetErr(p Peer, op string, timeout time.Duration, err error) *DialError {
	e := &DialError{Peer: p.Name, Addr: p.Addr, Port: p.Port, Op: op, Err: err}
	var dnsErr *net.DNSError
	var ne net.Error
	switch {
	case errors.As(err, &dnsErr):
		e.Reason = "name resolution failed"
		e.Hint = fmt.Sprintf("check the address of peer %s in the configuration, DNS or /etc/hosts", p.Name)
	case errors.Is(err, syscall.ECONNREFUSED):
		e.Reason = "connection refused"
		e.Hint = fmt.Sprintf("check that sshd runs on %s and listens on port %d", p.Name, p.Port)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		e.Reason = "no route to host"
		e.Hint = fmt.Sprintf("check that %s is up and the address %s is right for this network", p.Name, p.Addr)
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		e.Reason = fmt.Sprintf("timed out after %s", timeout)
		if op == "connect" {
			e.Hint = fmt.Sprintf("%s may be down, or a firewall drops packets to port %d", p.Name, p.Port)
		} else {
			e.Hint = fmt.Sprintf("the host accepted TCP but did not complete the SSH handshake; check that port %d is sshd and that sshd is not overloaded (MaxStartups)", p.Port)
		}
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF):
		e.Reason = "connection closed by the peer"
		e.Hint = fmt.Sprintf("check sshd's log on %s (MaxStartups, AllowUsers, ListenAddress)", p.Name)
	default:
		e.Reason = "failed"
		if op == "handshake" {
			e.Hint = fmt.Sprintf("check that port %d on %s is an OpenSSH server", p.Port, p.Name)
		}
	}
	return e
}
