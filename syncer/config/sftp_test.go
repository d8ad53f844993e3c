package config

import (
	"strings"
	"testing"
)

func TestSFTPHosts(t *testing.T) {
	cfg, err := Parse("t.cfg", []byte("group g {\n  host a b (C d);\n  key k;\n  include /x;\n}\nssh {\n  sftp-hosts c D c;\n}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.SSH.SFTPHosts, " "); got != "c d" {
		t.Errorf("SFTPHosts = %q, want lower-cased and unique \"c d\"", got)
	}
	if !cfg.SSH.IsSFTP("C") || cfg.SSH.IsSFTP("a") {
		t.Errorf("IsSFTP: C=%v a=%v, want true false", cfg.SSH.IsSFTP("C"), cfg.SSH.IsSFTP("a"))
	}
	v, err := cfg.Node("a")
	if err != nil {
		t.Fatal(err)
	}
	if s := v.Summary(); strings.Join(s.SSH.SFTPHosts, " ") != "c d" {
		t.Errorf("summary sftp_hosts = %v", s.SSH.SFTPHosts)
	}
}

func TestSFTPHostsErrors(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"not a slave", "group g { host a b c; key k; }\nssh { sftp-hosts c; }\n",
			`t.cfg:1:20: expected host c to be a slave in group "g" (write it in parentheses: (c)): it is in ssh sftp-hosts, and an SFTP host runs no ocf-csync, so it can only receive`},
		{"slave in one group only", "group g { host a (c); key k; }\ngroup h { host a c; key k; }\nssh { sftp-hosts c; }\n",
			`t.cfg:2:18: expected host c to be a slave in group "h"`},
		{"unknown host", "group g { host a (c); key k; }\nssh { sftp-hosts c x; }\n",
			`t.cfg:2:7: expected the hosts of ssh sftp-hosts to be hosts of a group, found x, which no group lists`},
		{"empty list", "group g { host a (c); key k; }\nssh { sftp-hosts ; }\n",
			`t.cfg:2:18: expected one or more host names after sftp-hosts, found ';'`},
		{"twice", "group g { host a (c) (d); key k; }\nssh { sftp-hosts c; sftp-hosts d; }\n",
			`t.cfg:2:21: expected one sftp-hosts setting in ssh, found a second (the first is at t.cfg:2:7)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.cfg", []byte(tc.src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v\nwant it to contain %s", err, tc.want)
			}
		})
	}
}

func TestSFTPHostWithActionsWarns(t *testing.T) {
	cfg, err := Parse("t.cfg", []byte("group g { host a (c); key k; action { exec \"true\"; } }\nssh { sftp-hosts c; }\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0].Msg, "never run on SFTP host c") {
		t.Errorf("warnings = %v, want one about actions on the SFTP host", cfg.Warnings)
	}
}
