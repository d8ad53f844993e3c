package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	c, err := Parse("/etc/test.cfg", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

const patternsCfg = `
group g {
	host a b;
	key k;
	include /etc/ha.d/haresources;
	include /srv/www;
	exclude /srv/www/cache;
	include /srv/www/cache/keep;
	exclude *.bak;
	include keep.bak;
	include /data/**/*.conf;
	include /opt/*/etc;
	include /var/lib/x/;
}
`

func TestMatchSemantics(t *testing.T) {
	v := nodeOf(t, mustParse(t, patternsCfg), "a")
	tests := []struct {
		path            string
		dir             bool
		synced, descend bool
	}{
		{"/", true, false, true},
		// step_into: directories on the way to an include are entered only.
		{"/etc", true, false, true},
		{"/etc/ha.d", true, false, true},
		{"/etc/ha.d/haresources", false, true, false},
		{"/etc/ha.d/authkeys", false, false, false},
		{"/etc/ha.d/rc.d", true, false, false},
		{"/etc/passwd", false, false, false},
		// FNM_LEADING_DIR: a path include covers its subtree.
		{"/srv/www", true, true, true},
		{"/srv/www/index.html", false, true, false},
		{"/srv/www-old/index.html", false, false, false},
		// last matching path pattern decides
		{"/srv/www/cache/x", false, false, false},
		{"/srv/www/cache", true, false, true}, // on the way to .../keep
		{"/srv/www/cache/keep/a", false, true, false},
		{"/srv/www/cache/other", true, false, false},
		// basename category: last match decides, default include
		{"/srv/www/old.bak", false, false, false},
		{"/srv/www/d.bak", true, false, false}, // never entered
		{"/srv/www/keep.bak", false, true, false},
		{"/srv/www/a/b/keep.bak", false, true, false},
		// "**" makes every '*' cross '/'
		{"/data/a/b/c.conf", false, true, false},
		{"/data/a/c.conf", false, true, false},
		{"/data/x.conf", false, false, false},
		{"/data/a/b.txt", false, false, false},
		{"/data", true, false, true},
		{"/data/a/b", true, false, true},
		// a single '*' stays within one component
		{"/opt/app/etc/x.conf", false, true, false},
		{"/opt/app", true, false, true},
		{"/opt/app/lib", true, false, false},
		{"/opt/a/b/etc", false, false, false},
		// trailing '/' of a pattern is stripped; paths are cleaned
		{"/var/lib/x/y", false, true, false},
		{"/srv/www/../www/index.html", false, true, false},
		{"/srv/www/sub/", true, true, true},
	}
	for _, tt := range tests {
		s, d := v.Match(tt.path, tt.dir)
		if s != tt.synced || d != tt.descend {
			t.Errorf("Match(%q, dir=%v) = %v, %v; want %v, %v", tt.path, tt.dir, s, d, tt.synced, tt.descend)
		}
		if gs := v.GroupsFor(tt.path); (len(gs) == 1) != tt.synced {
			t.Errorf("GroupsFor(%q) = %d groups", tt.path, len(gs))
		}
	}
	if got, want := v.Roots(), []string{"/data", "/etc/ha.d/haresources", "/opt", "/srv/www", "/var/lib/x"}; !slices.Equal(got, want) {
		t.Errorf("Roots = %v, want %v", got, want)
	}
}

func TestMatchLastBasenameWins(t *testing.T) {
	v := nodeOf(t, mustParse(t, `group { host a; key k; include /d; exclude *.log; include important.log; exclude important.log; include /d/x/important.log; }`), "a")
	for path, want := range map[string]bool{
		"/d/a.log":           false,
		"/d/important.log":   false, // the basename exclude is the last basename match
		"/d/x/important.log": false, // a path include does not override the basename category
		"/d/a.txt":           true,
	} {
		if s, _ := v.Match(path, false); s != want {
			t.Errorf("Match(%s) = %v, want %v", path, s, want)
		}
	}
}

func TestMatchOnlyBasenamePatterns(t *testing.T) {
	// The path category defaults to exclude: without a path include nothing syncs.
	v := nodeOf(t, mustParse(t, `group g { host a; key k; include *.conf; }`), "a")
	if s, d := v.Match("/etc/x.conf", false); s || d {
		t.Errorf("Match = %v, %v; want nothing", s, d)
	}
	if r := v.Roots(); len(r) != 0 {
		t.Errorf("Roots = %v", r)
	}
}

func TestCompareBothWords(t *testing.T) {
	c := mustParse(t, `group g { host a b; key k; include /etc/x; compare /etc/c1 /etc/c2; }`)
	g := c.Groups[0]
	if !slices.Equal(g.Compare, []string{"/etc/c1", "/etc/c2"}) {
		t.Fatalf("Compare = %v", g.Compare)
	}
	if got := patternStrings(g.Patterns); !slices.Equal(got, []string{"include /etc/x", "compare /etc/c1", "compare /etc/c2"}) {
		t.Fatalf("Patterns = %v", got)
	}
	gv := nodeOf(t, c, "a").Groups[0]
	for _, p := range []string{"/etc/c1", "/etc/c2/f"} {
		if s, _ := gv.Match(p, false); s {
			t.Errorf("Match(%s) synced outside compare mode", p)
		}
		if !gv.MatchCompare(p, false) {
			t.Errorf("MatchCompare(%s) = false", p)
		}
	}
	if !gv.MatchCompare("/etc/x", false) || gv.MatchCompare("/etc/y", false) {
		t.Error("MatchCompare of plain patterns wrong")
	}
	if r := nodeOf(t, c, "a").Roots(); !slices.Equal(r, []string{"/etc/x"}) {
		t.Errorf("Roots = %v", r)
	}
}

func TestActionsFor(t *testing.T) {
	c := mustParse(t, `
group g {
	host a b; key k;
	include /etc; exclude /etc/skip;
	action { pattern /etc/x; exec "a1"; }
	action { exec "all"; logfile /var/log/all.log; }
	action { pattern /etc/**.conf; exec "conf"; do-local-only; }
	action { pattern /etc/*; exec "star"; do-local; }
}`)
	g := nodeOf(t, c, "b").Groups[0]
	tests := []struct {
		path string
		exec []string
	}{
		{"/etc/x/y", []string{"a1", "all", "star"}},
		{"/etc/deep/er/f.conf", []string{"all", "conf", "star"}},
		{"/etc/skip/f.conf", nil}, // not synced by the group
		{"/usr/x", nil},
	}
	for _, tt := range tests {
		var got []string
		for _, a := range g.ActionsFor(tt.path) {
			got = append(got, a.Exec...)
		}
		if !slices.Equal(got, tt.exec) {
			t.Errorf("ActionsFor(%s) = %v, want %v", tt.path, got, tt.exec)
		}
	}
	as := c.Groups[0].Actions
	if as[0].Logfile != "/dev/null" || as[1].Logfile != "/var/log/all.log" || !as[2].DoLocal || !as[2].DoLocalOnly || !as[3].DoLocal || as[3].DoLocalOnly {
		t.Errorf("actions = %+v", as)
	}
}

func TestHostsAndSlaves(t *testing.T) {
	c := mustParse(t, `group g { host NodeA@Back-A (Slave1 s2@s2-net) nodeb; key k; include /x; }`)
	if got := hostStrings(c.Groups[0].Hosts); !slices.Equal(got, []string{"nodea@back-a", "(slave1)", "(s2@s2-net)", "nodeb"}) {
		t.Fatalf("hosts = %v", got)
	}
	v := nodeOf(t, c, "NODEA")
	g := v.Groups[0]
	if g.Self.Addr != "back-a" || g.Self.Slave {
		t.Errorf("Self = %+v", g.Self)
	}
	if got := hostStrings(g.Peers()); !slices.Equal(got, []string{"(slave1)", "(s2@s2-net)", "nodeb"}) {
		t.Errorf("Peers = %v", got)
	}
	if !g.IsSlave("s2") || g.IsSlave("nodeb") || g.IsSlave("s2-net") {
		t.Error("IsSlave wrong")
	}
	if got := v.Peers("/x/y"); !slices.Equal(got, []string{"nodeb", "s2", "slave1"}) {
		t.Errorf("Peers(/x/y) = %v", got)
	}
	if s := nodeOf(t, c, "s2").Groups[0].Self; !s.Slave {
		t.Errorf("s2 Self = %+v, want slave", s)
	}
	if _, err := c.Node("back-a"); err == nil {
		t.Error("the address after @ must not count as a node name")
	}
}

func TestPrefixes(t *testing.T) {
	c := mustParse(t, `
prefix web { on node1: /srv/web/; on node*: /var/www; }
prefix odd { on *: /data[1]; }
prefix root { on *: /; }
group g { host node1 node2 other; key k; include %web%/html %odd% %root%/opt/app; exclude %web%/html/tmp; }
`)
	tests := []struct {
		node, local, wire string
	}{
		{"node1", "/srv/web/html/index.html", "%web%/html/index.html"},
		{"node2", "/var/www/html/index.html", "%web%/html/index.html"},
		{"node2", "/data[1]/f", "%odd%/f"},
		{"node2", "/opt/app/bin", "%root%/opt/app/bin"},
	}
	for _, tt := range tests {
		v := nodeOf(t, c, tt.node)
		if s, _ := v.Match(tt.local, false); !s {
			t.Errorf("%s: Match(%s) = false", tt.node, tt.local)
		}
		g := v.Groups[0]
		wire, ok := g.WireName(tt.local)
		if wire != tt.wire || !ok {
			t.Errorf("%s: WireName(%s) = %q, %v; want %q", tt.node, tt.local, wire, ok, tt.wire)
		}
		back, err := g.LocalPath(wire)
		if err != nil || back != tt.local {
			t.Errorf("%s: LocalPath(%s) = %q, %v; want %q", tt.node, wire, back, err, tt.local)
		}
	}
	v := nodeOf(t, c, "node2")
	if s, _ := v.Match("/var/www/html/tmp/x", false); s {
		t.Error("prefixed exclude not applied")
	}
	if s, _ := v.Match("/data1/f", false); s {
		t.Error("prefix path must match literally, not as a bracket expression")
	}
	if got, want := v.Roots(), []string{"/data[1]", "/opt/app", "/var/www/html"}; !slices.Equal(got, want) {
		t.Errorf("Roots = %v, want %v", got, want)
	}
	g := v.Groups[0]
	for _, bad := range []string{"%web%/../etc/shadow", "relative/x", "%nope%/x", "%web%x", "/a/../b"} {
		if p, err := g.LocalPath(bad); err == nil || !errors.Is(err, ErrInvalid) {
			t.Errorf("LocalPath(%q) = %q, %v; want an error", bad, p, err)
		}
	}
	// "other" matches no "on" line of web: csync2 refuses to run there.
	_, err := c.Node("other")
	want := "/etc/test.cfg:5:50: prefix 'web' is not defined for host 'other' (no \"on\" line in prefix web matches other)"
	if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, ErrInvalid) {
		t.Errorf("Node(other) error = %v, want %q", err, want)
	}
}

