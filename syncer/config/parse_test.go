package config

import (
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	c := mustParse(t, "group { host a; key k; }")
	want := SSH{User: "root", Port: 22, Identity: "/etc/ocf-csync/id_ed25519", KnownHosts: "/etc/ocf-csync/known_hosts",
		RemoteCommand: "/usr/sbin/ocf-csync serve", ConnectTimeout: 10 * time.Second, Keepalive: 15 * time.Second}
	if !reflect.DeepEqual(c.SSH, want) {
		t.Errorf("SSH = %+v", c.SSH)
	}
	if wantHA := (HA{FailoverPolicy: "guard", Stranded: "keep", RescanInterval: 600 * time.Second, Watch: true}); c.HA != wantHA {
		t.Errorf("HA = %+v", c.HA)
	}
	g := c.Groups[0]
	if c.LockTimeout != 12*time.Second || c.Ignore != (Ignore{}) || g.Name != "group_1" || g.Auto != "none" ||
		g.BackupGenerations != 3 || g.BackupsEnabled() || len(c.Warnings) != 0 || !slices.Equal(c.Files, []string{"/etc/test.cfg"}) {
		t.Errorf("defaults wrong: %+v, group %+v", c, g)
	}
}

func TestExtensions(t *testing.T) {
	c := mustParse(t, `
ssh { user root; port 2222; identity id_sync; known-hosts /etc/ocf-csync/known_hosts; accept-new yes;
      remote-command "/usr/sbin/ocf-csync serve --log-level debug"; connect-timeout 5; keepalive 30; }
ha { cluster-ip 192.168.85.1; ip-resource p_vip; failover-policy skip-first; stranded pull;
     notify "/usr/local/sbin/page-admins"; rescan-interval 120; watch no; }
`)
	want := SSH{User: "root", Port: 2222, Identity: "/etc/id_sync", KnownHosts: "/etc/ocf-csync/known_hosts", AcceptNew: true,
		RemoteCommand: "/usr/sbin/ocf-csync serve --log-level debug", ConnectTimeout: 5 * time.Second, Keepalive: 30 * time.Second}
	if !reflect.DeepEqual(c.SSH, want) {
		t.Errorf("SSH = %+v\nwant %+v", c.SSH, want)
	}
	wantHA := HA{ClusterIP: "192.168.85.1", IPResource: "p_vip", FailoverPolicy: "skip-first", Stranded: "pull",
		Notify: "/usr/local/sbin/page-admins", RescanInterval: 120 * time.Second, Watch: false}
	if c.HA != wantHA {
		t.Errorf("HA = %+v\nwant %+v", c.HA, wantHA)
	}
	_, err := Parse("t.cfg", []byte("ha { cluster-ip 192.168.85.1; }\nha { cluster-ip 10.0.0.1; }"))
	if err == nil || !strings.Contains(err.Error(), "t.cfg:2:6: expected one cluster-ip setting in ha, found a second (the first is at t.cfg:1:6)") {
		t.Errorf("repeated setting across blocks: %v", err)
	}
	c2 := mustParse(t, `ha { cluster-ip 192.168.85.1; ip-resource p_vip; failover-policy off; stranded discard; notify "/bin/x"; rescan-interval 60; watch off; }`)
	wantHA = HA{ClusterIP: "192.168.85.1", IPResource: "p_vip", FailoverPolicy: "off", Stranded: "discard", Notify: "/bin/x",
		RescanInterval: time.Minute, Watch: false}
	if c2.HA != wantHA {
		t.Errorf("HA = %+v", c2.HA)
	}
	if _, err := Parse("t.cfg", []byte("ha { cluster-ip 2001:db8::1; }")); err != nil {
		t.Errorf("IPv6 cluster-ip: %v", err)
	}
}

// Extension block names are not csync2 keywords: csync2 configs may use them
// as host names or patterns.
func TestExtensionWordsAreNotReserved(t *testing.T) {
	c := mustParse(t, "group ha { host ssh ha port; key k; include /etc/ssh; exclude watch; }")
	if g := c.Groups[0]; g.Name != "ha" || len(g.Hosts) != 3 || g.Patterns[1].Text != "watch" {
		t.Errorf("group = %+v", g)
	}
}

func TestLexing(t *testing.T) {
	c := mustParse(t, `
# comment line
group "quoted name" {   # trailing comment
	host a @ b c@d;
	key "/etc/key with space";
	include "/srv/with space" /srv/a:b /srv/{x} /x#comment
	;
	exclude ":colon" ~*;
	auto none;;
}
group {host x;key k;}
group named { host y; key k; }
group {
	host z; key k;
}
`)
	g := c.Groups[0]
	if g.Name != "quoted name" || !slices.Equal(hostStrings(g.Hosts), []string{"a@b", "c@d"}) || g.Key != "/etc/key with space" {
		t.Errorf("group = %+v", g)
	}
	if got := patternStrings(g.Patterns); !slices.Equal(got, []string{"include /srv/with space", "include /srv/a:b", "include /srv/{x}", "include /x", "exclude :colon", "exclude ~*"}) {
		t.Errorf("patterns = %q", got)
	}
	var names []string
	for _, g := range c.Groups {
		names = append(names, g.Name)
	}
	if !slices.Equal(names, []string{"quoted name", "group_1", "named", "group_2"}) {
		t.Errorf("group names = %v", names)
	}
	// A quoted keyword is a plain value.
	if c := mustParse(t, `group g { host a; key k; include /d; exclude "include"; }`); c.Groups[0].Patterns[1].Text != "include" {
		t.Errorf("quoted keyword: %+v", c.Groups[0].Patterns)
	}
}

