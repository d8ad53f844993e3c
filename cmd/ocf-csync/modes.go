package main

import (
	"context"
	"path/filepath"

	"ocf-csync/ra"
)

// runAgent runs the resource agent in OCF or init/haresources mode
// (DESIGN §1; callMode decides). The agent writes its own exit reason and
// log lines, so its error is marked as already reported; ExitCode takes the
// exit status from the *ocf.Error inside.
func runAgent(ctx context.Context, env Env, args []string, m mode) error {
	o := ra.IO{Stdout: env.Stdout, Stderr: env.Stderr, Environ: env.Environ}
	ra.Version = version
	var err error
	switch m {
	case modeOCF:
		err = ra.RunOCF(ctx, o, filepath.Base(args[0]), args[1])
	default:
		err = ra.RunInit(ctx, o, args)
	}
	if err != nil {
		return agentError{err}
	}
	return nil
}

// agentError is an agent result: silent (already reported) and carrying
// the *ocf.Error with the exit status.
type agentError struct{ err error }

func (e agentError) Error() string   { return e.err.Error() }
func (e agentError) Unwrap() []error { return []error{errSilent, e.err} }