func TestUndefinedPrefixInAction(t *testing.T) {
	c := mustParse(t, "group g { host a; key k; include /x;\n action { pattern %gone%/y; exec z; } }")
	_, err := c.Node("a")
	want := "/etc/test.cfg:2:2: prefix 'gone' is not defined for host 'a' (there is no prefix block named gone)"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %q", err, want)
	}
}

func TestNotAMember(t *testing.T) {
	c := mustParse(t, `group g { host a b; key k; include /x; }`)
	_, err := c.Node("c")
	if err == nil || !errors.Is(err, ErrInvalid) ||
		!strings.HasPrefix(err.Error(), "this host (c) is not a member of any configured group (hosts in /etc/test.cfg: a, b;") {
		t.Errorf("err = %v", err)
	}
}

func TestSummary(t *testing.T) {
	c := mustParse(t, `
nossl * *;
ignore uid mod;
prefix p { on *: /srv; }
group g { host a (s) b@b-net; key k; include %p%/x; exclude *.tmp; compare /c; auto younger;
  backup-directory /bak; backup-generations 1;
  action { pattern %p%/x/conf; exec "reload %%"; do-local-only; } }
group other { host z; key k; include /z; }
ssh { port 2222; }
ha { cluster-ip 10.0.0.1; }
`)
	s := nodeOf(t, c, "a").Summary()
	if len(s.Groups) != 1 || !slices.Equal(s.OtherGroups, []string{"other"}) || s.Prefixes["p"] != "/srv" ||
		!slices.Equal(s.Ignore, []string{"uid", "mod"}) || s.SSH.Port != 2222 || s.HA.ClusterIP != "10.0.0.1" || len(s.Issues) != 0 || len(c.Warnings) != 1 {
		t.Fatalf("summary = %+v", s)
	}
	g := s.Groups[0]
	roles := ""
	for _, h := range g.Hosts {
		roles += h.Name + "=" + h.Role + " "
	}
	if roles != "a=self s=slave b=peer " || g.Hosts[2].Addr != "b-net" || g.Key != "/etc/k" || g.Auto != "younger" || g.Backups ||
		g.Patterns[0].Resolved != "/srv/x" || g.Patterns[1].Match != "basename" || g.Patterns[2].Type != "compare" ||
		g.Actions[0].Patterns[0] != "/srv/x/conf" || !slices.Equal(g.Roots, []string{"/srv/x"}) {
		t.Errorf("group summary = %+v", g)
	}
	js, err := json.Marshal(s)
	if err != nil || !bytes.Contains(js, []byte(`"role":"slave"`)) || !bytes.Contains(js, []byte(`"rescan_interval_seconds":600`)) {
		t.Errorf("json = %s, %v", js, err)
	}
	var a, b bytes.Buffer
	if err := s.WriteText(&a); err != nil {
		t.Fatal(err)
	}
	if err := nodeOf(t, c, "a").Summary().WriteText(&b); err != nil || a.String() != b.String() {
		t.Error("WriteText is not stable")
	}
	for _, want := range []string{
		"group g (/etc/test.cfg:5:1)\n",
		"  host     s                              slave (receives only)\n",
		"  include  path     %p%/x -> /srv/x\n",
		"  backups  off (/bak, but backup-generations 1 is not above 1)\n",
		"           logfile /dev/null, do-local-only\n",
		"not a member of: other\n",
		"prefix %p% = /srv\n",
		"ha: cluster-ip 10.0.0.1, failover-policy guard",
	} {
		if !strings.Contains(a.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, a.String())
		}
	}
	// Warnings are config check's lint issues (stderr), not summary text.
	if strings.Contains(a.String(), "nossl") {
		t.Errorf("the summary text repeats a warning:\n%s", a.String())
	}
}

