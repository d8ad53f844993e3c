package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"ocf-csync/syncer/engine"
	"ocf-csync/syncer/scan"
	"ocf-csync/syncer/state"
)

func resolveCommand(env Env) *cli.Command {
	return &cli.Command{
		Name:      "resolve",
		Usage:     "settle a stranded change or a conflict: keep this node's version, or take the peer's",
		ArgsUsage: "PATH",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "keep-local", Usage: "this node's version wins on the next push (like force)"},
			&cli.BoolFlag{Name: "keep-remote", Usage: "copy the peer's version here; it then goes to the other peers"},
			&cli.StringFlag{Name: "peer", Aliases: []string{"P"}, Usage: "the peer whose version is meant (default: the one recorded for PATH)"},
		},
		Action: func(c *cli.Context) error {
			ctx := c.Context
			if c.NArg() != 1 || c.Bool("keep-local") == c.Bool("keep-remote") {
				return usagef("resolve needs one PATH and exactly one of --keep-local or --keep-remote")
			}
			l, err := loadConfig(ctx, c)
			if err != nil {
				return err
			}
			if err := l.checkPeers([]string{c.String("peer")}); err != nil {
				return err
			}
			paths, err := absPaths(c, c.Args().Slice())
			if err != nil {
				return err
			}
			path := paths[0]
			st, err := openStore(ctx, c, l, false)
			if err != nil {
				return err
			}
			defer st.Close()
			peer := c.String("peer")
			if peer == "" {
				_ = st.StrandedList(func(s state.Stranded) error {
					if s.Path == path && peer == "" {
						peer = s.Peer
					}
					return nil
				})
				_ = st.Conflicts(func(cf state.Conflict) error {
					if cf.Path == path && peer == "" {
						peer = cf.Peer
					}
					return nil
				})
			}
			if peer == "" {
				return fmt.Errorf("no stranded change or conflict is recorded for %s; give --peer", engine.DisplayPath(path))
			}
			opts := scan.Options{Ignore: l.cfg.Ignore, Logger: logger(ctx)}
			if c.Bool("keep-remote") {
				if err := engine.TakeRemote(ctx, engine.CompareOptions{View: l.view, Store: st, Connect: engine.SSHConnector(l.cfg, l.path, logger(ctx)),
					Ignore: l.cfg.Ignore, Log: logger(ctx)}, l.cfg.Tempdir, peer, path); err != nil {
					return err
				}
			} else {
				if _, err := scan.Check(ctx, st, l.view, []string{path}, false, opts); err != nil {
					return err
				}
				opts.Force = true
				if _, err := scan.Mark(ctx, st, l.view, []string{path}, false, opts); err != nil {
					return err
				}
			}
			if err := st.DeleteStranded(peer, path); err != nil {
				return err
			}
			if err := st.DeleteConflict(path, peer); err != nil {
				return err
			}
			if c.Bool("json") {
				kept := "local"
				if c.Bool("keep-remote") {
					kept = "remote"
				}
				return writeJSON(env.Stdout, struct {
					Path string `json:"path"`
					Peer string `json:"peer"`
					Kept string `json:"kept"` // local or remote
				}{path, peer, kept})
			}
			side := "this node's"
			if c.Bool("keep-remote") {
				side = peer + "'s"
			}
			fmt.Fprintf(env.Stdout, "%s: %s version wins; the next sync carries it to the other nodes\n", engine.DisplayPath(path), side)
			return nil
		},
	}
}
