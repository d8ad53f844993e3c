package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"ocf-csync/ha"
)

func unblockCommand(env Env) *cli.Command {
	return &cli.Command{
		Name:      "unblock",
		Usage:     "lift the failover guard for a peer: pushes to it resume (review 'ocf-csync status' first)",
		ArgsUsage: "PEER",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("unblock needs one PEER")
			}
			l, err := loadConfig(c.Context, c)
			if err != nil {
				return err
			}
			st, err := openStore(c.Context, c, l, false)
			if err != nil {
				return err
			}
			defer st.Close()
			peer := c.Args().First()
			if err := ha.Unblock(st, peer); err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "pushes to %s resume with the next sync\n", peer)
			return nil
		},
	}
}
