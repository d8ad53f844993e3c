package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

func csync2Command(env Env) *cli.Command {
	return &cli.Command{
		Name:            "csync2",
		Usage:           "take csync2's command line (-x, -rxv, -cr, -rm, -rf, -TT, -k, ...) and run the matching ocf-csync command; the binary called as csync2 does the same",
		ArgsUsage:       "CSYNC2-ARGS...",
		SkipFlagParsing: true,
		Action: func(c *cli.Context) error {
			return runCsync2(c.Context, env, "ocf-csync csync2", c.Args().Slice())
		},
	}
}

// runCsync2 runs a csync2 command line: each translated ocf-csync command
// in turn, csync2's exit code, and "Finished with N errors." on stderr
// when there were errors, or when verbose (as csync2 prints it). The
// returned error is an exitStatus: everything is reported here.
func runCsync2(ctx context.Context, env Env, name string, args []string) error {
	if p, found := csync2LockFile(env); found {
		fmt.Fprintf(env.Stdout, "Found %s\n", p)
		return exitStatus(1)
	}
	o, err := parseCsync2(args)
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\nUsage: see 'ocf-csync csync2 --help' and the README, Coming from csync2.\n", name, err)
		return exitStatus(1)
	}
	cfg, err := o.configFile(env)
	if err != nil {
		fmt.Fprintln(env.Stderr, err)
		return exitStatus(1)
	}
	runs, notice, err := o.translate(cfg)
	var ex *csync2Exit
	switch {
	case errors.As(err, &ex):
		if ex.msg != "" {
			fmt.Fprintln(env.Stderr, ex.msg)
		}
		return exitStatus(ex.code)
	case err != nil:
		fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
		return exitStatus(1)
	case notice != "":
		if o.verbose > 0 {
			fmt.Fprintln(env.Stderr, notice)
		}
		return nil
	}
	if o.verbose > 0 {
		for _, w := range o.ignored {
			fmt.Fprintf(env.Stderr, "ignored: %s\n", w)
		}
	}
	code, errs := 0, 0
	for _, r := range runs {
		if o.verbose > 0 {
			fmt.Fprintf(env.Stderr, "%s %s: ocf-csync %s\n", name, strings.Join(args, " "), strings.Join(r.args, " "))
		}
		err := Main(ctx, env, append([]string{"ocf-csync"}, r.args...))
		c, n := csync2Code(env, r, err)
		errs += n
		if c != 0 {
			code = c
		}
		if n > 0 {
			break // -cu: a check that failed outright (config, state database) fails the update alike
		}
	}
	if errs > 0 || o.verbose > 0 {
		fmt.Fprintf(env.Stderr, "Finished with %d errors.\n", errs)
	}
	return exitStatus(code)
}

// csync2Code prints err as the CLI would and maps the result to csync2's
// exit code, with the number of errors for the summary line.
func csync2Code(env Env, r csync2Run, err error) (code, errs int) {
	var es exitStatus
	if errors.As(err, &es) {
		if c, ok := r.codes[int(es)]; ok {
			return c, 0
		}
		return 1, 1
	}
	if err == nil {
		if c, ok := r.codes[0]; ok {
			return c, 0
		}
		return 0, 0
	}
	if !errors.Is(err, errSilent) {
		fmt.Fprintf(env.Stderr, "ocf-csync: %v\n", err)
	}
	return 1, countErrors(err)
}

// countErrors is how many errors csync2 would have counted: one per file
// or peer that failed in a push, else one.
func countErrors(err error) int {
	var pf *pushFailure
	if errors.As(err, &pf) && pf.count > 0 {
		return pf.count
	}
	return 1
}
