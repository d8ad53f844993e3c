package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"ocf-csync/ra"
	"ocf-csync/syncer/state"
)

// Commands that use the state database go through the running daemon's
// control socket (ra.Forward): the daemon owns the database. readOnly ones
// run beside the daemon's cycles; the others wait for a cycle to end.
var (
	forwarded = map[string]bool{"status": true, "mark": true, "force": true, "resolve": true, "unblock": true,
		"serve": true, "check": true, "list": true, "conflicts": true,
		"compare": true, "diff": true, "accept-root": true}
	// sync and update call forward themselves, after the gate.
	// serve runs beside the cycles too: a cycle here may wait for a peer
	// whose own cycle waits for this serve (two nodes pushing at once).
	readOnly = map[string]bool{"status": true, "list": true, "conflicts": true, "diff": true, "serve": true}
)

const argsKey = "args"

type servedKey struct{}
type cwdKey struct{}

// servedFrom is the daemon serving this command, nil when it runs on its own.
func servedFrom(ctx context.Context) *ra.Served {
	s, _ := ctx.Value(servedKey{}).(*ra.Served)
	return s
}

// daemonHandler runs a command line the CLI forwarded, inside the daemon.
func daemonHandler(ctx context.Context, s *ra.Served, r ra.Request, stdin io.Reader, stdout, stderr io.Writer) int {
	env := Env{Stdin: stdin, Stdout: stdout, Stderr: stderr, Environ: r.Environ}
	ctx = context.WithValue(context.WithValue(ctx, servedKey{}, s), cwdKey{}, r.Dir)
	return ExitCode(env, r.Args, Main(ctx, env, r.Args))
}

// viaDaemon wraps the actions of the forwarded commands: when a daemon of
// this config answers on its control socket, the command runs there.
func viaDaemon(env Env, cmds []*cli.Command) {
	for _, cmd := range cmds {
		if !forwarded[cmd.Name] || cmd.Action == nil {
			continue
		}
		run := cmd.Action
		cmd.Action = func(c *cli.Context) error {
			if done, err := forward(env, c); done {
				return err
			}
			err := run(c)
			if errors.Is(err, ra.ErrDaemonUp) {
				// A daemon started after forward looked and took the
				// database: the command runs there.
				if done, ferr := forward(env, c); done {
					return ferr
				}
			}
			return err
		}
	}
}

// forward hands the command line to the daemon of this config, if one
// runs. done false means: run it here.
func forward(env Env, c *cli.Context) (done bool, err error) {
	ctx := c.Context
	if servedFrom(ctx) != nil {
		return false, nil
	}
	path, err := configPath(ctx, c)
	if err != nil {
		return false, nil // the command reports it
	}
	if path, err = filepath.Abs(path); err != nil {
		return false, nil
	}
	dir, err := filepath.Abs(stateDir(c, path))
	if err != nil {
		return false, nil
	}
	args, _ := c.App.Metadata[argsKey].([]string)
	if len(args) == 0 {
		return false, nil
	}
	cwd, _ := os.Getwd()
	r := ra.Request{Args: pinPaths(args, path, dir), Environ: env.Environ, Dir: cwd, Stdin: c.Command.Name == "serve"}
	if t := c.Duration("timeout"); t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	code, err := ra.Forward(ctx, dir, r, env.Stdin, env.Stdout, env.Stderr)
	switch {
	case errors.Is(err, ra.ErrNoDaemon):
		logger(ctx).Debug("running without the daemon", "why", err)
		return false, nil
	case errors.Is(err, context.DeadlineExceeded):
		return true, fmt.Errorf("%w: the daemon did not finish within --timeout %s; it carries on, see 'ocf-csync status'",
			errDaemonBusy, c.Duration("timeout"))
	case err != nil:
		return true, err
	case code == 0:
		return true, nil
	}
	return true, exitStatus(code)
}

// errDaemonBusy: the daemon did not answer in time (exit 75, like a busy run).
var errDaemonBusy = errors.New("the ocf-csync daemon is busy")

// pinPaths makes the command line independent of the client's working
// directory and environment: it drops --config/-c and --state-dir and puts
// their resolved absolute values first.
func pinPaths(args []string, config, stateDir string) []string {
	out := []string{args[0], "--config", config, "--state-dir", stateDir}
	drop := map[string]bool{"--config": true, "-c": true, "--state-dir": true}
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			out = append(out, args[i:]...)
			break
		}
		name, _, hasValue := strings.Cut(a, "=")
		if drop[name] {
			if !hasValue {
				i++ // its value
			}
			continue
		}
		out = append(out, a)
	}
	return out
}

// absPaths makes PATH arguments absolute, against the working directory
// of whoever ran the command (the client's, when the daemon runs it).
func absPaths(c *cli.Context, args []string) ([]string, error) {
	cwd, _ := c.Context.Value(cwdKey{}).(string)
	out := make([]string, 0, len(args))
	for _, a := range args {
		// urfave/cli stops parsing options at the first argument, so a
		// late "-r" would silently become a path named "-r".
		if len(a) > 1 && a[0] == '-' {
			return nil, usagef("%q looks like an option, but options go before the PATH arguments; for a file of that name write ./%s", a, a)
		}
		if cwd != "" && !filepath.IsAbs(a) {
			a = filepath.Join(cwd, a)
		}
		p, err := filepath.Abs(a)
		if err != nil {
			return nil, fmt.Errorf("resolve %q: %w", a, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// servedStore is the daemon's store for a command it runs (exclusive
// unless the command only reads).
func servedStore(c *cli.Context, s *ra.Served) *state.Store {
	return s.Store(!readOnly[c.Command.Name])
}
