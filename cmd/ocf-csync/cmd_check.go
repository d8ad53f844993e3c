package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"ocf-csync/syncer/config"
	"ocf-csync/syncer/engine"
	"ocf-csync/syncer/scan"
	"ocf-csync/syncer/state"
)

func configCommand(env Env) *cli.Command {
	return &cli.Command{
		Name:  "config",
		Usage: "work with the configuration",
		Subcommands: []*cli.Command{{
			Name:  "check",
			Usage: "validate the config, lint it on this host and print what it means for this node (exit 3 on errors)",
			Flags: []cli.Flag{
				&cli.BoolFlag{Name: "strict", Usage: "treat warnings as errors (exit 3)"},
			},
			Action: func(c *cli.Context) error {
				l, err := loadConfigLinted(c.Context, c)
				if err != nil {
					return err
				}
				issues := l.view.Lint()
				sum := l.view.Summary()
				sum.Issues = config.IssueSummaries(issues)
				if c.Bool("json") {
					err = writeJSON(env.Stdout, sum)
				} else {
					err = sum.WriteText(env.Stdout)
				}
				if err != nil {
					return err
				}
				// Each issue once, on stderr (the lint includes the
				// parser's warnings, which loadConfig would log again).
				for _, i := range issues {
					fmt.Fprintf(env.Stderr, "ocf-csync: %s\n", i)
				}
				errs, warns := config.Counts(issues)
				if errs > 0 || (c.Bool("strict") && warns > 0) {
					return exitStatus(exitCodes[kindConfig].cli)
				}
				return nil
			},
		}},
	}
}

func checkCommand(env Env) *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "scan for changes and mark them dirty for the peers (csync2 -c, -cr, -cIr)",
		ArgsUsage: "[PATH...]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "recursive", Aliases: []string{"r"}, Usage: "descend into the given directories"},
			&cli.BoolFlag{Name: "init", Aliases: []string{"I"}, Usage: "record the current state without marking anything dirty (csync2 -cIr)"},
			&cli.BoolFlag{Name: "force", Aliases: []string{"F"}, Usage: "mark new dirty entries as forced"},
			progressFlags()[0], progressFlags()[1],
		},
		Action: func(c *cli.Context) error {
			ctx := c.Context
			start := time.Now()
			l, err := loadConfig(ctx, c)
			if err != nil {
				return err
			}
			paths, err := absPaths(c, c.Args().Slice())
			if err != nil {
				return err
			}
			st, err := openStore(ctx, c, l, false)
			if err != nil {
				return err
			}
			defer st.Close()
			recursive := c.Bool("recursive") || len(paths) == 0
			var tally *scan.Tally
			if showProgress(progressSituationOf(env, c)) {
				ui := newProgressUI(env.Stderr)
				tally = &scan.Tally{}
				stop := ui.scanLine(tally)
				defer ui.wait()
				defer stop()
			}
			res, err := scan.Check(ctx, st, l.view, paths, recursive, scan.Options{
				Ignore: l.cfg.Ignore, Init: c.Bool("init"), Force: c.Bool("force"),
				Logger: logger(ctx).With("component", "scan"), Tally: tally,
			})
			if err != nil {
				return err
			}
			for _, e := range res.Errors {
				logger(ctx).Warn(e.Error())
			}
			if c.Bool("json") {
				if err := writeJSON(env.Stdout, checkJSON{Scanned: res.Scanned, Hashed: res.Hashed, New: res.New,
					Changed: res.Changed, MetaOnly: res.MetaOnly, Deleted: res.Deleted, Dirtied: res.Dirtied,
					Problems: errorStrings(res.Errors), Refusals: orEmptyRefusals(res.Refused),
					DurationSeconds: seconds(time.Since(start))}); err != nil {
					return err
				}
			} else if verbosity(c) >= 0 {
				fmt.Fprintf(env.Stdout, "checked %d entries: %d new, %d changed (%d metadata only), %d deleted; %d marked dirty\n",
					res.Scanned, res.New, res.Changed, res.MetaOnly, res.Deleted, res.Dirtied)
			}
			if len(res.Refused) > 0 {
				// Not walked, so nothing below them was recorded as deleted.
				return &engine.RefusedError{Refusals: res.Refused}
			}
			return nil
		},
	}
}

// checkJSON is check's --json output.
type checkJSON struct {
	Scanned  int      `json:"scanned"`
	Hashed   int      `json:"hashed"`
	New      int      `json:"new"`
	Changed  int      `json:"changed"`
	MetaOnly int      `json:"meta_only"`
	Deleted  int      `json:"deleted"`
	Dirtied  int      `json:"dirtied"`
	Problems []string `json:"problems"` // per-path problems; the scan went on past them
	// Refusals: include roots not walked (vanished, emptied, another file
	// system): nothing below them was recorded as deleted.
	Refusals        []state.Refusal `json:"refusals"`
	DurationSeconds float64         `json:"duration_seconds"`
}

func orEmptyRefusals(rs []state.Refusal) []state.Refusal {
	if rs == nil {
		return []state.Refusal{}
	}
	return rs
}

func markCommand(env Env) *cli.Command {
	return &cli.Command{
		Name:      "mark",
		Usage:     "mark files dirty for every peer without checking them (csync2 -m)",
		ArgsUsage: "PATH...",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "recursive", Aliases: []string{"r"}, Usage: "also every recorded file below PATH"},
		},
		Action: func(c *cli.Context) error {
			ctx := c.Context
			s, err := openSession(c, "mark needs at least one PATH")
			if err != nil {
				return err
			}
			defer s.st.Close()
			l, st, paths := s.loaded, s.st, s.paths
			n, err := scan.Mark(ctx, st, l.view, paths, c.Bool("recursive"), scan.Options{Ignore: l.cfg.Ignore, Logger: logger(ctx)})
			if err = warnNotIncluded(ctx, err); err != nil {
				return err
			}
			if c.Bool("json") {
				return writeJSON(env.Stdout, struct {
					Marked int `json:"marked"`
				}{n})
			}
			if verbosity(c) >= 0 {
				fmt.Fprintf(env.Stdout, "marked %d dirty\n", n)
			}
			return nil
		},
	}
}

// warnNotIncluded prints the paths outside every group from Mark's joined
// error as warnings, as check does, and returns the real errors.
func warnNotIncluded(ctx context.Context, err error) error {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else if err != nil {
		errs = []error{err}
	}
	var rest []error
	for _, e := range errs {
		if ni := (*scan.NotIncludedError)(nil); errors.As(e, &ni) {
			logger(ctx).Warn(e.Error())
			continue
		}
		rest = append(rest, e)
	}
	return errors.Join(rest...)
}
