package config

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Summary is the normalized view of a config for one node, as printed by
// `ocf-csync config check` (text or --json).
type Summary struct {
	Node               string            `json:"node"`
	Files              []string          `json:"files"`
	Groups             []GroupSummary    `json:"groups"`
	OtherGroups        []string          `json:"other_groups"` // groups this node is not in
	Prefixes           map[string]string `json:"prefixes"`     // resolved for this node
	Roots              []string          `json:"roots"`
	Ignore             []string          `json:"ignore"` // uid, gid, mod
	LockTimeoutSeconds int               `json:"lock_timeout_seconds"`
	Database           string            `json:"database,omitempty"`
	Tempdir            string            `json:"tempdir,omitempty"`
	SSH                SSHSummary        `json:"ssh"`
	HA                 HASummary         `json:"ha"`
	// Issues are Lint's findings; Summary leaves them empty (Lint reads
	// the file system), `config check` fills them.
	Issues []IssueSummary `json:"issues"`
}

// IssueSummary is a lint Issue in JSON.
type IssueSummary struct {
	File     string `json:"file"`
	Line     int    `json:"line"`
	Col      int    `json:"col"`
	Severity string `json:"severity"` // error | warning
	Message  string `json:"message"`
}

// IssueSummaries converts issues for JSON ([] when none).
func IssueSummaries(issues []Issue) []IssueSummary {
	out := make([]IssueSummary, 0, len(issues))
	for _, i := range issues {
		out = append(out, IssueSummary{File: i.Pos.File, Line: i.Pos.Line, Col: i.Pos.Col, Severity: string(i.Severity), Message: i.Message})
	}
	return out
}

// GroupSummary describes one group the node is in.
type GroupSummary struct {
	Name              string           `json:"name"`
	Pos               string           `json:"pos"`
	Hosts             []HostSummary    `json:"hosts"`
	Key               string           `json:"key"`
	Patterns          []PatternSummary `json:"patterns"`
	Actions           []ActionSummary  `json:"actions"`
	Auto              string           `json:"auto"`
	BackupDirectory   string           `json:"backup_directory,omitempty"`
	BackupGenerations int              `json:"backup_generations"`
	Backups           bool             `json:"backups"` // directory set and generations > 1
	Roots             []string         `json:"roots"`
	Safety            SafetySummary    `json:"safety"`
}

// SafetySummary is the effective safety block of a group (0 = off).
type SafetySummary struct {
	MaxDeletePercent int    `json:"max_delete_percent"`
	MaxDeleteCount   int    `json:"max_delete_count"`
	Devices          string `json:"devices"` // allow | refuse
}

// HostSummary is a host with its role for this node: self, peer or slave.
type HostSummary struct {
	Name  string `json:"name"`
	Addr  string `json:"addr"`
	Role  string `json:"role"`
	Slave bool   `json:"slave"`
}

// PatternSummary is an include/exclude/compare pattern; Resolved is set when
// a %prefix% was replaced by this node's path.
type PatternSummary struct {
	Type     string `json:"type"`  // include, exclude, compare
	Match    string `json:"match"` // path or basename
	Pattern  string `json:"pattern"`
	Resolved string `json:"resolved,omitempty"`
}

// ActionSummary is an action with its patterns resolved for this node.
type ActionSummary struct {
	Patterns    []string `json:"patterns"` // none: every file of the group
	Exec        []string `json:"exec"`
	Logfile     string   `json:"logfile"`
	DoLocal     bool     `json:"do_local"`
	DoLocalOnly bool     `json:"do_local_only"`
}

// SSHSummary is the ssh block with durations in seconds.
type SSHSummary struct {
	User                  string   `json:"user"`
	Port                  int      `json:"port"`
	Identity              string   `json:"identity"`
	KnownHosts            string   `json:"known_hosts"`
	AcceptNew             bool     `json:"accept_new"`
	RemoteCommand         string   `json:"remote_command"`
	ConnectTimeoutSeconds int      `json:"connect_timeout_seconds"`
	KeepaliveSeconds      int      `json:"keepalive_seconds"`
	SFTPHosts             []string `json:"sftp_hosts"`
}

// HASummary is the ha block with durations in seconds.
type HASummary struct {
	ClusterIP             string `json:"cluster_ip,omitempty"`
	IPResource            string `json:"ip_resource,omitempty"`
	FailoverPolicy        string `json:"failover_policy"`
	Stranded              string `json:"stranded"`
	Notify                string `json:"notify,omitempty"`
	RescanIntervalSeconds int    `json:"rescan_interval_seconds"`
	Watch                 bool   `json:"watch"`
}

