// Package config reads csync2.cfg syntax (plus the ocf-csync "ssh" and "ha"
// blocks) and gives it csync2's meaning: groups, hosts, include/exclude
// patterns, prefixes, actions and backups. Node narrows a Config to what one
// host sees; its Match and Roots drive the scanner.
package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ErrInvalid is wrapped by every error this package returns, so callers can
// map a bad configuration to OCF_ERR_CONFIGURED with errors.Is.
var ErrInvalid = errors.New("invalid configuration")

// Defaults, as documented in DESIGN.md §4 and csync2.
const (
	DefaultLockTimeout       = 12 * time.Second
	DefaultBackupGenerations = 3
	DefaultAuto              = "none"
	DefaultLogfile           = "/dev/null"
	DefaultSSHUser           = "root"
	DefaultSSHPort           = 22
	DefaultIdentity          = "/etc/ocf-csync/id_ed25519"
	DefaultKnownHosts        = "/etc/ocf-csync/known_hosts"
	DefaultRemoteCommand     = "/usr/sbin/ocf-csync serve"
	DefaultConnectTimeout    = 10 * time.Second
	DefaultKeepalive         = 15 * time.Second
	DefaultFailoverPolicy    = "guard"
	DefaultStranded          = StrandedKeep
	DefaultRescanInterval    = 600 * time.Second
	DefaultMaxDeletePercent  = 50
	DefaultMaxDeleteCount    = 1000
	// MaxIncludeDepth is csync2's MAX_INCLUDE_DEPTH for nested "config" lines.
	MaxIncludeDepth = 10
)

// Enumerations accepted by the parser, in the order shown to users.
var (
	AutoMethods      = []string{"none", "first", "younger", "older", "bigger", "smaller", "left", "right"}
	FailoverPolicies = []string{"guard", "skip-first", "off"}
	DevicesPolicies  = []string{"allow", "refuse"}
	StrandedPolicies = []string{"keep", "pull", "discard"}
)

// Pos is a position in a config file; Line and Col count from 1.
type Pos struct {
	File      string
	Line, Col int
}

