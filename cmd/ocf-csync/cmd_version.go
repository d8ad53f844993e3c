package main

import (
	"fmt"
	"runtime"

	"github.com/urfave/cli/v2"

	"ocf-csync/syncer/proto"
	"ocf-csync/syncer/state"
)

// version is set at build time (make build: -ldflags -X main.version=...).
var version = "0.1.0-dev"

// -v means verbose here (csync2), so --version loses its short alias; it
// prints what the version command prints.
func init() {
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print the version"}
	cli.VersionPrinter = func(c *cli.Context) { fmt.Fprintln(c.App.Writer, versionLine()) }
}

func versionLine() string { return "ocf-csync version " + version }

func versionCommand(env Env) *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version, the protocol versions spoken and the state database schema",
		Action: func(c *cli.Context) error {
			if c.Bool("json") {
				return writeJSON(env.Stdout, struct {
					Version     string `json:"version"`
					Protocol    uint32 `json:"protocol"`
					MinProtocol uint32 `json:"min_protocol"`
					StateSchema int    `json:"state_schema"`
					Go          string `json:"go"`
				}{version, proto.Version, proto.MinVersion, state.SchemaVersion, runtime.Version()})
			}
			fmt.Fprintln(env.Stdout, versionLine())
			if verbosity(c) >= 1 {
				fmt.Fprintf(env.Stdout, "protocol %d (accepts %d to %d), state schema %d, %s\n",
					proto.Version, proto.MinVersion, proto.Version, state.SchemaVersion, runtime.Version())
			}
			return nil
		},
	}
}
