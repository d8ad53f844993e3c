// Package ra is the ocf-csync resource agent: the OCF actions (meta-data,
// validate-all, start, stop, monitor, notify) and the init/haresources
// script, both driving a background "ocf-csync daemon" through the Daemon
// interface and a state file in $HA_RSCTMP.
package ra

import (
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"ocf-csync/ocf"
	"ocf-csync/syncer/config"
)

// Defaults of the agent parameters.
const (
	DefaultConfig               = config.DefaultFile
	DefaultStateRoot            = "/var/lib/ocf-csync"
	DefaultFinalSyncMargin      = 10 * time.Second
	DefaultUnreachableThreshold = 300 * time.Second
	DefaultRescanInterval       = 600 * time.Second
	DefaultRscTmp               = "/run/resource-agents"
)

var (
	failoverPolicies = []string{"guard", "skip-first", "off"}
	strandedPolicies = []string{"keep", "pull", "discard"}
)

// paramDef describes one OCF parameter; it drives both meta-data and parsing.
type paramDef struct {
	name, typ, def string
	required       bool
	enum           []string
	short, long    string
}

// paramDefs lists every parameter, in meta-data order. Types are the subset
// valid in both the OCF 1.0 DTD and the 1.1 schema (no "select"), so the
// enums are strings whose values the longdesc lists.
var paramDefs = []paramDef{
	{name: "config", typ: "string", def: DefaultConfig, required: true,
		short: "ocf-csync configuration file",
		long: "Path of the csync2-syntax configuration file (groups, hosts, keys, include/exclude, and the " +
			"ocf-csync ssh and ha blocks). It should be identical on every node. Required under Pacemaker; " +
			"the init/haresources script falls back to " + DefaultConfig + ", then " + config.Csync2File + "."},
	{name: "cluster_ip", typ: "string", def: "",
		short: "cluster IP that marks the active node",
		long: "Only the node holding this IP address on a local interface pushes changes. Overrides " +
			"cluster-ip of the config's ha block. Empty: the ha block's value; with neither cluster_ip nor " +
			"ip_resource every node pushes, as csync2 does."},
	{name: "ip_resource", typ: "string", def: "",
		short: "Pacemaker resource holding the cluster IP",
		long: "Name of the Pacemaker resource (e.g. an IPaddr2 primitive) whose location marks the active " +
			"node, as crm_mon reports it. Overrides ip-resource of the ha block."},
	{name: "node", typ: "string", def: "",
		short: "this node's name in the config",
		long: "The name of this node as the config's host lines spell it. Empty: crm_node -n, then the " +
			"host name."},
	{name: "state_dir", typ: "string", def: "",
		short: "state database directory",
		long: "Directory of this node's state database (badger). Empty: " + DefaultStateRoot +
			"/<config file name without .cfg>. It must be on local storage and survive reboots."},
	{name: "failover_policy", typ: "string", def: "guard", enum: failoverPolicies,
		short: "what to do after a takeover without a clean handoff",
		long: "One of guard, skip-first or off. guard: block pushes to the former active node until a " +
			"reconciliation has sorted every difference (pushed, stranded or conflict). skip-first: skip " +
			"the first sync after a takeover. off: no guard. Empty: the ha block's failover-policy (guard)."},
	{name: "stranded", typ: "string", def: "keep", enum: strandedPolicies,
		short: "what to do with stranded changes",
		long: "One of keep, pull or discard: what happens to a change the former active node made that " +
			"never reached the cluster. keep: report it (monitor degraded) and leave it; pull: copy it here; " +
			"discard: overwrite it, keeping a backup. Empty: the ha block's stranded (keep)."},
	{name: "notify", typ: "string", def: "",
		short: "command run on HA events",
		long: "Shell command run with EVENT, NODE, PEER and DETAIL in its environment on start, stop, " +
			"takeover-unclean, peer-unreachable, conflict, stranded, overlap and final-sync-incomplete. " +
			"Failures are only logged. Overrides notify of the ha block."},
	{name: "rescan_interval", typ: "integer", def: strconv.Itoa(int(DefaultRescanInterval / time.Second)),
		short: "seconds between rescans",
		long: "Seconds between two rescan-and-push cycles of the daemon. Overrides rescan-interval of the " +
			"ha block."},
	{name: "final_sync_margin", typ: "integer", def: strconv.Itoa(int(DefaultFinalSyncMargin / time.Second)),
		short: "seconds kept free at the end of stop",
		long: "The final sync on stop may use the stop operation's timeout minus this many seconds; the " +
			"rest is left to stop the daemon, so that a slow peer never makes stop time out."},
	{name: "unreachable_threshold", typ: "integer", def: strconv.Itoa(int(DefaultUnreachableThreshold / time.Second)),
		short: "seconds a peer may be unreachable before monitor reports degraded",
		long: "A peer that has failed every push for longer than this many seconds makes monitor return " +
			"OCF_DEGRADED (190)."},
	{name: "ocf_csync_binary", typ: "string", def: "",
		short: "ocf-csync binary run as the daemon",
		long:  "Path of the ocf-csync binary started as the sync daemon. Empty: the binary of this agent."},
}

