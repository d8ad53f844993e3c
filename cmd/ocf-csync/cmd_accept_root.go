package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"ocf-csync/syncer/engine"
)

func acceptRootCommand(env Env) *cli.Command {
	return &cli.Command{
		Name:      "accept-root",
		Usage:     "accept the file system now at an include root as the right one (the data moved to another disk on purpose); lifts the refusal here and, on the sender, the refusal it recorded",
		ArgsUsage: "PATH...",
		Action: func(c *cli.Context) error {
			s, err := openSession(c, "accept-root needs the include root PATH named in the refusal")
			if err != nil {
				return err
			}
			defer s.st.Close()
			for _, p := range s.paths {
				msg, err := engine.AcceptRoot(s.loaded.view, s.st, p)
				if err != nil {
					return err
				}
				if verbosity(c) >= 0 {
					fmt.Fprintln(env.Stdout, msg)
				}
			}
			return nil
		},
	}
}
