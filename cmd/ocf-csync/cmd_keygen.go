package main

import (
	"github.com/urfave/cli/v2"

	"ocf-csync/syncer/setup"
)

func keygenCommand(env Env) *cli.Command {
	return &cli.Command{
		Name:      "keygen",
		Usage:     "write a new group key to FILE: 64 characters of [A-Za-z0-9._], mode 0600; never overwrites (csync2 -k)",
		ArgsUsage: "FILE",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("keygen needs exactly one FILE")
			}
			if err := setup.WriteGroupKey(c.Args().First()); err != nil {
				return err
			}
			if c.Bool("json") {
				return writeJSON(env.Stdout, struct {
					KeyFile string `json:"key_file"`
				}{c.Args().First()})
			}
			return nil
		},
	}
}
