package main

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"ocf-csync/syncer/engine"
	"ocf-csync/syncer/state"
)

type fileJSON struct {
	Path   string `json:"path"`
	Kind   string `json:"kind"`
	Mode   string `json:"mode"`
	UID    uint32 `json:"uid"`
	GID    uint32 `json:"gid"`
	Size   int64  `json:"size_bytes"`
	Mtime  string `json:"mtime"`
	Target string `json:"target,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
}

// dirtyJSON is a dirty entry in list dirty --json.
type dirtyJSON struct {
	Peer   string `json:"peer"`
	Path   string `json:"path"`
	Forced bool   `json:"forced"`
	Marked string `json:"marked"`
}

func recordJSON(path string, r *state.FileRecord) fileJSON {
	f := fileJSON{Path: path, Kind: r.Kind.String(), Mode: fmt.Sprintf("%04o", r.Mode), UID: r.UID, GID: r.GID,
		Size: r.Size, Mtime: rfc3339(time.Unix(0, r.MtimeNs)), Target: r.Target}
	if r.Kind == state.KindReg {
		f.SHA256 = hex.EncodeToString(r.Hash[:])
	}
	return f
}

func listCommand(env Env) *cli.Command {
	return &cli.Command{
		Name:      "list",
		Usage:     "list what the state database holds: files (csync2 -L) or dirty entries (csync2 -M)",
		ArgsUsage: "files|dirty",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "peer", Aliases: []string{"P"}, Usage: "only this peer's dirty entries"},
		},
		Action: func(c *cli.Context) error {
			ctx := c.Context
			what := c.Args().First()
			if c.NArg() != 1 || (what != "files" && what != "dirty") {
				return usagef("list needs one argument, files or dirty, after its options (ocf-csync list [--peer NAME] dirty)")
			}
			l, err := loadConfig(ctx, c)
			if err != nil {
				return err
			}
			if err := l.checkPeers([]string{c.String("peer")}); err != nil {
				return err
			}
			st, err := openStore(ctx, c, l, false)
			if err != nil {
				return err
			}
			defer st.Close()
			asJSON := c.Bool("json")
			enc := &jsonArray{w: env.Stdout}
			n := 0
			if what == "files" {
				err = st.WalkFiles("/", func(p string, r *state.FileRecord) error {
					n++
					if asJSON {
						return enc.Add(recordJSON(p, r))
					}
					_, err := fmt.Fprintf(env.Stdout, "%s\t%s\n", checktxt(r), engine.DisplayPath(p))
					return err
				})
			} else {
				peers, perr := st.DirtyPeers()
				if perr != nil {
					return perr
				}
				for _, peer := range peers {
					if pf := c.String("peer"); pf != "" && strings.ToLower(pf) != peer {
						continue
					}
					err = st.Dirty(peer, func(p string, d state.DirtyRecord) error {
						n++
						if asJSON {
							return enc.Add(dirtyJSON{Peer: peer, Path: p, Forced: d.Forced, Marked: rfc3339(time.Unix(0, d.MarkedNs))})
						}
						flag := "-"
						if d.Forced {
							flag = "forced"
						}
						_, err := fmt.Fprintf(env.Stdout, "%s\t%s\t%s\t%s\n", flag, l.view.Name, peer, engine.DisplayPath(p))
						return err
					})
					if err != nil {
						break
					}
				}
			}
			if err != nil {
				return err
			}
			if asJSON {
				if err := enc.Close(); err != nil {
					return err
				}
			}
			if n == 0 {
				return exitStatus(2) // csync2 -L/-M: 2 when empty
			}
			return nil
		},
	}
}

// checktxt is a readable one-line summary of a record, in the spirit of
// csync2's checktxt but with ns mtimes and the content hash.
func checktxt(r *state.FileRecord) string {
	s := fmt.Sprintf("v1:mtime=%d:mode=%04o:uid=%d:gid=%d:type=%s", r.MtimeNs, r.Mode, r.UID, r.GID, r.Kind)
	switch r.Kind {
	case state.KindReg:
		s += fmt.Sprintf(":size=%d:sha256=%x", r.Size, r.Hash[:8])
	case state.KindSymlink:
		s += ":target=" + strconv.Quote(r.Target)
	case state.KindChr, state.KindBlk:
		s += fmt.Sprintf(":dev=%d", r.Rdev)
	}
	return s
}

func rebuildCommand(env Env) *cli.Command {
	return &cli.Command{
		Name:  "rebuild",
		Usage: "rebuild a lost or corrupt state database from a scan (marks every entry pending, nothing deleted)",
		Action: func(c *cli.Context) error {
			ctx := c.Context
			l, err := loadConfig(ctx, c)
			if err != nil {
				return err
			}
			st, err := openStore(ctx, c, l, true)
			if err != nil {
				return err
			}
			defer st.Close()
			n, err := engine.Rebuild(ctx, st, l.view, l.cfg.Ignore, logger(ctx))
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return writeJSON(env.Stdout, struct {
					StateDir string `json:"state_dir"`
					Recorded int    `json:"recorded"`
				}{st.Dir(), n})
			}
			fmt.Fprintf(env.Stdout, "rebuilt %s: %d entries recorded and marked pending; nothing was marked deleted.\n", st.Dir(), n)
			fmt.Fprintln(env.Stdout, "The next sync offers every entry to the peers: each keeps its own later changes and takes ours where it still has what we last agreed on.")
			return nil
		},
	}
}
