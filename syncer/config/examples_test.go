package config

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// examplesDir holds csync2 configs taken from its manual and from how-tos
// (a copy of shared/examples/csync2-configs, so a fresh clone tests alone).
const examplesDir = "testdata/csync2-configs"

func loadExample(t *testing.T, name string) *Config {
	t.Helper()
	c, err := Load(filepath.Join(examplesDir, name))
	if err != nil {
		t.Fatalf("Load(%s): %v", name, err)
	}
	return c
}

func nodeOf(t *testing.T, c *Config, name string) *NodeView {
	t.Helper()
	v, err := c.Node(name)
	if err != nil {
		t.Fatalf("Node(%s): %v", name, err)
	}
	return v
}

// hostString renders a host as written: "a", "a@b", "(a)" for a slave.
func hostString(h Host) string {
	s := h.Name
	if h.Addr != h.Name {
		s += "@" + h.Addr
	}
	if h.Slave {
		s = "(" + s + ")"
	}
	return s
}

func hostStrings(hs []Host) []string {
	var out []string
	for _, h := range hs {
		out = append(out, hostString(h))
	}
	return out
}

func patternStrings(ps []Pattern) []string {
	var out []string
	for _, p := range ps {
		kind := "exclude"
		switch {
		case p.Compare:
			kind = "compare"
		case p.Include:
			kind = "include"
		}
		out = append(out, kind+" "+p.Text)
	}
	return out
}

type wantGroup struct {
	name       string
	hosts      []string
	key        string
	patterns   []string
	auto       string
	backupDir  string
	gens       int
	backups    bool
	actions    int
	actionExec []string // Exec of each action, joined by "|"
}

type wantPath struct {
	path    string
	dir     bool
	synced  bool
	descend bool
	peers   []string // NodeView.Peers when synced
}

type wantNode struct {
	node    string
	groups  []string // nil: the node is in no group
	self    string   // hostString of Self in every group, "" to skip
	slaveOf []string // groups in which this node is a slave
	roots   []string
	paths   []wantPath
}

type exampleCase struct {
	file   string
	groups []wantGroup
	nodes  []wantNode
}

