package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ocf-csync/tests/cluster"
)

// TestCsync2Personality drives two nodes the way crmsh's cluster bootstrap
// drives csync2 (crmsh 4.4 bootstrap.py: init_csync2, csync2_update,
// join_csync2), with its exact command lines, through a link named csync2:
// csync2 -k, csync2 -cr /, csync2 -rm F, csync2 -rxv F, csync2 -rf F, and
// the seed's "csync2 -rm /; csync2 -rxv || csync2 -rf / && csync2 -rxv";
// then -T and -TT. The peers pin the key to the helper as the README tells
// csync2 users: command="... serve --config <the csync2.cfg>",restrict.
func TestCsync2Personality(t *testing.T) {
	e := newEnv(t, 2)
	n1, n2 := e.node(1), e.node(2)
	const (
		sysDir = cluster.EtcDir // CSYNC2_SYSTEM_DIR: each node's own /etc/ocf-csync
		cfg    = sysDir + "/csync2.cfg"
		key    = sysDir + "/key_hagroup"
		coro   = dataDir + "/corosync.conf"
		auth   = dataDir + "/authkey"
	)
	// crmsh's config shape; ssh { } only names the test's key files.
	cfgText := fmt.Sprintf(`group ha_group
{
key %s;
host %s;
host %s;
include %s;
include %s;
}
ssh { identity %s; known-hosts %s; connect-timeout 5; }
`, key, n1.Name, n2.Name, coro, auth, cluster.ClientKey, cluster.KnownHosts)
	for _, n := range []*cluster.Node{n1, n2} {
		e.writeFile(n, cfg, cfgText, 0o644)
		pin := fmt.Sprintf("command=\"%s serve --config %s\",restrict %s\n", binary, cfg, e.c.ClientPublicKey())
		if err := os.WriteFile(n.AuthorizedKeysPath(), []byte(pin), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	linkDir := t.TempDir()
	if err := os.Symlink(binary, filepath.Join(linkDir, "csync2")); err != nil {
		t.Fatal(err)
	}
	// csync2 runs a command line as crmsh's invoke() does: through sh,
	// with our csync2 first in PATH.
	csync2 := func(n *cluster.Node, want int, line string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
		defer cancel()
		cmd := n.Command(ctx, "sh", "-c", line)
		cmd.Env = append(cmd.Env, "PATH="+linkDir+":"+strings.TrimPrefix(cmd.Env[0], "PATH="),
			"CSYNC2_SYSTEM_DIR="+sysDir, "OCF_CSYNC_NODE="+n.Name)
		r := runCmd(t, cmd, []string{line})
		if r.code != want {
			t.Fatalf("%s on %s exited %d, want %d\nstdout:\n%s\nstderr:\n%s", line, n.Name, r.code, want, r.stdout, r.stderr)
		}
		t.Logf("%s$ %s  => exit %d\n%s%s", n.Name, line, r.code, r.stdout, r.stderr)
		return r.stdout + r.stderr
	}
	read := func(n *cluster.Node, p string) string {
		t.Helper()
		b, err := os.ReadFile(n.Path(p))
		if err != nil {
			t.Fatalf("read %s on %s: %v", p, n.Name, err)
		}
		return string(b)
	}

	// init_csync2 on node1: the key (never over an existing one), copied
	// to node2 as crmsh's join does with scp, then the first check.
	csync2(n1, 0, "csync2 -k "+key)
	csync2(n1, 1, "csync2 -k "+key)
	e.writeFile(n2, key, read(n1, key), 0o600)
	e.writeFile(n1, coro, "totem { version: 2 }\n", 0o644)
	csync2(n1, 0, "csync2 -cr /")
	csync2(n2, 0, "csync2 -cr /")

	// csync2_update(corosync.conf): -rm, then -rxv succeeds.
	csync2(n1, 0, "csync2 -rm "+coro)
	out := csync2(n1, 0, "csync2 -rxv "+coro)
	if !strings.Contains(out, "Finished with 0 errors.") {
		t.Errorf("csync2 -rxv did not end with csync2's summary line:\n%s", out)
	}
	if got := read(n2, coro); got != "totem { version: 2 }\n" {
		t.Fatalf("node2's corosync.conf after -rxv: %q", got)
	}

	// Both sides edit: -rxv fails on the conflict, -rf makes this side
	// win, the second -rxv succeeds, as csync2_update expects.
	e.writeFile(n2, coro, "totem { version: 2; edited: node2 }\n", 0o644)
	csync2(n2, 0, "csync2 -cr /")
	e.writeFile(n1, coro, "totem { version: 2; edited: node1 }\n", 0o644)
	csync2(n1, 0, "csync2 -rm "+coro)
	out = csync2(n1, 1, "csync2 -rxv "+coro)
	if !strings.Contains(out, "Finished with 1 errors.") {
		t.Errorf("the conflicting -rxv does not count its error:\n%s", out)
	}
	csync2(n1, 0, "csync2 -rf "+coro)
	csync2(n1, 0, "csync2 -rxv "+coro)
	if got := read(n2, coro); got != "totem { version: 2; edited: node1 }\n" {
		t.Fatalf("node2's corosync.conf after -rf and -rxv: %q", got)
	}

	// join_csync2 runs this on the seed; a new file reaches the joiner.
	e.writeFile(n1, auth, "secret\n", 0o600)
	csync2(n1, 0, "csync2 -rm /; csync2 -rxv || csync2 -rf / && csync2 -rxv")
	if got := read(n2, auth); got != "secret\n" {
		t.Fatalf("node2's authkey after the join line: %q", got)
	}

	// -T: exit 2 in sync; 0 and an X line for a difference; -TT the diff.
	csync2(n1, 2, "csync2 -T")
	e.writeFile(n2, coro, "totem { version: 3 }\n", 0o644)
	out = csync2(n1, 0, "csync2 -T")
	if !strings.Contains(out, "X\t"+n1.Name+"\t"+n2.Name+"\t"+coro) {
		t.Errorf("csync2 -T does not list the difference as csync2 does (X, myname, peer, file):\n%s", out)
	}
	out = csync2(n1, 0, fmt.Sprintf("csync2 -TT %s %s %s", n1.Name, n2.Name, coro))
	for _, want := range []string{"--- " + n2.Name + ":" + coro, "+++ " + n1.Name + ":" + coro, "-totem { version: 3 }", "+totem { version: 2; edited: node1 }"} {
		if !strings.Contains(out, want) {
			t.Errorf("csync2 -TT lacks %q:\n%s", want, out)
		}
	}
}
