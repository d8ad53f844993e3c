package main

import (
	"github.com/urfave/cli/v2"

	"ocf-csync/syncer/setup"
)

func pushConfigCommand(env Env) *cli.Command {
	return &cli.Command{
		Name:      "push-config",
		Usage:     "copy the config, group keys, cluster identity and known_hosts to the peers over SFTP (atomic, owner and mode kept)",
		ArgsUsage: "[PEER...]",
		Description: "Copies as the administrator (see --admin-identity). A file a peer changed since this node last pushed it is\n" +
			"not overwritten without --force; a changed config is shown as a diff. SFTP targets get nothing: they need no config.",
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "force", Usage: "overwrite files the peer changed since this node last pushed them"},
		}, adminFlags()...),
		Action: func(c *cli.Context) error {
			ctx := c.Context
			l, err := loadConfig(ctx, c)
			if err != nil {
				return err
			}
			asJSON := c.Bool("json")
			o := setup.PushOptions{
				Config: l.cfg, ConfigPath: l.path, Node: l.view.Name, StateDir: stateDir(c, l.path),
				Peers: c.Args().Slice(), Force: c.Bool("force"), Admin: adminOf(c), Out: env.Stdout, Log: logger(ctx),
			}
			if asJSON {
				o.Out = nil
			}
			rep, err := setup.PushConfig(ctx, o)
			if !asJSON {
				return err
			}
			if werr := writeJSON(env.Stdout, struct {
				setup.PushReport
				Error *errorJSON `json:"error"`
			}{rep, errorObject(err)}); werr != nil {
				return werr
			}
			return reported(err)
		},
	}
}
