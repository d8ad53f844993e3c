package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"ocf-csync/ocf"
	"ocf-csync/ra"
	"ocf-csync/syncer/config"
	"ocf-csync/syncer/state"
)

// kind is what went wrong, independent of who called us.
type kind int

const (
	kindOK kind = iota
	kindGeneric
	kindUsage
	kindConfig
	kindBusy
	kindStateBroken
	kindInterrupted
)

// exitCodes is the one table from error kinds to exit codes, per mode.
// CLI codes are documented in the README; OCF codes follow OCF 1.1 as
// Pacemaker 2.1 reads them; LSB codes follow the LSB init-script spec.
var exitCodes = map[kind]struct{ cli, ocf, lsb int }{
	kindOK:          {0, int(ocf.Success), 0},
	kindGeneric:     {1, int(ocf.ErrGeneric), 1},
	kindUsage:       {2, int(ocf.ErrUnimpl), 2},
	kindConfig:      {3, int(ocf.ErrConfigured), 6},
	kindBusy:        {75, int(ocf.ErrGeneric), 1},
	kindStateBroken: {4, int(ocf.ErrGeneric), 1},
	kindInterrupted: {130, int(ocf.ErrGeneric), 1},
}

func classify(err error) kind {
	switch {
	case err == nil:
		return kindOK
	case errors.Is(err, errUsage):
		return kindUsage
	case errors.Is(err, config.ErrInvalid):
		return kindConfig
	case errors.Is(err, state.ErrLocked), errors.Is(err, ra.ErrOverlap), errors.Is(err, errDaemonBusy):
		return kindBusy
	case errors.Is(err, state.ErrNoSentinel), errors.Is(err, state.ErrCorrupt):
		return kindStateBroken
	case errors.Is(err, context.Canceled):
		return kindInterrupted
	}
	return kindGeneric
}

// mode is how the binary was called (DESIGN §1).
type mode int

const (
	modeCLI mode = iota
	modeOCF
	modeCsync2
	modeInit
)

func callMode(env Env, args []string) mode {
	if len(args) == 0 {
		return modeCLI
	}
	oe := ocf.NewEnv(env.Environ)
	if oe.IsOCF() && len(args) == 2 && ocf.IsAction(args[1]) {
		return modeOCF
	}
	switch filepath.Base(args[0]) {
	case "csync2":
		return modeCsync2
	case "ocf-csync":
		return modeCLI
	}
	if !isTestBinary(args[0]) && len(args) >= 2 {
		return modeInit
	}
	return modeCLI
}

// ExitCode prints err (once) and maps it to the exit code of the calling mode.
func ExitCode(env Env, args []string, err error) int {
	var es exitStatus
	if errors.As(err, &es) {
		return int(es)
	}
	k := classify(err)
	m := callMode(env, args)
	if err != nil && !errors.Is(err, errSilent) {
		fmt.Fprintf(env.Stderr, "ocf-csync: %v\n", err)
		if m == modeCLI && wantsJSON(args) {
			_ = writeJSON(env.Stdout, struct {
				Error *errorJSON `json:"error"`
			}{errorObject(err)})
		}
	}
	// The agent's *ocf.Error carries the exit status of its mode (OCF or LSB).
	if e := (*ocf.Error)(nil); errors.As(err, &e) && m != modeCLI {
		return int(e.Status)
	}
	c := exitCodes[k]
	switch m {
	case modeOCF:
		return c.ocf
	case modeInit:
		return c.lsb
	}
	return c.cli
}

func isTestBinary(arg0 string) bool { return strings.HasSuffix(filepath.Base(arg0), ".test") }

// errSilent wraps an error whose message was already shown.
var errSilent = errors.New("reported")

// exitStatus lets a command choose its CLI exit code without printing (like
// diff(1)'s 1 for "differences found").
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }
