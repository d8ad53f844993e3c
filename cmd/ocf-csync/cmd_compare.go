package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"ocf-csync/syncer/engine"
	"ocf-csync/syncer/scan"
	"ocf-csync/syncer/state"
)

// compareJSON is compare's --json output; exit_code says as the exit
// status does: 0 in sync, 1 differences, 2 trouble (problems).
type compareJSON struct {
	Node        string     `json:"node"`
	Differences []diffJSON `json:"differences"`
	Problems    []string   `json:"problems"`
	Marked      *int       `json:"marked,omitempty"` // with --mark
	ExitCode    int        `json:"exit_code"`
}

type diffJSON struct {
	Kind   string    `json:"kind"` // L, R or X
	Node   string    `json:"node"`
	Peer   string    `json:"peer"`
	Group  string    `json:"group"`
	Path   string    `json:"path"`
	Local  *fileJSON `json:"local"`
	Remote *fileJSON `json:"remote"`
}

func compareCommand(env Env) *cli.Command {
	return &cli.Command{
		Name: "compare",
		Usage: "list the differences with the peers from both real trees (csync2 -T): " +
			"L only here, R only on the peer, X both but different; exit 0 in sync, 1 differences, 2 trouble",
		ArgsUsage: "[PEER] [PATH...]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "mark", Aliases: []string{"I"}, Usage: "mark the L and X differences dirty for that peer, so the next push makes it equal (csync2 -TI)"},
			&cli.BoolFlag{Name: "delete", Aliases: []string{"X"}, Usage: "with --mark, also mark R entries: the next push deletes them on the peer (csync2 -TIX)"},
			progressFlags()[0], progressFlags()[1],
		},
		Action: func(c *cli.Context) error {
			ctx := c.Context
			l, err := loadConfig(ctx, c)
			if err != nil {
				return err
			}
			args := c.Args().Slice()
			var peers []string
			if len(args) > 0 && isPeerName(l, args[0]) {
				peers, args = []string{strings.ToLower(args[0])}, args[1:]
			}
			paths, err := absPaths(c, args)
			if err != nil {
				return err
			}
			if c.Bool("delete") && !c.Bool("mark") {
				return usagef("--delete only goes with --mark")
			}
			st, err := openStore(ctx, c, l, false)
			if err != nil {
				return err
			}
			defer st.Close()
			log := logger(ctx)
			co := engine.CompareOptions{
				View: l.view, Store: st, Connect: engine.SSHConnector(l.cfg, l.path, log),
				Ignore: l.cfg.Ignore, Peers: peers, Paths: paths, Log: log,
			}
			if showProgress(progressSituationOf(env, c)) {
				ui := newProgressUI(env.Stderr)
				co.Observe = ui.observeCompare
				res := engine.Compare(ctx, co)
				ui.wait()
				return reportCompare(env, c, l, st, res)
			}
			return reportCompare(env, c, l, st, engine.Compare(ctx, co))
		},
	}
}

// reportCompare prints compare's result (text or JSON), marks with --mark,
// and picks the exit status: 0 in sync, 1 differences, 2 trouble.
func reportCompare(env Env, c *cli.Context, l *loaded, st *state.Store, res engine.CompareResult) error {
	asJSON := c.Bool("json")
	rep := compareJSON{Node: l.view.Name, Differences: []diffJSON{}, Problems: errorStrings(res.Errors)}
	for _, d := range res.Diffs {
		if !asJSON {
			fmt.Fprintf(env.Stdout, "%s\t%s\t%s\t%s\n", d.Kind, l.view.Name, d.Peer, engine.DisplayPath(d.Path))
			continue
		}
		j := diffJSON{Kind: d.Kind, Node: l.view.Name, Peer: d.Peer, Group: d.Group, Path: d.Path}
		if d.Local != nil {
			f := recordJSON(d.Path, d.Local)
			j.Local = &f
		}
		if d.Remote != nil {
			f := recordJSON(d.Path, d.Remote)
			j.Remote = &f
		}
		rep.Differences = append(rep.Differences, j)
	}
	var code exitStatus
	switch {
	case len(res.Errors) > 0:
		code = 2
	case c.Bool("mark"):
		n, err := engine.MarkDifferences(st, res.Diffs, c.Bool("delete"))
		if err != nil {
			code, rep.Problems = 2, append(rep.Problems, "compare --mark: "+err.Error())
			break
		}
		rep.Marked = &n
		if verbosity(c) >= 0 && !asJSON {
			fmt.Fprintf(env.Stdout, "marked %d differences dirty; 'ocf-csync update' pushes them\n", n)
		}
	case len(res.Diffs) > 0:
		code = 1
	}
	if asJSON {
		rep.ExitCode = int(code)
		if err := writeJSON(env.Stdout, rep); err != nil {
			return err
		}
	} else {
		for _, p := range rep.Problems {
			fmt.Fprintf(env.Stderr, "ocf-csync: compare: %s\n", p)
		}
	}
	if code != 0 {
		return code
	}
	return nil
}

