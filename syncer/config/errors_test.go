package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every error names file:line:col, what was expected and what was found.
var errorCases = []struct {
	name, src, want string
}{
	{"missing semicolon after key", "group g {\n  host a b;\n  key /etc/k\n  include /x;\n}\n",
		`t.cfg:4:3: expected ';' after key, found keyword "include"`},
	{"missing semicolon after host list", "group g {\n  host a b\n  key /etc/k;\n  include /x;\n}\n",
		`t.cfg:3:3: expected a host name, '(' or ';', found keyword "key"`},
	{"missing semicolon before brace", "group g {\n  host a;\n  key /etc/k;\n  include /x\n}\n",
		`t.cfg:5:1: expected ';' after include, found '}'`},
	{"missing semicolon at end of file", "lock-timeout 5",
		`t.cfg:1:15: expected ';' after lock-timeout, found end of file`},
	{"unknown group keyword", "group g {\n  host a;\n  key /etc/k;\n  includ /x;\n}\n",
		`t.cfg:4:3: expected a group statement (host, key, include, exclude, compare, auto, backup-directory, backup-generations or action) or '}', found "includ"`},
	{"unknown top-level keyword", "grup g {\n  host a;\n  key /etc/k;\n}\n",
		`t.cfg:1:1: expected one of group, prefix, nossl, database, tempdir, lock-timeout, ignore, config, ssh, ha or safety, found "grup"`},
	{"keywords are case-sensitive", "Group g { host a; key k; }\n",
		`t.cfg:1:1: expected one of group, prefix, nossl, database, tempdir, lock-timeout, ignore, config, ssh, ha or safety, found "Group"`},
	{"stray closing brace", "}\n",
		`t.cfg:1:1: expected one of group, prefix, nossl, database, tempdir, lock-timeout, ignore, config, ssh, ha or safety, found '}'`},
	{"two keys", "group g {\n  host a;\n  key /etc/k1;\n  key /etc/k2;\n}\n",
		`t.cfg:4:3: expected one key per group, found a second key in group "g" (the first is at t.cfg:3:3)`},
	{"no key", "group g {\n  host a;\n  include /x;\n}\n",
		`t.cfg:1:1: expected a key statement in group "g", found none (every group needs a key)`},
	{"two autos", "group g {\n  host a;\n  key /etc/k;\n  auto left;\n  auto right;\n}\n",
		`t.cfg:5:3: expected one auto per group, found a second auto in group "g" (the first is at t.cfg:4:3)`},
	{"bad auto", "group g {\n  host a;\n  key /etc/k;\n  auto sideways;\n}\n",
		`t.cfg:4:8: expected one of none, first, younger, older, bigger, smaller, left, right after auto, found "sideways"`},
	{"unterminated quote", "group g {\n  host a;\n  key \"/etc/k;\n}\n",
		`t.cfg:3:7: expected closing '"' of quoted string, found end of line`},
	{"unterminated quote at end of file", "database \"/x",
		`t.cfg:1:10: expected closing '"' of quoted string, found end of file`},
	{"unterminated group", "group g {\n  host a;\n  key /etc/k;\n",
		`t.cfg:4:1: expected '}' to close group "g" opened at t.cfg:1:1, found end of file`},
	{"unterminated action", "group g {\n  host a;\n  key /etc/k;\n  action {\n    exec x;\n",
		"t.cfg:6:1: expected '}' to close action opened at t.cfg:4:3, found end of file\n" +
			`t.cfg:6:1: expected '}' to close group "g" opened at t.cfg:1:1, found end of file`},
	{"brace glued to group name", "group g1{ host a; key k; }\n",
		`t.cfg:1:7: expected '{' after group name, found "g1{" (put a space before '{')`},
	{"brace glued to action", "group g { host a; key k; action{ exec x; } }\n",
		`t.cfg:1:26: expected a group statement (host, key, include, exclude, compare, auto, backup-directory, backup-generations or action) or '}', found "action{" (braces must be separated from words by a space)`},
	{"nested slave list", "group g { host (a (b)); key k; }\n",
		`t.cfg:1:19: expected a host name or ')', found '('`},
	{"missing address", "group g { host a@; key k; }\n",
		`t.cfg:1:18: expected an address after '@', found ';'`},
	{"bad backup generations", "group g { host a; key k; backup-generations many; }\n",
		`t.cfg:1:45: expected a number (0 or more) after backup-generations, found "many"`},
	{"prefix colon glued", "prefix p { on host1:/x; }\n",
		`t.cfg:1:23: expected ':' after host pattern "host1:/x", found ';'`},
	{"relative prefix path", "prefix p { on host1: x; }\n",
		`t.cfg:1:22: expected an absolute path for prefix "p", found "x"`},
	{"bad ignore", "ignore uid foo;\n",
		`t.cfg:1:12: expected uid, gid or mod after ignore, found "foo"`},
	{"columns count runes", "ignore ü x;\n",
		"t.cfg:1:8: expected uid, gid or mod after ignore, found \"ü\"\n" +
			`t.cfg:1:10: expected uid, gid or mod after ignore, found "x"`},
	{"bad lock-timeout", "lock-timeout soon;\n",
		`t.cfg:1:14: expected a number of seconds after lock-timeout, found "soon"`},
	{"no-cygwin-lowercase", "no-cygwin-lowercase;\n",
		`t.cfg:1:1: expected one of group, prefix, nossl, database, tempdir, lock-timeout, ignore, config, ssh, ha or safety, found keyword "no-cygwin-lowercase" (it only means something to csync2 on cygwin; remove it)`},
	{"config without file", "config;\n",
		`t.cfg:1:7: expected a file name after config, found ';'`},
	{"bad ssh values", "ssh {\n  port 70000;\n  user;\n  keepalive -1;\n  bogus 1;\n  connect-timeout 0;\n  accept-new maybe;\n}\n",
		"t.cfg:2:8: expected a port number (1-65535) for ssh port, found \"70000\"\n" +
			"t.cfg:3:7: expected a value for user, found ';'\n" +
			"t.cfg:4:13: expected a positive number of seconds for ssh keepalive, found \"-1\"\n" +
			"t.cfg:5:3: expected a setting of the ssh block (user, port, identity, known-hosts, accept-new, remote-command, connect-timeout, keepalive, sftp-hosts) or '}', found \"bogus\"\n" +
			"t.cfg:6:19: expected a positive number of seconds for ssh connect-timeout, found \"0\"\n" +
			`t.cfg:7:14: expected yes or no for ssh accept-new, found "maybe"`},
	{"bad ha values", "ha {\n  cluster-ip 300.1.1.1;\n  failover-policy maybe;\n  stranded keep;\n  stranded pull;\n  watch perhaps;\n  rescan-interval 1m;\n  cluster-ip fe80::1%eth0;\n}\n",
		"t.cfg:2:14: expected an IP address for ha cluster-ip, found \"300.1.1.1\"\n" +
			"t.cfg:3:19: expected one of guard, skip-first, off for ha failover-policy, found \"maybe\"\n" +
			"t.cfg:5:3: expected one stranded setting in ha, found a second (the first is at t.cfg:4:3)\n" +
			"t.cfg:6:9: expected yes or no for ha watch, found \"perhaps\"\n" +
			"t.cfg:7:19: expected a positive number of seconds for ha rescan-interval, found \"1m\"\n" +
			`t.cfg:8:14: expected an IP address for ha cluster-ip, found "fe80::1%eth0"`},
	{"bad stranded", "ha { stranded lose; }",
		`t.cfg:1:15: expected one of keep, pull, discard for ha stranded, found "lose"`},
	{"bad safety values", "safety {\n  max-delete 101;\n  max-delete-count -1;\n  devices maybe;\n  max-delete 10;\n  max-delete 20;\n  frob 1;\n}\n",
		"t.cfg:2:14: expected a percentage (0-100, 0 = off) for safety max-delete, found \"101\"\n" +
			"t.cfg:3:20: expected a number of files (0 or more, 0 = off) for safety max-delete-count, found \"-1\"\n" +
			"t.cfg:4:11: expected one of allow, refuse for safety devices, found \"maybe\"\n" +
			"t.cfg:6:3: expected one max-delete setting in safety, found a second (the first is at t.cfg:5:3)\n" +
			"t.cfg:7:3: expected a setting of the safety block (max-delete, max-delete-count, devices) or '}', found \"frob\""},
	{"safety for an unknown group", "group g { host a; key k; }\nsafety web { max-delete 10; }\nsafety g { max-delete 10; }\n",
		`t.cfg:2:8: expected a group name after safety (g), found unknown group "web"`},
	{"safety for a group in a config without groups", "safety web { devices refuse; }\n",
		`t.cfg:1:8: expected a group name after safety (none defined), found unknown group "web"`},
	{"bad group safety value", "group g { host a; key k; }\nsafety g {\n  max-delete-count many;\n}\n",
		`t.cfg:3:20: expected a number of files (0 or more, 0 = off) for safety g max-delete-count, found "many"`},
	{"two group safety settings", "group g { host a; key k; }\nsafety g { devices allow; }\nsafety g { devices refuse; }\n",
		`t.cfg:3:12: expected one devices setting in safety g, found a second (the first is at t.cfg:2:12)`},
	{"safety group glued brace", "group g { host a; key k; }\nsafety g{ devices allow; }\n",
		`t.cfg:2:8: expected '{' after safety group name, found "g{" (put a space before '{')`},
	{"safety without block", "safety;\n",
		`t.cfg:1:7: expected '{' or a group name after safety, found ';'`},
	{"safety group without brace", "group g { host a; key k; }\nsafety g max-delete 10;\n",
		`t.cfg:2:10: expected '{' after safety g, found "max-delete"`},
}

