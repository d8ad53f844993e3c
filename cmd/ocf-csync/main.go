// Command ocf-csync keeps directories identical across the nodes of an HA
// cluster. The same binary is the CLI, the OCF resource agent, the
// haresources script and the remote helper.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"syscall"
)

func main() {
	os.Exit(run())
}

// defaultMemoryLimit is a soft heap goal for small nodes (DESIGN §5): the GC
// works harder near it instead of letting badger's write buffers grow RSS.
// GOMEMLIMIT in the environment overrides it.
const defaultMemoryLimit = 48 << 20

func run() int {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	// Hidden: OCF_CSYNC_CPUPROFILE=FILE writes a CPU profile (make bench -profile).
	if p := os.Getenv("OCF_CSYNC_CPUPROFILE"); p != "" {
		if f, err := os.Create(p); err != nil {
			fmt.Fprintf(os.Stderr, "ocf-csync: warning: cpu profile: %v\n", err)
		} else if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(os.Stderr, "ocf-csync: warning: cpu profile: %v\n", err)
			f.Close()
		} else {
			defer f.Close()
			defer pprof.StopCPUProfile()
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Environ: os.Environ()}
	err := Main(ctx, env, os.Args)
	return ExitCode(env, os.Args, err)
}
