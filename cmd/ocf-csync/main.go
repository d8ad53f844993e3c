// Command ocf-csync keeps directories identical across the nodes of an HA
// cluster. The same binary is the CLI, the OCF resource agent, the
// haresources script and the remote helper.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	os.Exit(run())
}

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Environ: os.Environ()}
	err := Main(ctx, env, os.Args)
	return ExitCode(env, os.Args, err)
}
