package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/ssh"

	"ocf-csync/syncer/config"
	"ocf-csync/syncer/transport"
)

func trustHostCommand(env Env) *cli.Command {
	return &cli.Command{
		Name:  "trust-host",
		Usage: "record a peer's SSH host key in the known_hosts file of the config's ssh { } block",
		Description: "Fetches the key the peer offers now and appends it only if its fingerprint equals --fingerprint\n" +
			"(compare it with 'ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub' on the peer).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "peer", Required: true, Usage: "peer `NAME` as in the config's host lines"},
			&cli.StringFlag{Name: "fingerprint", Usage: "expected `SHA256:...` fingerprint"},
			&cli.BoolFlag{Name: "yes", Usage: "trust whatever key the peer offers (trust on first use)"},
		},
		Action: func(c *cli.Context) error {
			ctx := c.Context
			l, err := loadConfig(ctx, c)
			if err != nil {
				return err
			}
			name := strings.ToLower(c.String("peer"))
			if err := l.checkPeers([]string{name}); err != nil {
				return err
			}
			var host config.Host
			found := false
			for _, g := range l.view.Groups {
				if h, ok := g.Host(name); ok {
					host, found = h, true
					break
				}
			}
			if !found {
				return usagef("peer %q is not a host of any group of node %s", name, l.view.Name)
			}
			want := c.String("fingerprint")
			if want == "" && !c.Bool("yes") {
				return usagef("give --fingerprint SHA256:... (or --yes to trust the key offered now)")
			}
			key, err := transport.FetchHostKey(ctx, host.Addr, l.cfg.SSH.Port, l.cfg.SSH.ConnectTimeout)
			if err != nil {
				return fmt.Errorf("fetch host key of peer %s (%s:%d): %w", name, host.Addr, l.cfg.SSH.Port, err)
			}
			got := ssh.FingerprintSHA256(key)
			if want != "" && got != want {
				return fmt.Errorf("peer %s (%s:%d) offers key %s, not %s: nothing was recorded; check the peer's host key before trusting it",
					name, host.Addr, l.cfg.SSH.Port, got, want)
			}
			if err := transport.AppendKnownHost(l.cfg.SSH.KnownHosts, host.Addr, l.cfg.SSH.Port, key); err != nil {
				return err
			}
			if c.Bool("json") {
				return writeJSON(env.Stdout, struct {
					Peer        string `json:"peer"`
					Address     string `json:"address"`
					Port        int    `json:"port"`
					KeyType     string `json:"key_type"`
					Fingerprint string `json:"fingerprint"`
					KnownHosts  string `json:"known_hosts"`
				}{name, host.Addr, l.cfg.SSH.Port, key.Type(), got, l.cfg.SSH.KnownHosts})
			}
			fmt.Fprintf(env.Stdout, "recorded %s key %s of peer %s (%s:%d) in %s\n", key.Type(), got, name, host.Addr, l.cfg.SSH.Port, l.cfg.SSH.KnownHosts)
			return nil
		},
	}
}
