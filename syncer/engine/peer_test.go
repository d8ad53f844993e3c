package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ocf-csync/syncer/config"
)

func TestCheckPeerAddress(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "c.cfg")
	os.WriteFile(cfgPath, []byte(`
group g { host alpha beta@10.0.0.2 gamma; key /k; include /srv; }
group h { host alpha beta@10.1.0.2; key /k; include /opt; }
ha { cluster-ip 192.168.85.1; }
`), 0o644)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	view, err := cfg.Node("alpha")
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(_ context.Context, host string) ([]string, error) {
		switch host {
		case "beta":
			return []string{"10.9.9.2", "fd00::2"}, nil
		case "gamma":
			return nil, errors.New("no such host")
		}
		return nil, errors.New("unexpected lookup of " + host)
	}
	for _, tc := range []struct {
		claimed, conn string
		want          string // "" = accepted, else a substring of the refusal
	}{
		{"beta", "10.9.9.2 40000 10.0.0.1 22", ""},               // resolved name
		{"beta", "10.0.0.2 40000 10.0.0.1 22", ""},               // host@address
		{"beta", "10.1.0.2 40000 10.0.0.1 22", ""},               // host@address of another group
		{"beta", "::ffff:10.9.9.2 40000 ::ffff:10.0.0.1 22", ""}, // v4-mapped
		{"beta", "fd00::2 40000 fd00::1 22", ""},
		{"beta", "192.168.85.1 40000 10.0.0.1 22", ""}, // the cluster IP
		{"BETA", "10.9.9.2 40000 10.0.0.1 22", ""},
		{"beta", "", ""}, // local invocation: trusted
		{"beta", "10.9.9.3 40000 10.0.0.1 22", "sender claims to be beta but connects from 10.9.9.3; alpha accepts beta only from 10.0.0.2, 10.1.0.2, 10.9.9.2, 192.168.85.1, fd00::2"},
		{"gamma", "10.9.9.3 40000 10.0.0.1 22", "connects from 10.9.9.3; alpha accepts gamma only from 192.168.85.1 (its resolved names, host@address entries and the ha cluster-ip); could not resolve gamma (no such host)"},
		{"beta", "garbage", "is not \"client-ip client-port server-ip server-port\""},
	} {
		err := CheckPeerAddress(context.Background(), view, tc.claimed, tc.conn, lookup)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s from %q: refused: %v", tc.claimed, tc.conn, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s from %q: %v, want %q", tc.claimed, tc.conn, err, tc.want)
		}
	}
}

func TestInPeers(t *testing.T) {
	for _, c := range []struct {
		only []string
		peer string
		want bool
	}{
		{nil, "node2", true},
		{[]string{"node2"}, "node2", true},
		{[]string{"Node2"}, "node2", true},
		{[]string{"node3"}, "node2", false},
		{[]string{"node3", "NODE2"}, "node2", true},
		{[]string{"node"}, "node2", false},
	} {
		if got := InPeers(c.only, c.peer); got != c.want {
			t.Errorf("InPeers(%q, %q) = %v, want %v", c.only, c.peer, got, c.want)
		}
	}
}