func (p Pos) String() string {
	if p.File == "" && p.Line == 0 {
		return ""
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// Config is a whole parsed configuration, independent of which node reads it.
type Config struct {
	Files       []string // the main file, then every included file in reading order
	Groups      []*Group
	Prefixes    []*Prefix
	Nossl       []NosslRule
	Database    string // kept for reference; ocf-csync keeps state in badger
	Tempdir     string
	LockTimeout time.Duration
	Ignore      Ignore
	SSH         SSH
	HA          HA
	// Safety is the top-level "safety { }" block with defaults filled in;
	// GroupSafety holds the "safety GROUP { }" blocks, which override it per
	// setting. Read both through SafetyFor.
	Safety      Safety
	GroupSafety map[string]*SafetyOverride
	Warnings    []Warning
}

// Group is a csync2 "group" block.
type Group struct {
	Name  string
	Pos   Pos
	Hosts []Host // config order; it matters for auto left/right
	Key   string // resolved path of the key file
	// KeyPos and BackupDirPos are where the key file and the backup
	// directory are named (for Lint).
	KeyPos, BackupDirPos Pos
	// Patterns holds include, exclude and compare patterns in config order,
	// trailing '/' stripped. Compare patterns (Compare=true) are includes that
	// only MatchCompare honours; their texts are also listed in Compare.
	Patterns          []Pattern
	Compare           []string
	Auto              string // one of AutoMethods; "none" by default
	BackupDir         string
	BackupGenerations int // 3 by default; backups need BackupDir != "" and > 1
	Actions           []Action
}

// Host is one entry of a "host" statement. Name is the node identity (lower
// case); Addr the name used to connect, equal to Name unless "name@addr".
type Host struct {
	Name, Addr string
	Slave      bool // listed in ( ): receives only, never pushes
	Pos        Pos
}

// Pattern is one include, exclude or compare pattern, as written.
type Pattern struct {
	Include bool
	Compare bool // from "compare": an include active only in compare mode
	Text    string
	Pos     Pos
}

// IsPath reports whether the pattern is a pathname pattern (matched against the
// full path) rather than a basename pattern.
func (p Pattern) IsPath() bool { return isPathPattern(p.Text) }

func isPathPattern(s string) bool { return strings.HasPrefix(s, "/") || strings.HasPrefix(s, "%") }

// Action is an "action" block of a group.
type Action struct {
	Patterns    []string // path patterns; none means every file of the group
	Exec        []string // commands; "%%" stands for the changed files
	ExecPos     []Pos    // where each command is written
	Logfile     string   // "/dev/null" by default
	DoLocal     bool     // also run on the node where the change was found
	DoLocalOnly bool     // run only there (implies DoLocal)
	Pos         Pos
}

// Prefix is a "prefix NAME { on HOSTPATTERN: PATH; }" block.
type Prefix struct {
	Name    string
	Entries []PrefixEntry
	Pos     Pos
}

// PrefixEntry is one "on" line; Path has trailing '/' stripped.
type PrefixEntry struct {
	HostPattern, Path string
	Pos               Pos
}

// Resolve returns the path of the prefix for a node: the first "on" line whose
// pattern matches the (lower-case) node name, as csync2 does.
func (p *Prefix) Resolve(node string) (string, bool) {
	for _, e := range p.Entries {
		if FnMatch(e.HostPattern, node, 0) {
			return e.Path, true
		}
	}
	return "", false
}

// NosslRule is a csync2 "nossl FROM TO" line; it has no effect over SSH.
type NosslRule struct {
	From, To string
	Pos      Pos
}

// SSH is the ocf-csync "ssh" block.
type SSH struct {
	User           string
	Port           int
	Identity       string
	KnownHosts     string
	AcceptNew      bool // accept and record unknown host keys (TOFU); strict by default
	RemoteCommand  string
	ConnectTimeout time.Duration
	Keepalive      time.Duration
	// SFTPHosts are receive-only slaves that run sshd but no ocf-csync:
	// pushes reach them as whole-file copies over SFTP (lower-case names).
	SFTPHosts []string
	SFTPPos   Pos // where sftp-hosts was set
}

// IsSFTP reports whether the host called name is an SFTP-only target.
func (s *SSH) IsSFTP(name string) bool {
	return slices.Contains(s.SFTPHosts, strings.ToLower(name))
}

// HA is the ocf-csync "ha" block.
type HA struct {
	ClusterIP      string // empty if not set
	IPResource     string // Pacemaker resource holding the cluster IP, if set
	FailoverPolicy string // guard | skip-first | off
	Stranded       Stranded
	Notify         string // command called with EVENT NODE PEER DETAIL
	RescanInterval time.Duration
	Watch          bool
}

// Safety is the ocf-csync "safety" block: how much one cycle may delete, and
// whether device nodes are received. 0 turns a limit off.
type Safety struct {
	MaxDeletePercent int  // refuse a cycle deleting more than this % of a group's tracked files
	MaxDeleteCount   int  // ... or more than this many files
	RefuseDevices    bool // "devices refuse": never receive device nodes
}

// SafetyOverride is one "safety GROUP { }" block: only the settings it gives
// are set (non-nil).
type SafetyOverride struct {
	Group            string
	Pos              Pos
	MaxDeletePercent *int
	MaxDeleteCount   *int
	RefuseDevices    *bool
}

// SafetyFor returns the safety settings of a group: the group's own block
// where it sets something, the global block (or the defaults) otherwise.
func (c *Config) SafetyFor(group string) Safety {
	s := c.Safety
	o := c.GroupSafety[group]
	if o == nil {
		return s
	}
	if o.MaxDeletePercent != nil {
		s.MaxDeletePercent = *o.MaxDeletePercent
	}
	if o.MaxDeleteCount != nil {
		s.MaxDeleteCount = *o.MaxDeleteCount
	}
	if o.RefuseDevices != nil {
		s.RefuseDevices = *o.RefuseDevices
	}
	return s
}

// Stranded is what happens to a stranded change (ha { stranded … }).
type Stranded string

// The stranded policies.
const (
	StrandedKeep    Stranded = "keep"    // report it and leave it on the peer
	StrandedPull    Stranded = "pull"    // copy it here
	StrandedDiscard Stranded = "discard" // overwrite it on the peer (with a backup there)
)

// Ignore names the metadata that csync2's "ignore uid|gid|mod" drops. It
// lives here, not in the state package, so that config imports nothing.
type Ignore struct {
	UID, GID, Mode bool
}

// Warning is a non-fatal remark about the config, e.g. a csync2 keyword that
// means nothing over SSH.
type Warning struct {
	Pos Pos
	Msg string
}

func (w Warning) String() string { return w.Pos.String() + ": " + w.Msg }

// Error is one configuration error at a position. It matches ErrInvalid and,
// if set, the underlying cause (e.g. *fs.PathError) with errors.Is/As.
type Error struct {
	Pos Pos
	Msg string
	Err error
}

func (e *Error) Error() string {
	msg := e.Msg
	if e.Err != nil {
		if msg == "" {
			msg = e.Err.Error()
		} else {
			msg += ": " + e.Err.Error()
		}
	}
	if s := e.Pos.String(); s != "" {
		return s + ": " + msg
	}
	return msg
}

func (e *Error) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrInvalid, e.Err}
	}
	return []error{ErrInvalid}
}

// ErrorList holds several errors, one per line in Error().
type ErrorList []*Error

func (l ErrorList) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// err returns nil, the single error, or the list.
func (l ErrorList) err() error {
	switch len(l) {
	case 0:
		return nil
	case 1:
		return l[0]
	}
	return l
}

func newConfig() *Config {
	return &Config{
		LockTimeout: DefaultLockTimeout,
		SSH: SSH{
			User:           DefaultSSHUser,
			Port:           DefaultSSHPort,
			Identity:       DefaultIdentity,
			KnownHosts:     DefaultKnownHosts,
			RemoteCommand:  DefaultRemoteCommand,
			ConnectTimeout: DefaultConnectTimeout,
			Keepalive:      DefaultKeepalive,
		},
		HA: HA{
			FailoverPolicy: DefaultFailoverPolicy,
			Stranded:       DefaultStranded,
			RescanInterval: DefaultRescanInterval,
			Watch:          true,
		},
		Safety: Safety{
			MaxDeletePercent: DefaultMaxDeletePercent,
			MaxDeleteCount:   DefaultMaxDeleteCount,
		},
	}
}

// Prefix returns the prefix block with that name, or nil.
func (c *Config) Prefix(name string) *Prefix {
	for _, p := range c.Prefixes {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Group returns the group with that name, or nil.
func (c *Config) Group(name string) *Group {
	for _, g := range c.Groups {
		if g.Name == name {
			return g
		}
	}
	return nil
}