var exampleCases = []exampleCase{
	{
		file: "lab-three-groups.cfg",
		groups: []wantGroup{
			{name: "g1", hosts: []string{"telnet", "ftp"}, key: "/etc/csync2.key_g1", patterns: []string{"include /etc/xinetd.d"},
				auto: "none", backupDir: "/var/backups/csync2/g1", gens: 3, backups: true, actions: 1,
				actionExec: []string{"/etc/init.d/xinetd restart"}},
			{name: "g2", hosts: []string{"ssh", "apache"}, key: "/etc/csync2.key_g2", patterns: []string{"include /etc/apache", "include /etc/ssh"},
				auto: "none", backupDir: "/var/backups/csync2/g2", gens: 3, backups: true, actions: 2,
				actionExec: []string{"apachectl graceful", "/etc/init.d/ssh restart"}},
			{name: "g3", hosts: []string{"telnet", "ftp", "ssh", "apache"}, key: "/etc/csync2.key_g3", patterns: []string{"include /etc/hosts"},
				auto: "none", backupDir: "/var/backups/csync2/g3", gens: 3, backups: true},
		},
		nodes: []wantNode{
			{node: "telnet", groups: []string{"g1", "g3"}, self: "telnet", roots: []string{"/etc/hosts", "/etc/xinetd.d"},
				paths: []wantPath{
					{path: "/etc/xinetd.d", dir: true, synced: true, descend: true, peers: []string{"ftp"}},
					{path: "/etc/xinetd.d/telnet", synced: true, peers: []string{"ftp"}},
					{path: "/etc/hosts", synced: true, peers: []string{"apache", "ftp", "ssh"}},
					{path: "/etc/hosts.allow"},
					{path: "/etc", dir: true, descend: true},
					{path: "/etc/apache/httpd.conf"},
					{path: "/etc/ssh", dir: true},
				}},
			{node: "APACHE", groups: []string{"g2", "g3"}, self: "apache", roots: []string{"/etc/apache", "/etc/hosts", "/etc/ssh"},
				paths: []wantPath{
					{path: "/etc/apache/httpd.conf", synced: true, peers: []string{"ssh"}},
					{path: "/etc/ssh/sshd_config", synced: true, peers: []string{"ssh"}},
					{path: "/etc/hosts", synced: true, peers: []string{"ftp", "ssh", "telnet"}},
					{path: "/etc/xinetd.d/telnet"},
				}},
			{node: "mail"},
		},
	},
	{
		file: "lvs-directors.cfg",
		groups: []wantGroup{
			{name: "cacheconfig-dir1", hosts: []string{"lvs-director1", "(lvs-cache1)", "(lvs-cache2)", "(lvs-cache3)"}, key: "/etc/csync2.key",
				patterns: []string{"include /etc/squid3/squid.conf", "include /etc/csync2.cfg"},
				auto:     "left", backupDir: "/var/backups/csync2", gens: 10, backups: true, actions: 1, actionExec: []string{"/etc/init.d/squid3 reload"}},
			{name: "cacheconfig-dir2", hosts: []string{"lvs-director2", "(lvs-cache1)", "(lvs-cache2)", "(lvs-cache3)"}, key: "/etc/csync2.key",
				patterns: []string{"include /etc/squid3/squid.conf", "include /etc/csync2.cfg"},
				auto:     "left", backupDir: "/var/backups/csync2", gens: 10, backups: true, actions: 1, actionExec: []string{"/etc/init.d/squid3 reload"}},
			{name: "directorconfig", hosts: []string{"lvs-director1", "lvs-director2"}, key: "/etc/csync2.key",
				patterns: []string{"include /etc/squid3/squid.conf", "include /etc/csync2.cfg", "include /etc/ldirectord.cf"},
				auto:     "first", backupDir: "/var/backups/csync2", gens: 10, backups: true},
		},
		nodes: []wantNode{
			{node: "lvs-director1", groups: []string{"cacheconfig-dir1", "directorconfig"}, self: "lvs-director1",
				roots: []string{"/etc/csync2.cfg", "/etc/ldirectord.cf", "/etc/squid3/squid.conf"},
				paths: []wantPath{
					{path: "/etc/squid3/squid.conf", synced: true, peers: []string{"lvs-cache1", "lvs-cache2", "lvs-cache3", "lvs-director2"}},
					{path: "/etc/ldirectord.cf", synced: true, peers: []string{"lvs-director2"}},
					{path: "/etc/squid3", dir: true, descend: true},
					{path: "/etc/squid3/mime.conf"},
				}},
			{node: "lvs-cache1", groups: []string{"cacheconfig-dir1", "cacheconfig-dir2"}, self: "(lvs-cache1)",
				slaveOf: []string{"cacheconfig-dir1", "cacheconfig-dir2"},
				roots:   []string{"/etc/csync2.cfg", "/etc/squid3/squid.conf"},
				paths: []wantPath{
					{path: "/etc/squid3/squid.conf", synced: true, peers: []string{"lvs-cache2", "lvs-cache3", "lvs-director1", "lvs-director2"}},
					{path: "/etc/ldirectord.cf"},
				}},
			{node: "lvs-director3"},
		},
	},
	{
		file: "web-assets.cfg",
		groups: []wantGroup{
			{name: "app", hosts: []string{"app0.example.com", "app1.example.com", "app2.example.com"}, key: "/etc/csync2.key-app",
				patterns: []string{"include /vol/0/app/shared", "include /vol/0/app/spool"},
				auto:     "none", backupDir: "/vol/csync2/backup", gens: 3, backups: true},
		},
		nodes: []wantNode{
			{node: "app1.example.com", groups: []string{"app"}, self: "app1.example.com", roots: []string{"/vol/0/app/shared", "/vol/0/app/spool"},
				paths: []wantPath{
					{path: "/vol/0/app/shared/img/logo.png", synced: true, peers: []string{"app0.example.com", "app2.example.com"}},
					{path: "/vol/0/app/spool/", dir: true, synced: true, descend: true, peers: []string{"app0.example.com", "app2.example.com"}},
					{path: "/vol/0/app/shared.old"},
					{path: "/vol/0/app", dir: true, descend: true},
					{path: "/vol/0/app/cache", dir: true},
					{path: "/vol/csync2/backup/x"},
				}},
			{node: "app1"}, // short name: csync2 compares names exactly
		},
	},
	{
		file: "manual-actions.cfg",
		groups: []wantGroup{
			{name: "mygroup", hosts: []string{"host1", "host2", "host3"}, key: "/etc/csync2.key_mygroup", patterns: []string{"include /etc/apache2"},
				auto: "none", gens: 3, actions: 1, actionExec: []string{"/usr/sbin/apache2ctl graceful"}},
		},
		nodes: []wantNode{
			{node: "host3", groups: []string{"mygroup"}, self: "host3", roots: []string{"/etc/apache2"},
				paths: []wantPath{
					{path: "/etc/apache2/sites-available/default", synced: true, peers: []string{"host1", "host2"}},
					{path: "/etc/apache/httpd.conf"},
				}},
		},
	},
	{
		file: "manual-backups.cfg",
		groups: []wantGroup{
			{name: "mygroup", hosts: []string{"host1", "host2"}, key: "/etc/csync2.key_mygroup", patterns: []string{"include /var/sharedfiles"},
				auto: "none", backupDir: "/var/backups/csync2", gens: 3, backups: true},
		},
		nodes: []wantNode{
			{node: "host2", groups: []string{"mygroup"}, self: "host2", roots: []string{"/var/sharedfiles"},
				paths: []wantPath{{path: "/var/sharedfiles/a/b", synced: true, peers: []string{"host1"}}}},
		},
	},
	{
		file: "manual-minimal.cfg",
		groups: []wantGroup{
			{name: "mygroup", hosts: []string{"host1", "host2"}, key: "/etc/csync2.key_mygroup", patterns: []string{"include /var/sharedfiles"},
				auto: "none", gens: 3},
		},
		nodes: []wantNode{
			{node: "host1", groups: []string{"mygroup"}, self: "host1", roots: []string{"/var/sharedfiles"},
				paths: []wantPath{
					{path: "/var/sharedfiles", dir: true, synced: true, descend: true, peers: []string{"host2"}},
					{path: "/var/sharedfilesystem"},
					{path: "/var", dir: true, descend: true},
					{path: "/var/log", dir: true},
				}},
			{node: "host3"},
		},
	},
	{
		file: "manual-multiple-groups.cfg",
		groups: []wantGroup{
			{name: "biggroup", hosts: []string{"host1", "host2", "host3", "host4"}, key: "/etc/csync2.key_biggroup", patterns: []string{"include /etc/hosts"}, auto: "none", gens: 3},
			{name: "smallgroup12", hosts: []string{"host1", "host2"}, key: "/etc/csync2.key_smallgroup12",
				patterns: []string{"include /etc/passwd", "include /etc/shadow", "include /etc/group"}, auto: "none", gens: 3},
			{name: "smallgroup34", hosts: []string{"host3", "host4"}, key: "/etc/csync2.key_smallgroup34",
				patterns: []string{"include /etc/passwd", "include /etc/shadow", "include /etc/group"}, auto: "none", gens: 3},
		},
		nodes: []wantNode{
			{node: "host1", groups: []string{"biggroup", "smallgroup12"}, self: "host1", roots: []string{"/etc/group", "/etc/hosts", "/etc/passwd", "/etc/shadow"},
				paths: []wantPath{
					{path: "/etc/hosts", synced: true, peers: []string{"host2", "host3", "host4"}},
					{path: "/etc/shadow", synced: true, peers: []string{"host2"}},
					{path: "/etc/gshadow"},
				}},
			{node: "host4", groups: []string{"biggroup", "smallgroup34"}, self: "host4",
				paths: []wantPath{{path: "/etc/passwd", synced: true, peers: []string{"host3"}}}},
		},
	},
	{
		file: "manual-patterns.cfg",
		groups: []wantGroup{
			{name: "mygroup", hosts: []string{"host1", "host2"}, key: "/etc/csync2.key_mygroup",
				patterns: []string{"include /etc/apache2", "exclude /etc/apache2/envvars", "exclude /etc/apache2/ssl",
					"exclude *~", "exclude .*.swp", "include apache2.conf~"},
				auto: "none", gens: 3},
		},
		nodes: []wantNode{
			{node: "host1", groups: []string{"mygroup"}, self: "host1", roots: []string{"/etc/apache2"},
				paths: []wantPath{
					{path: "/etc/apache2/apache2.conf", synced: true, peers: []string{"host2"}},
					{path: "/etc/apache2/envvars"},
					{path: "/etc/apache2/envvars/x"},                                           // leading-dir: the exclude covers the subtree
					{path: "/etc/apache2/envvars.d/x", synced: true, peers: []string{"host2"}}, // but not a longer name
					{path: "/etc/apache2/ssl", dir: true},
					{path: "/etc/apache2/ssl/server.key"},
					{path: "/etc/apache2/ports.conf~"},
					{path: "/etc/apache2/apache2.conf~", synced: true, peers: []string{"host2"}},
					{path: "/etc/apache2/sites-enabled/.default.swp"},
					{path: "/etc/apache2/sites-enabled/default", synced: true, peers: []string{"host2"}},
				}},
		},
	},
	{
		file: "manual-prefix.cfg",
		groups: []wantGroup{
			{name: "mygroup", hosts: []string{"host1", "host2", "host3"}, key: "/etc/csync2.key_mygroup", patterns: []string{"include %homedir%/bob"},
				auto: "none", gens: 3},
		},
		nodes: []wantNode{
			{node: "host1", groups: []string{"mygroup"}, self: "host1", roots: []string{"/export/users/bob"},
				paths: []wantPath{
					{path: "/export/users/bob/.profile", synced: true, peers: []string{"host2", "host3"}},
					{path: "/home/bob/.profile"},
					{path: "/export/users", dir: true, descend: true},
				}},
			{node: "host2", groups: []string{"mygroup"}, self: "host2", roots: []string{"/home/bob"},
				paths: []wantPath{
					{path: "/home/bob/.profile", synced: true, peers: []string{"host1", "host3"}},
					{path: "/export/users/bob/.profile"},
					{path: "/home/alice", dir: true},
				}},
			{node: "host3", groups: []string{"mygroup"}, self: "host3", roots: []string{"/home/bob"}},
		},
	},
	{
		file: "manual-sync-networks.cfg",
		groups: []wantGroup{
			{name: "mygroup", hosts: []string{"host1@host1-back", "host2@host2-back"}, key: "/etc/csync2.key_mygroup",
				patterns: []string{"include /var/sharedfiles"}, auto: "none", gens: 3},
		},
		nodes: []wantNode{
			{node: "host1", groups: []string{"mygroup"}, self: "host1@host1-back", roots: []string{"/var/sharedfiles"},
				paths: []wantPath{{path: "/var/sharedfiles/x", synced: true, peers: []string{"host2"}}}},
			{node: "host1-back"}, // the address is not an identity
		},
	},
}