// Summary builds the normalized view.
func (v *NodeView) Summary() Summary {
	c := v.Config
	s := Summary{
		Node:               v.Name,
		Files:              slices.Clone(c.Files),
		Roots:              v.Roots(),
		LockTimeoutSeconds: int(c.LockTimeout.Seconds()),
		Database:           c.Database,
		Tempdir:            c.Tempdir,
		SSH: SSHSummary{
			User: c.SSH.User, Port: c.SSH.Port, Identity: c.SSH.Identity, KnownHosts: c.SSH.KnownHosts,
			AcceptNew: c.SSH.AcceptNew, RemoteCommand: c.SSH.RemoteCommand,
			ConnectTimeoutSeconds: int(c.SSH.ConnectTimeout.Seconds()), KeepaliveSeconds: int(c.SSH.Keepalive.Seconds()),
			SFTPHosts: append([]string{}, c.SSH.SFTPHosts...),
		},
		HA: HASummary{
			ClusterIP: c.HA.ClusterIP, IPResource: c.HA.IPResource, FailoverPolicy: c.HA.FailoverPolicy,
			Stranded: string(c.HA.Stranded), Notify: c.HA.Notify,
			RescanIntervalSeconds: int(c.HA.RescanInterval.Seconds()), Watch: c.HA.Watch,
		},
	}
	if len(v.prefixes) > 0 {
		s.Prefixes = v.Prefixes()
	}
	for _, ig := range []struct {
		on   bool
		name string
	}{{c.Ignore.UID, "uid"}, {c.Ignore.GID, "gid"}, {c.Ignore.Mode, "mod"}} {
		if ig.on {
			s.Ignore = append(s.Ignore, ig.name)
		}
	}
	for _, g := range c.Groups {
		if !slices.ContainsFunc(v.Groups, func(gv *GroupView) bool { return gv.Group == g }) {
			s.OtherGroups = append(s.OtherGroups, g.Name)
		}
	}
	for _, g := range v.Groups {
		gs := g.summary()
		sf := c.SafetyFor(g.Name)
		gs.Safety = SafetySummary{MaxDeletePercent: sf.MaxDeletePercent, MaxDeleteCount: sf.MaxDeleteCount, Devices: "allow"}
		if sf.RefuseDevices {
			gs.Safety.Devices = "refuse"
		}
		s.Groups = append(s.Groups, gs)
	}
	// JSON style: [] and {}, never null, for what is empty.
	s.Files, s.Roots, s.OtherGroups, s.Ignore, s.Issues = nonNil(s.Files), nonNil(s.Roots), nonNil(s.OtherGroups), nonNil(s.Ignore), nonNil(s.Issues)
	s.Groups = nonNil(s.Groups)
	if s.Prefixes == nil {
		s.Prefixes = map[string]string{}
	}
	return s
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (g *GroupView) summary() GroupSummary {
	gs := GroupSummary{
		Name: g.Name, Pos: g.Pos.String(), Key: g.Key, Auto: g.Auto,
		BackupDirectory: g.BackupDir, BackupGenerations: g.BackupGenerations, Backups: g.BackupsEnabled(),
		Roots: pruneRoots(g.roots(false)),
	}
	for _, h := range g.Hosts {
		role := "peer"
		switch {
		case h.Name == g.Self.Name:
			role = "self"
		case h.Slave:
			role = "slave"
		}
		gs.Hosts = append(gs.Hosts, HostSummary{Name: h.Name, Addr: h.Addr, Role: role, Slave: h.Slave})
	}
	for i, p := range g.Patterns {
		ps := PatternSummary{Type: "include", Match: "basename", Pattern: p.Text}
		switch {
		case p.Compare:
			ps.Type = "compare"
		case !p.Include:
			ps.Type = "exclude"
		}
		if p.IsPath() {
			ps.Match = "path"
		}
		if i < len(g.pats) && g.pats[i].text != p.Text {
			ps.Resolved = g.pats[i].text
		}
		gs.Patterns = append(gs.Patterns, ps)
	}
	for i, a := range g.Actions {
		as := ActionSummary{Exec: a.Exec, Logfile: a.Logfile, DoLocal: a.DoLocal, DoLocalOnly: a.DoLocalOnly}
		for _, cp := range g.actions[i] {
			as.Patterns = append(as.Patterns, cp.text)
		}
		as.Patterns = nonNil(as.Patterns)
		gs.Actions = append(gs.Actions, as)
	}
	gs.Hosts, gs.Patterns, gs.Actions, gs.Roots = nonNil(gs.Hosts), nonNil(gs.Patterns), nonNil(gs.Actions), nonNil(gs.Roots)
	return gs
}

// WriteText prints the summary in a stable, readable form.
func (s Summary) WriteText(w io.Writer) error {
	b := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	p("node: %s\n", s.Node)
	p("files: %s\n", strings.Join(s.Files, ", "))
	for _, g := range s.Groups {
		p("\ngroup %s (%s)\n", g.Name, g.Pos)
		for _, h := range g.Hosts {
			name := h.Name
			if h.Addr != h.Name {
				name += "@" + h.Addr
			}
			role := h.Role
			if h.Role == "self" && h.Slave {
				role = "self, slave (receives only)"
			} else if h.Role == "slave" {
				role = "slave (receives only)"
			}
			p("  host     %-30s %s\n", name, role)
		}
		p("  key      %s\n", g.Key)
		for _, pt := range g.Patterns {
			p("  %-8s %-8s %s", pt.Type, pt.Match, pt.Pattern)
			if pt.Resolved != "" {
				p(" -> %s", pt.Resolved)
			}
			p("\n")
		}
		p("  auto     %s\n", g.Auto)
		if g.Backups {
			p("  backups  %s, %d generations\n", g.BackupDirectory, g.BackupGenerations)
		} else if g.BackupDirectory != "" {
			p("  backups  off (%s, but backup-generations %d is not above 1)\n", g.BackupDirectory, g.BackupGenerations)
		} else {
			p("  backups  off\n")
		}
		for _, a := range g.Actions {
			pats := "every file of the group"
			if len(a.Patterns) > 0 {
				pats = strings.Join(a.Patterns, " ")
			}
			p("  action   on %s\n", pats)
			for _, e := range a.Exec {
				p("           exec %s\n", strconv.Quote(e))
			}
			p("           logfile %s", a.Logfile)
			switch {
			case a.DoLocalOnly:
				p(", do-local-only")
			case a.DoLocal:
				p(", do-local")
			}
			p("\n")
		}
		p("  roots    %s\n", strings.Join(g.Roots, " "))
		p("  safety   max-delete %s, max-delete-count %s, devices %s\n",
			offOr(g.Safety.MaxDeletePercent, "%"), offOr(g.Safety.MaxDeleteCount, ""), g.Safety.Devices)
	}
	if len(s.OtherGroups) > 0 {
		p("\nnot a member of: %s\n", strings.Join(s.OtherGroups, ", "))
	}
	p("\n")
	if len(s.Prefixes) > 0 {
		names := make([]string, 0, len(s.Prefixes))
		for n := range s.Prefixes {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			p("prefix %%%s%% = %s\n", n, s.Prefixes[n])
		}
	}
	p("roots: %s\n", strings.Join(s.Roots, " "))
	if len(s.Ignore) > 0 {
		p("ignore: %s\n", strings.Join(s.Ignore, " "))
	}
	p("lock-timeout: %ds\n", s.LockTimeoutSeconds)
	if s.Database != "" {
		p("database: %s (not used)\n", s.Database)
	}
	if s.Tempdir != "" {
		p("tempdir: %s (not used)\n", s.Tempdir)
	}
	p("ssh: user %s, port %d, identity %s, known-hosts %s, accept-new %s, remote-command %s, connect-timeout %ds, keepalive %ds\n",
		s.SSH.User, s.SSH.Port, s.SSH.Identity, s.SSH.KnownHosts, yesNo(s.SSH.AcceptNew), strconv.Quote(s.SSH.RemoteCommand),
		s.SSH.ConnectTimeoutSeconds, s.SSH.KeepaliveSeconds)
	if len(s.SSH.SFTPHosts) > 0 {
		p("sftp-hosts (receive-only over SFTP, no ocf-csync there): %s\n", strings.Join(s.SSH.SFTPHosts, " "))
	}
	ip := "cluster-ip " + orUnset(s.HA.ClusterIP, false)
	if s.HA.IPResource != "" {
		ip += ", ip-resource " + s.HA.IPResource
	}
	p("ha: %s, failover-policy %s, stranded %s, notify %s, rescan-interval %ds, watch %s\n",
		ip, s.HA.FailoverPolicy, s.HA.Stranded, orUnset(s.HA.Notify, true), s.HA.RescanIntervalSeconds, yesNo(s.HA.Watch))
	return b.Flush()
}

func offOr(n int, unit string) string {
	if n == 0 {
		return "off"
	}
	return strconv.Itoa(n) + unit
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orUnset(s string, quote bool) string {
	switch {
	case s == "":
		return "(unset)"
	case quote:
		return strconv.Quote(s)
	}
	return s
}
