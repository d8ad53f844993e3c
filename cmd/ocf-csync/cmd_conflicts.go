package main

import (
	"encoding/hex"
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"ocf-csync/syncer/engine"
	"ocf-csync/syncer/state"
)

type conflictJSON struct {
	Path     string    `json:"path"`
	Peer     string    `json:"peer"`
	Group    string    `json:"group"`
	Reason   string    `json:"reason"`
	Detected string    `json:"detected"`
	Local    *fileJSON `json:"local"`  // null: deleted here
	Remote   *fileJSON `json:"remote"` // null: deleted on the peer
}

func conflictsCommand(env Env) *cli.Command {
	return &cli.Command{
		Name:  "conflicts",
		Usage: "list the files changed on both sides, with both versions' size, mtime and hash",
		Action: func(c *cli.Context) error {
			s, err := openSession(c, "")
			if err != nil {
				return err
			}
			defer s.st.Close()
			l, st := s.loaded, s.st
			asJSON := c.Bool("json")
			enc := &jsonArray{w: env.Stdout}
			n := 0
			err = st.Conflicts(func(cf state.Conflict) error {
				n++
				if asJSON {
					j := conflictJSON{Path: cf.Path, Peer: cf.Peer, Group: cf.Group, Reason: cf.Reason,
						Detected: rfc3339(time.Unix(0, cf.DetectedNs))}
					if cf.Local.Kind != state.KindNone {
						f := recordJSON(cf.Path, &cf.Local)
						j.Local = &f
					}
					if cf.RemoteExists {
						f := recordJSON(cf.Path, &cf.Remote)
						j.Remote = &f
					}
					return enc.Add(j)
				}
				writeConflict(env.Stdout, l.view.Name, cf)
				return nil
			})
			if err != nil {
				return err
			}
			if asJSON {
				return enc.Close()
			}
			if n == 0 && !asJSON && verbosity(c) >= 0 {
				fmt.Fprintln(env.Stdout, "no conflicts")
			}
			return nil
		},
	}
}

func writeConflict(w io.Writer, self string, cf state.Conflict) {
	fmt.Fprintf(w, "%s\twith %s (group %s): %s\n", engine.DisplayPath(cf.Path), cf.Peer, cf.Group, cf.Reason)
	fmt.Fprintf(w, "  %-20s %s\n", self+" (here):", versionText(cf.Local, cf.Local.Kind != state.KindNone))
	fmt.Fprintf(w, "  %-20s %s\n", cf.Peer+" (peer):", versionText(cf.Remote, cf.RemoteExists))
}

// versionText is one version in a line: kind, size, mtime, hash.
func versionText(r state.FileRecord, exists bool) string {
	if !exists {
		return "deleted"
	}
	s := fmt.Sprintf("%s %d B, mtime %s", r.Kind, r.Size, time.Unix(0, r.MtimeNs).UTC().Format(time.RFC3339Nano))
	switch r.Kind {
	case state.KindReg:
		s += ", sha256 " + hex.EncodeToString(r.Hash[:])
	case state.KindSymlink:
		s += ", -> " + engine.DisplayPath(r.Target)
	}
	return s
}