func BenchmarkNodeMatch(b *testing.B) {
	c, err := Parse("/etc/test.cfg", []byte(patternsCfg))
	if err != nil {
		b.Fatal(err)
	}
	v, err := c.Node("a")
	if err != nil {
		b.Fatal(err)
	}
	paths := []string{"/srv/www/cache/keep/a/b/c.html", "/data/a/b/c/d/e.conf", "/etc/ha.d/haresources", "/usr/share/doc/x"}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		v.Match(paths[i%len(paths)], false)
	}
}

// An include written with a doubled or dotted slash ("$DIR/www" with DIR
// ending in '/') covers the directory it names: it used to match nothing,
// so nothing below it was synced while its root was still walked.
func TestUncleanPatterns(t *testing.T) {
	c := mustParse(t, `
prefix p { on *: /data/; }
group g { host a b; key k; include /srv//www /etc/./app/ %p%//web; exclude /srv//www//cache; }
`)
	v := nodeOf(t, c, "a")
	for _, tt := range []struct {
		path string
		want bool
	}{
		{"/srv/www/index.html", true},
		{"/srv/www/cache/x", false},
		{"/etc/app/conf", true},
		{"/data/web/f", true},
		{"/srv/wwwx", false},
	} {
		if got, _ := v.Match(tt.path, false); got != tt.want {
			t.Errorf("Match(%s) = %v, want %v", tt.path, got, tt.want)
		}
	}
	if got, want := v.Roots(), []string{"/data/web", "/etc/app", "/srv/www"}; !slices.Equal(got, want) {
		t.Errorf("Roots = %v, want %v", got, want)
	}
}