func TestTopLevelStatements(t *testing.T) {
	c := mustParse(t, "nossl * *;\ndatabase /var/lib/csync2/x.db3;\ntempdir /tmp/cs;\nlock-timeout 30;\nignore uid gid;\nignore mod;\n"+
		"prefix p { on Host1: /x; }\ngroup g { host a; key k; include /x; action { pattern etc/x; exec y; } }\n")
	if c.Database != "/var/lib/csync2/x.db3" || c.Tempdir != "/tmp/cs" || c.LockTimeout != 30*time.Second ||
		c.Ignore != (Ignore{UID: true, GID: true, Mode: true}) || len(c.Nossl) != 1 || c.Nossl[0].From != "*" {
		t.Errorf("config = %+v", c)
	}
	var ws []string
	for _, w := range c.Warnings {
		ws = append(ws, w.String())
	}
	want := []string{
		"/etc/test.cfg:1:1: nossl has no effect: ocf-csync always connects over SSH",
		"/etc/test.cfg:2:1: database is not used: ocf-csync keeps its state in its own store",
		"/etc/test.cfg:3:1: tempdir is kept for csync2 compatibility but not used by ocf-csync",
		`/etc/test.cfg:7:15: host pattern "Host1" has upper-case letters but node names are lower-cased, so it never matches`,
		`/etc/test.cfg:8:55: action pattern "etc/x" does not start with '/' or '%prefix%'; action patterns match the full path, so it never matches`,
	}
	if !slices.Equal(ws, want) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(ws, "\n"), strings.Join(want, "\n"))
	}
}

func TestKeyResolution(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "main.cfg"), "group g { host a; key rel.key; }\nconfig sub/more.cfg\n")
	writeFile(t, filepath.Join(dir, "sub/more.cfg"), "group h { host a; key k2; } group i { host a; key /abs/k3; }")

	t.Setenv("CSYNC2_SYSTEM_DIR", "")
	c, err := Load(filepath.Join(dir, "main.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	if got := []string{c.Groups[0].Key, c.Groups[1].Key, c.Groups[2].Key}; !slices.Equal(got, []string{dir + "/rel.key", dir + "/sub/k2", "/abs/k3"}) {
		t.Errorf("keys without CSYNC2_SYSTEM_DIR = %v", got)
	}
	t.Setenv("CSYNC2_SYSTEM_DIR", "/etc/csync2")
	if c, err = Load(filepath.Join(dir, "main.cfg")); err != nil {
		t.Fatal(err)
	}
	if got := []string{c.Groups[0].Key, c.Groups[1].Key, c.Groups[2].Key}; !slices.Equal(got, []string{"/etc/csync2/rel.key", "/etc/csync2/k2", "/abs/k3"}) {
		t.Errorf("keys with CSYNC2_SYSTEM_DIR = %v", got)
	}
}

// "config" resolves against the including file (csync2 used the working
// directory) and is textual: it may even supply statements inside a group.
func TestIncludeRelativeToIncludingFile(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "etc/main.cfg"), "config conf.d/a.cfg;\ngroup g {\n  config hosts.inc\n  key k;\n  include /x;\n}\n")
	writeFile(t, filepath.Join(dir, "etc/conf.d/a.cfg"), "config b.cfg\n")
	writeFile(t, filepath.Join(dir, "etc/conf.d/b.cfg"), "lock-timeout 7;\n")
	writeFile(t, filepath.Join(dir, "etc/hosts.inc"), "host a (b);\n")
	t.Chdir(t.TempDir()) // nothing may depend on the working directory

	c, err := Load(filepath.Join(dir, "etc/main.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	wantFiles := []string{filepath.Join(dir, "etc/main.cfg"), filepath.Join(dir, "etc/conf.d/a.cfg"), filepath.Join(dir, "etc/conf.d/b.cfg"), filepath.Join(dir, "etc/hosts.inc")}
	if !slices.Equal(c.Files, wantFiles) {
		t.Errorf("Files = %v\nwant %v", c.Files, wantFiles)
	}
	if c.LockTimeout != 7*time.Second || !slices.Equal(hostStrings(c.Groups[0].Hosts), []string{"a", "(b)"}) {
		t.Errorf("config = %+v", c)
	}
	if h := c.Groups[0].Hosts[0]; h.Pos.String() != filepath.Join(dir, "etc/hosts.inc")+":1:6" {
		t.Errorf("host position = %s", h.Pos)
	}

	// Parse resolves against the directory of the name it is given.
	c, err = Parse(filepath.Join(dir, "etc/other.cfg"), []byte("config conf.d/b.cfg"))
	if err != nil || c.LockTimeout != 7*time.Second {
		t.Errorf("Parse with include: %v, %+v", err, c)
	}
}

func TestDuplicateHostAndPrefixWarnings(t *testing.T) {
	c := mustParse(t, "prefix p { on a: /x; }\nprefix p { on *: /y; }\ngroup g { host a a@b; key k; include %p%; }")
	if len(c.Prefixes) != 1 || len(c.Prefixes[0].Entries) != 2 || len(c.Warnings) != 2 {
		t.Fatalf("prefixes %+v warnings %v", c.Prefixes, c.Warnings)
	}
	g := nodeOf(t, c, "a").Groups[0]
	if g.Self.Addr != "a" || len(g.Peers()) != 0 {
		t.Errorf("self %+v peers %v", g.Self, g.Peers())
	}
	if p, _ := c.Prefixes[0].Resolve("b"); p != "/y" {
		t.Errorf("merged prefix resolves b to %q", p)
	}
}
