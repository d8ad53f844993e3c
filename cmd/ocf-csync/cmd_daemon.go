package main

import (
	"log/slog"
	"time"

	"github.com/urfave/cli/v2"

	"ocf-csync/ocf"
	"ocf-csync/ra"
)

// daemonCommand is what the resource agent starts (ra.ProcessDaemon,
// command line in ra.DaemonArgs); the daemon itself is ra.RunDaemon.
func daemonCommand(env Env) *cli.Command {
	return &cli.Command{
		Name:   "daemon",
		Usage:  "the background sync daemon the resource agent starts (not for interactive use)",
		Hidden: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "status-file", Required: true, Usage: "write the daemon's health here (JSON)"},
			&cli.StringFlag{Name: "stop-file", Usage: "read the final-sync deadline from here on SIGTERM"},
			&cli.IntFlag{Name: "rescan-interval", Usage: "seconds between cycles (default: the config's ha rescan-interval)"},
			&cli.IntFlag{Name: "start-timeout", Usage: "seconds the start (a catch-up from a current peer) may take before the daemon reports ready"},
			&cli.StringFlag{Name: "cluster-ip"},
			&cli.StringFlag{Name: "ip-resource"},
			&cli.StringFlag{Name: "failover-policy"},
			&cli.StringFlag{Name: "stranded"},
			&cli.StringFlag{Name: "notify"},
		},
		Action: func(c *cli.Context) error {
			log := slog.New(ocf.NewLogHandler(ocf.DaemonLogOptions(ocf.NewEnv(env.Environ), "mirror", env.Stderr))).
				With("component", "daemon")
			ctx := withLogger(c.Context, log)
			l, err := loadConfig(ctx, c)
			if err != nil {
				ra.DaemonFailed(c.String("status-file"), err)
				return err
			}
			rl := l.local(c, log)
			rl.Overrides = &ra.HAOverrides{
				ClusterIP: c.String("cluster-ip"), IPResource: c.String("ip-resource"),
				FailoverPolicy: c.String("failover-policy"), Stranded: c.String("stranded"), Notify: c.String("notify"),
			}
			return ra.RunDaemon(ctx, rl, ra.DaemonOptions{
				StatusFile: c.String("status-file"), StopFile: c.String("stop-file"),
				RescanInterval: time.Duration(c.Int("rescan-interval")) * time.Second,
				StartTimeout:   time.Duration(c.Int("start-timeout")) * time.Second,
				Handler:        daemonHandler,
			})
		},
	}
}
