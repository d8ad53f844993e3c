// Package transport is the SSH client side of ocf-csync: it connects to a
// peer's sshd with strict host key checking, a handshake deadline and
// keepalives, and runs commands (the remote helper) on exec channels.
package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// Defaults for the zero values of Peer.
const (
	DefaultPort           = 22
	DefaultUser           = "root"
	DefaultConnectTimeout = 10 * time.Second
	DefaultKeepalive      = 15 * time.Second
	// keepaliveMaxMissed replies missed in a row close the connection
	// (OpenSSH's ServerAliveCountMax default).
	keepaliveMaxMissed = 3
)

const clientVersion = "SSH-2.0-ocf-csync"

// Peer says how to reach one node.
type Peer struct {
	Name           string        // node name, for messages
	Addr           string        // host or IP to connect to (from host@iface, else the name)
	Port           int           // default 22
	User           string        // default root
	IdentityFile   string        // private key; used unless SSH_AUTH_SOCK is set and usable (then agent first, key file as fallback)
	KnownHostsFile string        // strict checking against this file
	AcceptNew      bool          // unknown host keys are appended to KnownHostsFile (a CHANGED key is still refused)
	ConnectTimeout time.Duration // dial + handshake deadline, default 10s
	Keepalive      time.Duration // keepalive@openssh.com period, default 15s; closed after 3 missed replies
}

func (p Peer) withDefaults() Peer {
	if p.Addr == "" {
		p.Addr = p.Name
	}
	if p.Name == "" {
		p.Name = p.Addr
	}
	if p.Port == 0 {
		p.Port = DefaultPort
	}
	if p.User == "" {
		p.User = DefaultUser
	}
	if p.ConnectTimeout <= 0 {
		p.ConnectTimeout = DefaultConnectTimeout
	}
	if p.Keepalive <= 0 {
		p.Keepalive = DefaultKeepalive
	}
	return p
}

// Conn is an authenticated SSH connection to one peer. Exec may be called
// from several goroutines; each call opens its own channel (sshd limits
// them per connection with MaxSessions, default 10).
type Conn struct {
	peer   Peer
	log    *slog.Logger
	tcp    *countingConn
	client *ssh.Client

	done      chan struct{} // closed by Close or when the connection is lost
	closeOnce sync.Once
	mu        sync.Mutex
	lost      error // why the connection ended, if not by Close
	closed    bool  // Close was called
}

// Dial connects to p, checks its host key strictly against p.KnownHostsFile
// and authenticates. The whole of TCP connect and SSH handshake must finish
// within p.ConnectTimeout. ctx cancels the dial; it does not bound the life
// of the returned connection.
func Dial(ctx context.Context, p Peer, log *slog.Logger) (*Conn, error) {
	p = p.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hp := hostPort(p.Addr, p.Port)
	log = log.With("peer", p.Name, "addr", hp)

	// Local problems first: no network traffic for a setup that cannot work.
	hk, err := newHostKeyPolicy(p)
	if err != nil {
		return nil, err
	}
	auth, err := loadAuth(p, log)
	if err != nil {
		return nil, err
	}
	defer auth.close()

	cfg := &ssh.ClientConfig{
		User:              p.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(auth.signers...)},
		HostKeyCallback:   hk.callback,
		HostKeyAlgorithms: hk.algos,
		ClientVersion:     clientVersion,
	}

	start := time.Now()
	deadline := start.Add(p.ConnectTimeout)
	nc, err := dialDeadline(ctx, p, p.ConnectTimeout)
	if err != nil {
		return nil, err
	}
	cc := &countingConn{Conn: nc}
	// ClientConfig.Timeout only covers the TCP dial; the handshake needs
	// its own deadline or a silent server hangs us forever.
	cc.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { cc.SetDeadline(time.Unix(1, 0)) })
	sshConn, chans, reqs, err := ssh.NewClientConn(cc, hp, cfg)
	stop()
	if err != nil {
		cc.Close()
		return nil, dialFailure(ctx, p, hk, auth, err)
	}
	cc.SetDeadline(time.Time{})
	if hk.accepted != nil {
		log.Warn("accepted new host key", "fingerprint", ssh.FingerprintSHA256(hk.accepted),
			"type", hk.accepted.Type(), "file", p.KnownHostsFile)
	}
	c := &Conn{
		peer:   p,
		log:    log,
		tcp:    cc,
		client: ssh.NewClient(sshConn, chans, reqs),
		done:   make(chan struct{}),
	}
	log.Debug("ssh connected", "user", p.User, "took", time.Since(start),
		"server", string(sshConn.ServerVersion()))
	go c.watch()
	go c.keepalive()
	return c, nil
}

// dialDeadline opens the TCP connection within timeout.
func dialDeadline(ctx context.Context, p Peer, timeout time.Duration) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(dctx, "tcp", hostPort(p.Addr, p.Port))
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("connect to peer %s (%s): %w", p.Name, hostPort(p.Addr, p.Port), ctx.Err())
		}
		return nil, classifyNetErr(p, "connect", timeout, err)
	}
	return nc, nil
}

// dialFailure explains why the SSH handshake failed.
func dialFailure(ctx context.Context, p Peer, hk *hostKeyPolicy, auth *authSetup, err error) error {
	if hk.rejected != nil {
		return hk.rejected
	}
	if ctx.Err() != nil {
		return fmt.Errorf("connect to peer %s (%s): %w", p.Name, hostPort(p.Addr, p.Port), ctx.Err())
	}
	var ane *ssh.AlgorithmNegotiationError
	if errors.As(err, &ane) && ane.What == "host key" {
		he := hk.noCommonHostKeyType()
		// Learn which key it offers instead, so the message can show the
		// fingerprint to verify.
		if key, ferr := FetchHostKey(ctx, p.Addr, p.Port, p.ConnectTimeout); ferr == nil {
			he.Fingerprint = ssh.FingerprintSHA256(key)
			he.KeyType = key.Type()
			he.TrustCommand = TrustCommand(p.Name, he.Fingerprint)
		}
		return he
	}
	if strings.Contains(err.Error(), "unable to authenticate") {
		return &AuthError{Peer: p.Name, Addr: p.Addr, Port: p.Port, User: p.User,
			IdentityFile: p.IdentityFile, Agent: auth.agent, PublicKey: auth.pubLine, Err: err}
	}
	if strings.Contains(err.Error(), "knownhosts") || strings.Contains(err.Error(), "known hosts") {
		return fmt.Errorf("peer %s (%s): %w: %w", p.Name, hostPort(p.Addr, p.Port), ErrHostKey, err)
	}
	return classifyNetErr(p, "handshake", p.ConnectTimeout, err)
}

// watch records why the connection ended when that was not Close.
func (c *Conn) watch() {
	err := c.client.Wait()
	c.fail(&DialError{Peer: c.peer.Name, Addr: c.peer.Addr, Port: c.peer.Port, Op: "connection",
		Reason: "connection closed", Err: err,
		Hint: fmt.Sprintf("check the network and sshd's log on %s; the sync will retry", c.peer.Name)})
}

// fail marks the connection lost with err (first cause wins) and closes it.
func (c *Conn) fail(err error) {
	c.mu.Lock()
	if c.lost == nil && !c.closed {
		c.lost = err
		c.log.Warn("ssh connection lost", "err", err)
	}
	c.mu.Unlock()
	c.shut()
}

func (c *Conn) shut() {
	c.closeOnce.Do(func() {
		close(c.done)
		c.client.Close()
	})
}

// lostErr is the reason the connection ended on its own, or nil.
func (c *Conn) lostErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lost
}

func (c *Conn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// keepalive sends keepalive@openssh.com every period. x/crypto serializes
// global requests, so at most one is outstanding; each tick that finds it
// still unanswered and nothing received since the last tick counts as a
// missed reply.
func (c *Conn) keepalive() {
	period := c.peer.Keepalive
	t := time.NewTicker(period)
	defer t.Stop()
	replies := make(chan error, 1)
	pending, missed := false, 0
	lastRecv := c.tcp.received.Load()
	for {
		select {
		case <-c.done:
			return
		case err := <-replies:
			pending, missed = false, 0
			if err != nil {
				return // the connection is gone; watch reports it
			}
		case <-t.C:
			// Any traffic from the peer proves it alive: a reply can sit
			// behind a full window of bulk data.
			if n := c.tcp.received.Load(); n != lastRecv {
				lastRecv, missed = n, 0
				if pending {
					continue
				}
			}
			if !pending {
				pending = true
				go func() {
					_, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil)
					replies <- err
				}()
				continue
			}
			missed++
			if missed >= keepaliveMaxMissed {
				c.fail(&DialError{Peer: c.peer.Name, Addr: c.peer.Addr, Port: c.peer.Port, Op: "connection",
					Reason: fmt.Sprintf("no keepalive reply and nothing else received for %d keepalive periods of %s", missed, period),
					Hint:   fmt.Sprintf("%s or the network to it is down or hung; the sync will retry", c.peer.Name)})
				return
			}
		}
	}
}

// Probe asks the server for an answer (a keepalive@openssh.com request;
// any reply counts) and waits for it up to the connect timeout: a
// connection that idled may be dead without either side knowing.
func (c *Conn) Probe(ctx context.Context) error {
	if err := c.lostErr(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.peer.ConnectTimeout)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil)
		errc <- err
	}()
	select {
	case err := <-errc:
		if err != nil {
			return fmt.Errorf("peer %s (%s): connection lost: %w", c.peer.Name, hostPort(c.peer.Addr, c.peer.Port), err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("peer %s (%s) did not answer within %s: %w", c.peer.Name, hostPort(c.peer.Addr, c.peer.Port), c.peer.ConnectTimeout, os.ErrDeadlineExceeded)
	}
}

// Close closes the connection and every session on it.
func (c *Conn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.shut()
	return nil
}

// Stats returns the bytes written to and read from the TCP connection,
// SSH framing and encryption included.
func (c *Conn) Stats() (sent, received int64) {
	return c.tcp.sent.Load(), c.tcp.received.Load()
}

// Peer returns the peer this connection goes to, defaults filled in.
func (c *Conn) Peer() Peer { return c.peer }

// countingConn counts bytes through a net.Conn.
type countingConn struct {
	net.Conn
	sent, received atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.received.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.sent.Add(int64(n))
	return n, err
}
