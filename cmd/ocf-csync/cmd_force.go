package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"ocf-csync/syncer/scan"
)

func forceCommand(env Env) *cli.Command {
	return &cli.Command{
		Name:      "force",
		Usage:     "make the local version win on the next push, over a conflict (csync2 -f); works without a prior dirty entry",
		ArgsUsage: "PATH...",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "recursive", Aliases: []string{"r"}, Usage: "also everything below PATH"},
		},
		Action: func(c *cli.Context) error {
			ctx := c.Context
			s, err := openSession(c, "force needs at least one PATH")
			if err != nil {
				return err
			}
			defer s.st.Close()
			l, st, paths := s.loaded, s.st, s.paths
			// Record the current state first, so a local deletion is known as one.
			if _, err := scan.Check(ctx, st, l.view, paths, c.Bool("recursive"), scan.Options{Ignore: l.cfg.Ignore, Logger: logger(ctx)}); err != nil {
				return err
			}
			n, err := scan.Mark(ctx, st, l.view, paths, c.Bool("recursive"), scan.Options{Ignore: l.cfg.Ignore, Force: true, Logger: logger(ctx)})
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return writeJSON(env.Stdout, struct {
					Forced int `json:"forced"`
				}{n})
			}
			if verbosity(c) >= 0 {
				fmt.Fprintf(env.Stdout, "forced %d entries: the local version wins on the next sync\n", n)
			}
			return nil
		},
	}
}