func TestErrors(t *testing.T) {
	for _, tt := range errorCases {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("t.cfg", []byte(tt.src))
			if err == nil {
				t.Fatalf("no error; config %+v", c)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not match ErrInvalid: %v", err)
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n%s\nwant:\n%s", err, tt.want)
			}
		})
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.cfg"))
	if !errors.Is(err, ErrInvalid) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("err = %v; want ErrInvalid and fs.ErrNotExist", err)
	}
}

func TestIncludeErrors(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.cfg"), "# a\nconfig sub/b.cfg;\n")
	writeFile(t, filepath.Join(dir, "sub/b.cfg"), "\n\n  config ../a.cfg;\n")
	_, err := Load(filepath.Join(dir, "a.cfg"))
	want := dir + "/sub/b.cfg:3:10: expected a config file not already being read, found include loop " +
		dir + "/a.cfg -> " + dir + "/sub/b.cfg -> " + dir + "/a.cfg"
	if err == nil || err.Error() != want || !errors.Is(err, ErrInvalid) {
		t.Errorf("loop: err = %v\nwant %s", err, want)
	}

	writeFile(t, filepath.Join(dir, "self.cfg"), "config self.cfg\n")
	if _, err := Load(filepath.Join(dir, "self.cfg")); err == nil || !strings.Contains(err.Error(), "self.cfg:1:8: expected a config file not already being read") {
		t.Errorf("self include: err = %v", err)
	}

	// csync2 allows 10 nested includes; the 11th is an error.
	deep := func(i int) string { return filepath.Join(dir, "deep", fmt.Sprintf("d%02d.cfg", i)) }
	for i := 1; i <= 11; i++ {
		writeFile(t, deep(i), fmt.Sprintf("config d%02d.cfg;\n", i+1))
	}
	writeFile(t, deep(12), "group g { host a; key k; }\n")
	if _, err := Load(deep(2)); err != nil {
		t.Errorf("10 nested includes: %v", err)
	}
	_, err = Load(deep(1))
	want = deep(11) + ":1:8: expected at most 10 nested config includes, found 11 (" + deep(12) + ")"
	if err == nil || err.Error() != want {
		t.Errorf("11 nested includes: err = %v\nwant %s", err, want)
	}

	writeFile(t, filepath.Join(dir, "missing.cfg"), "group g { host a; key k; }\nconfig gone.cfg\n")
	_, err = Load(filepath.Join(dir, "missing.cfg"))
	if !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), dir+"/missing.cfg:2:8: cannot read included config file: ") {
		t.Errorf("missing include: err = %v", err)
	}
	if _, err := Parse("t.cfg", []byte("config /dev/null;")); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("device include: err = %v", err)
	}
}

// An error inside a group does not hide later, independent errors.
func TestSeveralErrors(t *testing.T) {
	_, err := Parse("t.cfg", []byte("group a { host x; }\ngroup b { host y; key k; auto up; }\nssh { port 0; }\n"))
	var list ErrorList
	if !errors.As(err, &list) || len(list) != 3 {
		t.Fatalf("err = %v, want 3 errors", err)
	}
	for i, want := range []string{"t.cfg:1:1:", "t.cfg:2:31:", "t.cfg:3:12:"} {
		if !strings.HasPrefix(list[i].Error(), want) {
			t.Errorf("error %d = %v, want prefix %s", i, list[i], want)
		}
	}
}
