// Command ocf-csync keeps directories identical across the nodes of an HA
// cluster. The same binary is the CLI, the OCF resource agent, the
// haresources script and the remote helper.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"runtime/trace"
	"syscall"

	"ocf-csync/syncer/state"
)

func main() {
	os.Exit(run())
}

// defaultMemoryLimit is a soft heap goal for small nodes (DESIGN §5): the GC
// works harder near it instead of letting badger's write buffers grow RSS.
// An open state database raises it by an eighth of its size (a larger
// database needs more heap for its compactions). GOMEMLIMIT in the
// environment overrides both.
const defaultMemoryLimit = 32 << 20

func run() int {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
		state.MemoryLimitBase = defaultMemoryLimit
	}
	// Hidden, for make bench: OCF_CSYNC_CPUPROFILE=FILE writes a CPU
	// profile, OCF_CSYNC_TRACE=FILE an execution trace (where the wall time
	// goes: go tool trace -pprof=syscall|sync|net FILE).
	defer record("OCF_CSYNC_CPUPROFILE", "cpu profile", pprof.StartCPUProfile, pprof.StopCPUProfile)()
	defer record("OCF_CSYNC_TRACE", "trace", trace.Start, trace.Stop)()
	if p := os.Getenv("OCF_CSYNC_MEMPROFILE"); p != "" {
		defer memProfile(p)()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Environ: os.Environ()}
	err := Main(ctx, env, os.Args)
	return ExitCode(env, os.Args, err)
}
