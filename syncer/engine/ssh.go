package engine

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"ocf-csync/syncer/config"
	"ocf-csync/syncer/transport"
)

// SSHConnector connects to peers with the config's ssh { } settings and
// starts the remote helper on an exec channel.
func SSHConnector(cfg *config.Config, configPath string, log *slog.Logger) Connector {
	return func(ctx context.Context, h config.Host) (Channel, error) {
		conn, err := transport.Dial(ctx, sshPeer(cfg, h), log.With("peer", h.Name))
		if err != nil {
			return nil, err
		}
		cmd := RemoteCommand(cfg.SSH.RemoteCommand, configPath, h.Name)
		sess, err := conn.Exec(ctx, cmd)
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("start %q on peer %s: %w", cmd, h.Name, err)
		}
		return &sshChannel{conn: conn, sess: sess}, nil
	}
}

// sshPeer says how to reach host h with the config's ssh { } settings.
func sshPeer(cfg *config.Config, h config.Host) transport.Peer {
	return transport.Peer{
		Name: h.Name, Addr: h.Addr, Port: cfg.SSH.Port, User: cfg.SSH.User,
		IdentityFile: cfg.SSH.Identity, KnownHostsFile: cfg.SSH.KnownHosts, AcceptNew: cfg.SSH.AcceptNew,
		ConnectTimeout: cfg.SSH.ConnectTimeout, Keepalive: cfg.SSH.Keepalive,
	}
}

// RemoteCommand is what the peer runs: the configured helper command, told
// which config to read and which node it is. With a forced command in
// authorized_keys, sshd ignores these arguments and the helper's defaults apply.
func RemoteCommand(base, configPath, peer string) string {
	var b strings.Builder
	b.WriteString(base)
	if configPath != "" {
		b.WriteString(" --config " + shellQuote(configPath))
	}
	b.WriteString(" --node " + shellQuote(peer))
	return b.String()
}

type sshChannel struct {
	conn *transport.Conn
	sess *transport.Session
}

func (c *sshChannel) Read(p []byte) (int, error)  { return c.sess.Stdout.Read(p) }
func (c *sshChannel) Write(p []byte) (int, error) { return c.sess.Stdin.Write(p) }
func (c *sshChannel) CloseWrite() error           { return c.sess.Stdin.Close() }
func (c *sshChannel) Wait() error                 { return c.sess.Wait() }
func (c *sshChannel) Stderr() string              { return c.sess.Stderr() }
func (c *sshChannel) Counters() (int64, int64)    { return c.conn.Stats() }

// Probe checks that the connection still answers (Pool, before reuse).
func (c *sshChannel) Probe(ctx context.Context) error { return c.conn.Probe(ctx) }
func (c *sshChannel) Close() error {
	c.sess.Close()
	return c.conn.Close()
}
