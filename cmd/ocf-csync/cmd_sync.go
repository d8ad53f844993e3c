package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"ocf-csync/ha"
	"ocf-csync/ra"
	"ocf-csync/syncer/engine"
)

func pushFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "peer", Aliases: []string{"P"}, Usage: "only push to these peers (csync2 -P)"},
		&cli.StringSliceFlag{Name: "group", Aliases: []string{"G"}, Usage: "only these groups (csync2 -G)"},
		&cli.BoolFlag{Name: "dry-run", Aliases: []string{"d"}, Usage: "show what would happen; change nothing, not even the state database"},
		&cli.BoolFlag{Name: "recursive", Aliases: []string{"r"}, Usage: "PATH arguments include everything below them"},
	}
}

func syncCommand(env Env) *cli.Command {
	return &cli.Command{
		Name:      "sync",
		Usage:     "check for changes, then push them to the peers (csync2 -x)",
		ArgsUsage: "[PATH...]",
		Flags:     pushFlags(),
		Action:    func(c *cli.Context) error { return runPush(env, c, true) },
	}
}

func updateCommand(env Env) *cli.Command {
	return &cli.Command{
		Name:      "update",
		Usage:     "push what is already marked dirty, without checking (csync2 -u)",
		ArgsUsage: "[PATH...]",
		Flags:     pushFlags(),
		Action:    func(c *cli.Context) error { return runPush(env, c, false) },
	}
}

func runPush(env Env, c *cli.Context, check bool) error {
	ctx := c.Context
	l, err := loadConfig(ctx, c)
	if err != nil {
		return err
	}
	if err := l.checkPeers(c.StringSlice("peer")); err != nil {
		return err
	}
	if err := l.checkGroups(c.StringSlice("group")); err != nil {
		return err
	}
	paths, err := absPaths(c.Args().Slice())
	if err != nil {
		return err
	}
	dry := c.Bool("dry-run")
	// Cron on the active node: a running daemon syncs now instead of us.
	if check && !dry && len(paths) == 0 && len(c.StringSlice("peer")) == 0 && len(c.StringSlice("group")) == 0 {
		if d, ok := ra.FindDaemon(env.getenv("HA_RSCTMP"), l.path); ok {
			if err := syscall.Kill(d.State.Pid, syscall.SIGUSR1); err == nil {
				if verbosity(c) >= 1 {
					fmt.Fprintf(env.Stdout, "asked the running daemon (pid %d) to sync now\n", d.State.Pid)
				}
				return nil
			}
		}
	}
	lock, err := takeRunLock(stateDir(c, l.path))
	if err != nil {
		if errors.Is(err, errOverlap) {
			notify(ctx, c, l, ha.EventOverlap, "", err.Error())
		}
		return err
	}
	defer lock.release()
	st, err := openStore(ctx, c, l, false)
	if err != nil {
		return err
	}
	defer st.Close()
	guard, err := loadGuard(stateDir(c, l.path))
	if err != nil {
		return err
	}
	o := cycle{check: check, paths: paths, recursive: c.Bool("recursive"), dry: dry,
		peers: c.StringSlice("peer"), groups: c.StringSlice("group"), warn: env.Stderr, blocked: guard}
	if verbosity(c) >= 1 || dry {
		o.progress = env.Stdout
	}
	start := time.Now()
	out, err := runCycle(ctx, c, l, st, o)
	if err != nil {
		return err
	}
	if !out.pushed {
		if verbosity(c) >= 1 {
			fmt.Fprintf(env.Stdout, "not the active node, nothing pushed: %s\n", out.gate.Reason)
		}
		return nil
	}
	res := out.res
	if c.Bool("json") {
		if err := json.NewEncoder(env.Stdout).Encode(res); err != nil {
			return err
		}
	} else if verbosity(c) >= 0 {
		for _, p := range res.Peers {
			if p.Blocked != "" {
				fmt.Fprintf(env.Stdout, "%s: BLOCKED by the failover guard (%d pending): %s; it lifts after reconciliation, or run 'ocf-csync unblock %s'\n",
					p.Peer, p.Planned, p.Blocked, p.Peer)
				continue
			}
			if p.Planned == 0 && p.Err == nil {
				continue
			}
			status := "ok"
			switch {
			case p.Err != nil:
				status = "FAILED"
			case p.Conflicts > 0:
				status = "CONFLICT"
			case p.Refused+p.Failed > 0:
				status = "INCOMPLETE"
			}
			fmt.Fprintf(env.Stdout, "%s: %s: %d updated, %d deleted, %d already equal, %d conflicts, %d refused/failed; %s data, %s on the wire, %.2fs\n",
				p.Peer, status, p.Updated, p.Deleted, p.Same, p.Conflicts, p.Refused+p.Failed,
				humanBytes(p.DataBytes), humanBytes(p.WireSent+p.WireRecvd), p.Duration.Seconds())
		}
		if verbosity(c) >= 1 {
			fmt.Fprintf(env.Stdout, "finished in %.2fs\n", time.Since(start).Seconds())
		}
	}
	return errors.Join(res.Err(), slaveRefusal(l, res))
}

// slaveRefusal is csync2's "Permission denied for slave!" for the local
// changes a slave cannot push: the admin learns that they will be lost.
func slaveRefusal(l *loaded, res engine.Result) error {
	var paths []string
	for _, p := range res.Peers {
		for _, path := range p.SkippedPaths {
			if d := engine.DisplayPath(path); !slices.Contains(paths, d) {
				paths = append(paths, d)
			}
		}
	}
	if len(paths) == 0 {
		return nil
	}
	var groups []string
	for _, g := range l.view.Groups {
		if g.IsSlave(l.view.Name) {
			groups = append(groups, g.Name)
		}
	}
	return fmt.Errorf("permission denied for slave: %s is a receive-only slave in group %s, so %d local change(s) were not pushed, "+
		"and a master overwrites them when it next pushes these files ('ocf-csync compare --mark %s' on a master does it at once): %s",
		l.view.Name, strings.Join(groups, ", "), len(paths), l.view.Name, strings.Join(firstN(paths, 10), ", "))
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("and %d more", len(s)-n))
	}
	return s
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func serveCommand(env Env) *cli.Command {
	return &cli.Command{
		Name:   "serve",
		Usage:  "the remote helper: receive a push on stdin/stdout (run by sshd; see the README for the authorized_keys line)",
		Hidden: false,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "config `FILE` (the same as the global --config)"},
			&cli.StringFlag{Name: "node", Usage: "this node's `NAME`"},
		},
		Action: func(c *cli.Context) error {
			ctx := c.Context
			log := logger(ctx).With("component", "serve")
			l, err := loadConfig(ctx, c)
			if err != nil {
				return err
			}
			st, err := openStore(ctx, c, l, false)
			if err != nil {
				return err
			}
			defer st.Close()
			return engine.Serve(ctx, engine.ServeOptions{
				View: l.view, Config: l.cfg, Store: st, In: env.Stdin, Out: env.Stdout, Log: log,
			})
		},
	}
}