// isPeerName tells a PEER argument from a PATH: a host name of one of the
// node's groups, written without a slash.
func isPeerName(l *loaded, arg string) bool {
	if strings.ContainsRune(arg, '/') {
		return false
	}
	for _, g := range l.view.Groups {
		if _, ok := g.Host(arg); ok {
			return true
		}
	}
	return false
}

// maxDiffSize bounds what diff fetches from the peer.
const maxDiffSize = 64 << 20

func diffCommand(env Env) *cli.Command {
	return &cli.Command{
		Name:      "diff",
		Usage:     "show a unified diff from the peer's copy of PATH to this node's (csync2 -TT); exit 0 same, 1 different, 2 trouble",
		ArgsUsage: "PATH",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "peer", Aliases: []string{"P"}, Usage: "compare with this `PEER` (default: the first peer that shares PATH)"},
		},
		Action: func(c *cli.Context) error {
			ctx := c.Context
			if c.NArg() != 1 {
				return usagef("diff needs exactly one PATH")
			}
			l, err := loadConfig(ctx, c)
			if err != nil {
				return err
			}
			if err := l.checkPeers([]string{c.String("peer")}); err != nil {
				return err
			}
			paths, err := absPaths(c, c.Args().Slice())
			if err != nil {
				return err
			}
			path := paths[0]
			log := logger(ctx)
			f, err := engine.Fetch(ctx, engine.CompareOptions{View: l.view, Connect: engine.SSHConnector(l.cfg, l.path, log), Log: log},
				c.String("peer"), path, maxDiffSize)
			if err != nil {
				fmt.Fprintf(env.Stderr, "ocf-csync: diff: %v\n", err)
				return exitStatus(2)
			}
			code, err := runDiff(ctx, env, l.view.Name, path, f)
			if err != nil {
				fmt.Fprintf(env.Stderr, "ocf-csync: diff: %v\n", err)
				return exitStatus(2)
			}
			if code != 0 {
				return exitStatus(code)
			}
			return nil
		},
	}
}

// runDiff runs diff(1) -Nu from the peer's version to the local file. A
// symlink or another non-regular object is compared as a one-line
// description; a missing file as an empty one (-N).
func runDiff(ctx context.Context, env Env, self, path string, f engine.Fetched) (int, error) {
	tmp, err := os.MkdirTemp("", "ocf-csync-diff-")
	if err != nil {
		return 2, fmt.Errorf("create temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	peerFile := filepath.Join(tmp, "peer")
	if f.Exists {
		data := f.Content
		if f.Record.Kind != state.KindReg {
			data = []byte(describe(f.Record))
		}
		if err := os.WriteFile(peerFile, data, 0o600); err != nil {
			return 2, err
		}
	}
	localFile := path
	if fi, err := os.Lstat(path); err == nil && !fi.Mode().IsRegular() {
		rec, err := scan.Lstat(path)
		if err != nil {
			return 2, err
		}
		localFile = filepath.Join(tmp, "local")
		if err := os.WriteFile(localFile, []byte(describe(rec)), 0o600); err != nil {
			return 2, err
		}
	} else if errors.Is(err, os.ErrNotExist) {
		localFile = filepath.Join(tmp, "local-missing")
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "diff", "-Nu", "--label", f.Peer+":"+path, "--label", self+":"+path, peerFile, localFile)
	cmd.Stdout, cmd.Stderr = env.Stdout, &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		return 1, nil
	}
	return 2, fmt.Errorf("run diff (from diffutils): %v %s", err, strings.TrimSpace(stderr.String()))
}

func describe(r state.FileRecord) string {
	switch r.Kind {
	case state.KindSymlink:
		return "symlink -> " + r.Target + "\n"
	case state.KindChr, state.KindBlk:
		return fmt.Sprintf("%s device %d:%d\n", r.Kind, r.Rdev>>8&0xfff, r.Rdev&0xff|(r.Rdev>>12)&0xfff00)
	}
	return r.Kind.String() + "\n"
}
