package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLint(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.key")
	os.WriteFile(good, []byte(strings.Repeat("k", 64)+"\n"), 0o600)
	for name, c := range map[string]struct {
		content string
		mode    os.FileMode
	}{
		"short.key": {"abcde\n", 0o600},
		"empty.key": {"", 0o600},
		"world.key": {strings.Repeat("w", 64) + "\n", 0o644},
		"group.key": {strings.Repeat("g", 64) + "\n", 0o640},
		"bad.key":   {strings.Repeat("b", 40) + "!\n", 0o600},
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(c.content), c.mode)
		os.Chmod(p, c.mode)
	}
	os.Mkdir(filepath.Join(dir, "data"), 0o755)
	os.Mkdir(filepath.Join(dir, "unreadable.key"), 0o700)

	head := "group g {\n  host n1 n2;\n  key KEY;\n  include DIR/data;\n"
	for _, tc := range []struct {
		name string
		body string // the rest of group g and more; DIR and KEY replaced
		key  string
		want []string // "line:col: severity: message substring", in order
	}{
		{"clean", "}\n", "good.key", nil},
		{"missing key", "}\n", "nope.key", []string{"3:7: error: group g: key file DIR/nope.key does not exist on this host"}},
		{"short key", "}\n", "short.key", []string{"3:7: error: group g: group key file DIR/short.key: the key has 5 characters, at least 32"}},
		{"empty key", "}\n", "empty.key", []string{"3:7: error: group g: group key file DIR/empty.key: the key has 0 characters"}},
		{"world-readable key", "}\n", "world.key", []string{"3:7: error: group g: key file DIR/world.key is readable or writable by group or others (mode 0644); run: chmod 600 DIR/world.key"}},
		{"group-readable key", "}\n", "group.key", []string{"3:7: error: group g: key file DIR/group.key is readable or writable by group or others (mode 0640)"}},
		{"bad character", "}\n", "bad.key", []string{"3:7: error: group g: group key file DIR/bad.key: character 41 of the key"}},
		{"key is a directory", "}\n", "unreadable.key", []string{"3:7: error: group g: key file DIR/unreadable.key is not a regular file"}},
		{"backup dir inside the include set", "  backup-directory DIR/data/.backup;\n  backup-generations 3;\n}\n", "good.key",
			[]string{"5:20: error: group g: backup-directory DIR/data/.backup is inside the include set of group g"}},
		{"backup dir holding an include", "  backup-directory DIR;\n  backup-generations 3;\n}\n", "good.key",
			[]string{"5:20: error: group g: backup-directory DIR holds DIR/data, included by group g"}},
		{"backup dir inside another group's includes", "  backup-directory DIR/other/b;\n  backup-generations 2;\n}\ngroup h { host n1; key KEY; include DIR/other; }\n", "good.key",
			[]string{"5:20: error: group g: backup-directory DIR/other/b is inside the include set of group h", "warning: include DIR/other: DIR/other does not exist"}},
		{"backups off: no check", "  backup-directory DIR/data/.backup;\n  backup-generations 1;\n}\n", "good.key", nil},
		{"%% in single quotes", "  action { exec \"echo '%%'\"; }\n}\n", "good.key", []string{"5:17: error: exec \"echo '%%'\" puts %% inside quotes"}},
		{"%% quoted in the second command", "  action { exec \"cp %% /x\" \"sh -c 'cat %%'\"; }\n}\n", "good.key", []string{"5:28: error: exec \"sh -c 'cat %%'\" puts %% inside quotes"}},
		{"%% bare", "  action { exec \"cp %% /tmp/x\" \"echo '%' %%\"; }\n}\n", "good.key", nil},
		{"relative patterns", "  include tmp/x;\n  exclude a/b;\n  include *.conf;\n}\n", "good.key",
			[]string{"5:11: warning: include \"tmp/x\" is relative", "6:11: warning: exclude \"a/b\" is relative"}},
		{"missing include root", "  include DIR/nothere/x;\n}\n", "good.key", []string{"5:11: warning: include DIR/nothere/x: DIR/nothere/x does not exist on this host (n1)"}},
		{"group without include", "}\ngroup e { host n1 n2; key KEY; exclude *.tmp; }\n", "good.key", []string{"6:1: warning: group \"e\" has no include"}},
		{"group defined twice", "}\ngroup g { host n1 n3; key KEY; include DIR/data; }\n", "good.key", []string{"6:1: warning: group \"g\" is defined twice (first at DIR/c.cfg:1:1)"}},
		{"host listed twice", "  host n2;\n}\n", "good.key", []string{"5:8: warning: host \"n2\" is listed twice"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := strings.NewReplacer("KEY", filepath.Join(dir, tc.key), "DIR", dir).Replace(head + tc.body)
			p := filepath.Join(dir, "c.cfg")
			os.WriteFile(p, []byte(text), 0o644)
			cfg, err := Load(p)
			if err != nil {
				t.Fatal(err)
			}
			v, err := cfg.Node("n1")
			if err != nil {
				t.Fatal(err)
			}
			issues := v.Lint()
			var got []string
			for _, i := range issues {
				got = append(got, strings.TrimPrefix(i.String(), p+":"))
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d issues, want %d:\n%s", len(got), len(tc.want), strings.Join(got, "\n"))
			}
			for i, w := range tc.want {
				w = strings.ReplaceAll(w, "DIR", dir)
				if !strings.Contains(got[i], w) && !strings.HasPrefix(got[i], w) {
					t.Errorf("issue %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

func TestQuotedPercent(t *testing.T) {
	for s, want := range map[string]bool{
		`cp %% /x`:            false,
		`echo '%%'`:           true,
		`echo "%%"`:           true,
		`echo "a" %% 'b'`:     false,
		`echo \'%% \"`:        false,
		`echo "\"%%"`:         true,
		`echo '\'%%`:          false, // '\' is a complete single-quoted backslash
		`sh -c "cat %%"`:      true,
		`echo $(cat %%)`:      false,
		`echo "$(cat %%)"`:    true,
		`echo %`:              false,
		`echo '%' '%'`:        false,
		`logger "done" '%%x'`: true,
	} {
		if got := quotedPercent(s); got != want {
			t.Errorf("quotedPercent(%s) = %v, want %v", s, got, want)
		}
	}
}