// Params are the agent's parameters after defaults.
type Params struct {
	Instance             string
	Config               string
	ClusterIP            string
	IPResource           string
	Node                 string // "" until resolved
	StateDir             string
	FailoverPolicy       string // "" when unset: the config's value
	Stranded             string // "" when unset: the config's value
	Notify               string
	RescanInterval       time.Duration // 0 when unset: the config's value
	FinalSyncMargin      time.Duration
	UnreachableThreshold time.Duration
	Binary               string // "" when unset: this executable
	RscTmp               string // $HA_RSCTMP
}

// ParseParams reads OCF_RESKEY_* from e and applies the defaults. A value
// that can never be right (bad enum, not an IP, not a number) is an
// *ocf.Error with ErrConfigured; the Params are returned even then, so that
// stop and monitor can still find the state file.
func ParseParams(e ocf.Env) (*Params, error) {
	get := func(n string) string { v, _ := e.Param(n); return strings.TrimSpace(v) }
	p := &Params{
		Instance:       e.Instance(),
		Config:         get("config"),
		ClusterIP:      get("cluster_ip"),
		IPResource:     get("ip_resource"),
		Node:           strings.ToLower(get("node")),
		StateDir:       get("state_dir"),
		FailoverPolicy: get("failover_policy"),
		Stranded:       get("stranded"),
		Notify:         get("notify"),
		Binary:         get("ocf_csync_binary"),
		RscTmp:         e.Get("HA_RSCTMP"),
	}
	if p.RscTmp == "" {
		p.RscTmp = DefaultRscTmp
	}
	if p.Config == "" {
		p.Config = defaultConfig()
	}
	return p, p.check(get)
}

// defaultConfig is the config file when the parameter is empty:
// DefaultConfig, else csync2's /etc/csync2.cfg (the migration path).
func defaultConfig() string {
	if loc, err := config.Locate(""); err == nil {
		return loc.Path
	}
	return DefaultConfig
}

// check rejects values that can never be right, and fills the durations
// (with defaults where wrong, so a failed check still leaves usable Params).
func (p *Params) check(get func(string) string) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, ocf.Errorf(ocf.ErrConfigured, format, args...)) }
	secs := []struct {
		name string
		dst  *time.Duration
		def  time.Duration
		min  int
	}{
		{"rescan_interval", &p.RescanInterval, 0, 1},
		{"final_sync_margin", &p.FinalSyncMargin, DefaultFinalSyncMargin, 0},
		{"unreachable_threshold", &p.UnreachableThreshold, DefaultUnreachableThreshold, 1},
	}
	for _, s := range secs {
		*s.dst = s.def
		if v := get(s.name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < s.min {
				bad("%s=%q is not a whole number of seconds >= %d", s.name, v, s.min)
				continue
			}
			*s.dst = time.Duration(n) * time.Second
		}
	}
	if p.FailoverPolicy != "" && !slices.Contains(failoverPolicies, p.FailoverPolicy) {
		bad("failover_policy=%q is not one of %s", p.FailoverPolicy, strings.Join(failoverPolicies, ", "))
	}
	if p.Stranded != "" && !slices.Contains(strandedPolicies, p.Stranded) {
		bad("stranded=%q is not one of %s", p.Stranded, strings.Join(strandedPolicies, ", "))
	}
	if p.ClusterIP != "" {
		if _, err := netip.ParseAddr(p.ClusterIP); err != nil {
			if _, perr := netip.ParsePrefix(p.ClusterIP); perr != nil {
				bad("cluster_ip=%q is not an IP address", p.ClusterIP)
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errs[0]
}

// DefaultStateDir is where the CLI keeps the state of config path too:
// /var/lib/ocf-csync/<file name without .cfg>.
func DefaultStateDir(config string) string {
	return filepath.Join(DefaultStateRoot, strings.TrimSuffix(filepath.Base(config), ".cfg"))
}

// stateDir is state_dir or the default for the config.
func (p *Params) stateDir() string {
	if p.StateDir != "" {
		return p.StateDir
	}
	return DefaultStateDir(p.Config)
}

// StateFile is $HA_RSCTMP/ocf-csync-<instance>.state: it exists exactly
// while the resource is started (HA_RSCTMP is wiped at boot).
func (p *Params) StateFile() string {
	return filepath.Join(p.RscTmp, "ocf-csync-"+safeName(p.Instance)+".state")
}

// StatusFile is where the daemon reports its health.
func (p *Params) StatusFile() string {
	return filepath.Join(p.RscTmp, "ocf-csync-"+safeName(p.Instance)+".status")
}

// StopFile tells a stopping daemon its final-sync deadline.
func (p *Params) StopFile() string {
	return filepath.Join(p.RscTmp, "ocf-csync-"+safeName(p.Instance)+".stop")
}

// safeName keeps an instance name usable as a file name ("nd:1" stays).
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == 0 {
			return '_'
		}
		return r
	}, s)
}
