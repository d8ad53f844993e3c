package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"ocf-csync/ha"
	"ocf-csync/ra"
	"ocf-csync/syncer/engine"
	"ocf-csync/syncer/state"
)

type peerStatus struct {
	Name      string    `json:"name"`
	Address   string    `json:"address"`
	Pending   int       `json:"pending"`
	LastOK    time.Time `json:"last_sync,omitzero"`
	Failing   time.Time `json:"failing_since,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	Blocked   bool      `json:"blocked"`
}

type statusReport struct {
	Node      string       `json:"node"`
	Role      string       `json:"role"`
	SlaveIn   []string     `json:"slave_in"` // groups where this node only receives
	Reason    string       `json:"reason"`
	IPHolder  string       `json:"ip_holder,omitempty"`
	Quorum    bool         `json:"quorum"`
	Epoch     uint64       `json:"epoch"`
	Daemon    string       `json:"daemon"`
	DaemonPid int          `json:"daemon_pid,omitempty"`
	Watch     bool         `json:"watch"`
	LastSync  time.Time    `json:"last_sync,omitzero"`
	LastError string       `json:"last_error,omitempty"`
	Peers     []peerStatus `json:"peers"`
	Conflicts []string     `json:"conflicts"`
	Stranded  []string     `json:"stranded"`
	// Refusals: what the last cycle held back (data safety), until the
	// cause goes away or an admin runs the override.
	Refusals []state.Refusal `json:"refusals"`
}

func statusCommand(env Env) *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show role, epoch, IP holder, peers, conflicts, stranded changes and the daemon",
		Action: func(c *cli.Context) error {
			ctx := c.Context
			l, err := loadConfig(ctx, c)
			if err != nil {
				return err
			}
			rep := statusReport{Node: l.view.Name, Daemon: "not running", Conflicts: []string{}, Stranded: []string{}, SlaveIn: []string{}, Refusals: []state.Refusal{}}
			d, _ := ha.NewGate(l.cfg.HA, nil, logger(ctx)).Active(ctx)
			rep.Role, rep.Reason, rep.IPHolder, rep.Quorum = "standby", d.Reason, d.IPHolder, d.Quorum
			if d.Active {
				rep.Role = "active"
			}
			for _, g := range l.view.Groups {
				if g.IsSlave(l.view.Name) {
					rep.SlaveIn = append(rep.SlaveIn, g.Name)
				}
			}
			if len(rep.SlaveIn) == len(l.view.Groups) {
				// Never pushes, whoever holds the IP.
				rep.Role = "slave"
				rep.Reason = "receive-only in every group: local changes are never pushed, and a master's next push overwrites them"
			}
			var health ra.Health
			if s := servedFrom(ctx); s != nil {
				// Run by the daemon itself: it knows how it is.
				rep.Daemon, rep.DaemonPid = "running", os.Getpid()
				if h, err := s.Health(); err == nil {
					health = h
					rep.Daemon, rep.Watch = h.State, h.Watch
					rep.LastSync, rep.LastError = h.LastSync, h.LastError
				}
			} else if run, ok := ra.FindDaemon(env.getenv("HA_RSCTMP"), l.path); ok {
				rep.Daemon, rep.DaemonPid = "running", run.State.Pid
				if h, err := ra.ReadHealth(run.StatusFile); err == nil {
					health = h
					rep.Daemon, rep.Watch = h.State, h.Watch
					rep.LastSync, rep.LastError = h.LastSync, h.LastError
				}
			}
			st, err := openStore(ctx, c, l, false)
			if err != nil {
				return err
			}
			defer st.Close()
			if rep.Epoch, err = st.Epoch(); err != nil {
				return err
			}
			if rs, err := st.Refusals(); err != nil {
				return err
			} else if len(rs) > 0 {
				rep.Refusals = rs
			}
			seen := map[string]bool{}
			for _, g := range l.view.Groups {
				for _, h := range g.Peers() {
					if seen[h.Name] {
						continue
					}
					seen[h.Name] = true
					ps := peerStatus{Name: h.Name, Address: h.Addr}
					if ps.Pending, err = st.DirtyCount(h.Name); err != nil {
						return err
					}
					for _, ph := range health.Peers {
						if ph.Name == h.Name {
							ps.LastOK, ps.Failing, ps.LastError = ph.LastOK, ph.FailingSince, ph.Error
						}
					}
					for _, b := range health.Blocked {
						ps.Blocked = ps.Blocked || b == h.Name
					}
					rep.Peers = append(rep.Peers, ps)
				}
			}
			rep.Peers = orEmpty(rep.Peers)
			sort.Slice(rep.Peers, func(i, j int) bool { return rep.Peers[i].Name < rep.Peers[j].Name })
			_ = st.Conflicts(func(cf state.Conflict) error {
				rep.Conflicts = append(rep.Conflicts, fmt.Sprintf("%s (with %s: %s)", engine.DisplayPath(cf.Path), cf.Peer, cf.Reason))
				return nil
			})
			_ = st.StrandedList(func(s state.Stranded) error {
				rep.Stranded = append(rep.Stranded, fmt.Sprintf("%s (on %s)", engine.DisplayPath(s.Path), s.Peer))
				return nil
			})
			if c.Bool("json") {
				return writeJSON(env.Stdout, rep)
			}
			w := env.Stdout
			fmt.Fprintf(w, "node:      %s\n", rep.Node)
			fmt.Fprintf(w, "role:      %s (%s)\n", rep.Role, rep.Reason)
			if rep.Role != "slave" && len(rep.SlaveIn) > 0 {
				fmt.Fprintf(w, "slave in:  %s (receive-only there: local changes are never pushed)\n", strings.Join(rep.SlaveIn, ", "))
			}
			if rep.IPHolder != "" {
				fmt.Fprintf(w, "ip holder: %s\n", rep.IPHolder)
			}
			fmt.Fprintf(w, "epoch:     %d\n", rep.Epoch)
			fmt.Fprintf(w, "daemon:    %s", rep.Daemon)
			if rep.DaemonPid > 0 {
				fmt.Fprintf(w, " (pid %d), watch %s", rep.DaemonPid, map[bool]string{true: "up", false: "off"}[rep.Watch])
			}
			fmt.Fprintln(w)
			if !rep.LastSync.IsZero() {
				fmt.Fprintf(w, "last sync: %s\n", rep.LastSync.Format(time.RFC3339))
			}
			if rep.LastError != "" {
				fmt.Fprintf(w, "last error: %s\n", rep.LastError)
			}
			if len(rep.Refusals) > 0 {
				fmt.Fprintf(w, "REFUSED:   %d (nothing was deleted or overwritten; the changes stay pending)\n", len(rep.Refusals))
				for _, r := range rep.Refusals {
					fmt.Fprintf(w, "  %s (since %s)\n", r, r.Since.Format(time.RFC3339))
				}
			}
			fmt.Fprintln(w, "peers:")
			for _, p := range rep.Peers {
				state := "ok"
				switch {
				case p.Blocked:
					state = "BLOCKED (failover guard)"
				case !p.Failing.IsZero():
					state = "UNREACHABLE since " + p.Failing.Format(time.RFC3339) + ": " + p.LastError
				case p.LastOK.IsZero():
					state = "no sync yet by the daemon"
				default:
					state = "last sync " + p.LastOK.Format(time.RFC3339)
				}
				fmt.Fprintf(w, "  %-12s %-16s %6d pending  %s\n", p.Name, p.Address, p.Pending, state)
			}
			fmt.Fprintf(w, "conflicts: %d\n", len(rep.Conflicts))
			for _, s := range rep.Conflicts {
				fmt.Fprintf(w, "  %s\n", s)
			}
			fmt.Fprintf(w, "stranded:  %d\n", len(rep.Stranded))
			for _, s := range rep.Stranded {
				fmt.Fprintf(w, "  %s\n", s)
			}
			return nil
		},
	}
}