func TestExamples(t *testing.T) {
	for _, ec := range exampleCases {
		t.Run(ec.file, func(t *testing.T) {
			c := loadExample(t, ec.file)
			if len(c.Warnings) != 0 {
				t.Errorf("warnings: %v", c.Warnings)
			}
			if len(c.Groups) != len(ec.groups) {
				t.Fatalf("got %d groups, want %d", len(c.Groups), len(ec.groups))
			}
			for i, want := range ec.groups {
				g := c.Groups[i]
				got := wantGroup{name: g.Name, hosts: hostStrings(g.Hosts), key: g.Key, patterns: patternStrings(g.Patterns),
					auto: g.Auto, backupDir: g.BackupDir, gens: g.BackupGenerations, backups: g.BackupsEnabled(), actions: len(g.Actions)}
				for _, a := range g.Actions {
					got.actionExec = append(got.actionExec, strings.Join(a.Exec, "|"))
				}
				if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
					t.Errorf("group %d:\n got %#v\nwant %#v", i, got, want)
				}
			}
			for _, wn := range ec.nodes {
				v, err := c.Node(wn.node)
				if wn.groups == nil {
					if err == nil || !strings.Contains(err.Error(), "is not a member of any configured group") {
						t.Errorf("Node(%s): got %v, want not-a-member error", wn.node, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("Node(%s): %v", wn.node, err)
				}
				var names, slaveOf []string
				for _, g := range v.Groups {
					names = append(names, g.Name)
					if wn.self != "" && hostString(g.Self) != wn.self {
						t.Errorf("%s: group %s: Self = %s, want %s", wn.node, g.Name, hostString(g.Self), wn.self)
					}
					if g.IsSlave(wn.node) {
						slaveOf = append(slaveOf, g.Name)
					}
				}
				if !slices.Equal(names, wn.groups) {
					t.Errorf("%s: groups %v, want %v", wn.node, names, wn.groups)
				}
				if !slices.Equal(slaveOf, wn.slaveOf) {
					t.Errorf("%s: slave in %v, want %v", wn.node, slaveOf, wn.slaveOf)
				}
				if wn.roots != nil && !slices.Equal(v.Roots(), wn.roots) {
					t.Errorf("%s: roots %v, want %v", wn.node, v.Roots(), wn.roots)
				}
				for _, wp := range wn.paths {
					s, d := v.Match(wp.path, wp.dir)
					if s != wp.synced || d != wp.descend {
						t.Errorf("%s: Match(%s, dir=%v) = %v, %v; want %v, %v", wn.node, wp.path, wp.dir, s, d, wp.synced, wp.descend)
					}
					if p := v.Peers(wp.path); !slices.Equal(p, wp.peers) {
						t.Errorf("%s: Peers(%s) = %v, want %v", wn.node, wp.path, p, wp.peers)
					}
				}
			}
		})
	}
}

func TestExampleLabActions(t *testing.T) {
	c := loadExample(t, "lab-three-groups.cfg")
	v := nodeOf(t, c, "apache")
	tests := []struct {
		path string
		exec []string
	}{
		{"/etc/apache/httpd.conf", []string{"apachectl graceful"}},
		{"/etc/ssh/sshd_config", []string{"/etc/init.d/ssh restart"}},
		{"/etc/ssh/ssh_config", nil},
		{"/etc/hosts", nil},
	}
	for _, tt := range tests {
		var got []string
		for _, g := range v.GroupsFor(tt.path) {
			for _, a := range g.ActionsFor(tt.path) {
				if a.Logfile != "/var/log/csync2_action.log" || a.DoLocal {
					t.Errorf("%s: action %+v", tt.path, a)
				}
				got = append(got, a.Exec...)
			}
		}
		if !slices.Equal(got, tt.exec) {
			t.Errorf("actions for %s: %v, want %v", tt.path, got, tt.exec)
		}
	}
}

func TestExampleManualActions(t *testing.T) {
	c := loadExample(t, "manual-actions.cfg")
	a := c.Groups[0].Actions[0]
	if !a.DoLocal || a.DoLocalOnly || a.Logfile != "/var/log/csync2_action.log" ||
		!slices.Equal(a.Patterns, []string{"/etc/apache/httpd.conf", "/etc/apache/sites-available/*"}) {
		t.Errorf("action = %+v", a)
	}
	g := nodeOf(t, c, "host1").Groups[0]
	// The manual's patterns name /etc/apache while the group includes
	// /etc/apache2: as in csync2 the action never fires.
	for _, p := range []string{"/etc/apache2/httpd.conf", "/etc/apache2/sites-available/x", "/etc/apache/httpd.conf"} {
		if as := g.ActionsFor(p); len(as) != 0 {
			t.Errorf("ActionsFor(%s) = %v, want none", p, as)
		}
	}
}

func TestExampleLVSAuto(t *testing.T) {
	c := loadExample(t, "lvs-directors.cfg")
	v := nodeOf(t, c, "lvs-director2")
	g := v.Group("cacheconfig-dir2")
	if g == nil || g.Auto != "left" || g.IsSlave("lvs-director2") || !g.IsSlave("LVS-CACHE3") || g.IsSlave("unknown") {
		t.Fatalf("cacheconfig-dir2 view wrong: %+v", g)
	}
	if got := hostStrings(g.Peers()); !slices.Equal(got, []string{"(lvs-cache1)", "(lvs-cache2)", "(lvs-cache3)"}) {
		t.Errorf("Peers = %v", got)
	}
	if g.LeftOf("lvs-cache1") || !v.Group("directorconfig").LeftOf("lvs-director1") || v.Group("directorconfig").LeftOf("nobody") {
		t.Error("LeftOf wrong")
	}
	if d := v.Group("directorconfig"); d.Auto != "first" || hostString(d.Self) != "lvs-director2" {
		t.Errorf("directorconfig: auto %q self %v", d.Auto, d.Self)
	}
	if as := g.ActionsFor("/etc/squid3/squid.conf"); len(as) != 1 || as[0].Exec[0] != "/etc/init.d/squid3 reload" {
		t.Errorf("ActionsFor squid.conf = %v", as)
	}
	if as := g.ActionsFor("/etc/csync2.cfg"); len(as) != 0 {
		t.Errorf("ActionsFor csync2.cfg = %v", as)
	}
}

func TestExamplePrefixWireNames(t *testing.T) {
	c := loadExample(t, "manual-prefix.cfg")
	tests := []struct {
		node, local, wire string
		prefixed          bool
	}{
		{"host1", "/export/users/bob/.profile", "%homedir%/bob/.profile", true},
		{"host1", "/export/users", "%homedir%", true},
		{"host1", "/home/bob/.profile", "/home/bob/.profile", false},
		{"host2", "/home/bob/.profile", "%homedir%/bob/.profile", true},
		{"host3", "/home/bob/", "%homedir%/bob", true},
		{"host3", "/homeless/x", "/homeless/x", false},
	}
	for _, tt := range tests {
		g := nodeOf(t, c, tt.node).Groups[0]
		wire, prefixed := g.WireName(tt.local)
		if wire != tt.wire || prefixed != tt.prefixed {
			t.Errorf("%s: WireName(%s) = %q, %v; want %q, %v", tt.node, tt.local, wire, prefixed, tt.wire, tt.prefixed)
		}
	}
	// A name from host1 lands in each node's own directory.
	for node, want := range map[string]string{"host1": "/export/users/bob/.profile", "host2": "/home/bob/.profile", "host3": "/home/bob/.profile"} {
		got, err := nodeOf(t, c, node).Groups[0].LocalPath("%homedir%/bob/.profile")
		if err != nil || got != want {
			t.Errorf("%s: LocalPath = %q, %v; want %q", node, got, err, want)
		}
	}
	if p := nodeOf(t, c, "host2").Prefixes()["homedir"]; p != "/home" {
		t.Errorf("host2 homedir = %q", p)
	}
	if p, ok := c.Prefix("homedir").Resolve("host1"); !ok || p != "/export/users" {
		t.Errorf("Resolve(host1) = %q, %v", p, ok)
	}
}
