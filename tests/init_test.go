package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"ocf-csync/tests/cluster"
)

// adminKey is where the administrator's own key sits on node1 in the init
// test: root can log in everywhere with it (the harness's key), and it is
// not the cluster identity that init makes.
const adminKey = cluster.RunDir + "/admin_ed25519"

// freshEnv starts n nodes that have sshd and root logins for the admin
// but nothing of ocf-csync's own: no identity, no known_hosts, no keys;
// node1 has the config.
func freshEnv(t *testing.T, n int) *env {
	t.Helper()
	c := cluster.New(t, cluster.Options{Nodes: n, Binary: binary})
	e := &env{t: t, c: c}
	priv, err := os.ReadFile(c.Node(1).Path(cluster.ClientKey))
	if err != nil {
		t.Fatal(err)
	}
	e.writeFile(c.Node(1), adminKey, string(priv), 0o600)
	for _, nd := range c.Nodes() {
		for _, f := range []string{cluster.ClientKey, cluster.ClientKey + ".pub", cluster.KnownHosts} {
			if err := os.Remove(nd.Path(f)); err != nil {
				t.Fatal(err)
			}
		}
	}
	var hosts []string
	for _, nd := range c.Nodes() {
		hosts = append(hosts, nd.Name)
	}
	e.writeFile(c.Node(1), cfgPath, fmt.Sprintf(`# a new cluster
group %s {
	host %s;
	key %s;
	include %s;
}

ssh {
	remote-command "%s serve";
	connect-timeout 5;
}
`, groupName, strings.Join(hosts, " "), keyPath, dataDir, binary), 0o644)
	return e
}

// fingerprints are the --fingerprint flags for every node.
func (e *env) fingerprints() []string {
	var fl []string
	for _, nd := range e.c.Nodes() {
		fl = append(fl, "--fingerprint", nd.Name+"="+e.c.HostKeyFingerprint(nd.Index))
	}
	return fl
}

// installFlags point init and push-config at the admin's key and at the
// harness's authorized_keys file of each node.
func (e *env) installFlags() []string {
	return []string{"--admin-identity", adminKey, "--authorized-keys", filepath.Join(e.c.Dir(), "%n", "authorized_keys")}
}

// snapshot reads files on n (missing ones as "<none>").
func snapshot(n *cluster.Node, paths ...string) map[string]string {
	out := map[string]string{}
	for _, p := range paths {
		data, err := os.ReadFile(n.Path(p))
		if err != nil {
			out[p] = "<none>"
			continue
		}
		fi, _ := os.Stat(n.Path(p))
		out[p] = fmt.Sprintf("%04o %s", fi.Mode().Perm(), data)
	}
	return out
}

const stateDirIn = cluster.VarDir + "/ocf-csync"

// TestInitAndPushConfig: init on node1 of a fresh cluster refuses a wrong
// fingerprint (writing nothing), then makes identity, key, state dir and
// known_hosts and installs the authorized_keys lines everywhere; a second
// init changes nothing; push-config copies config, key, identity and
// known_hosts with the right modes; the first sync works through the
// pinned key; a config edited on a peer is not overwritten without --force.
func TestInitAndPushConfig(t *testing.T) {
	e := freshEnv(t, 3)
	n1, n2, n3 := e.node(1), e.node(2), e.node(3)
	made := []string{cluster.ClientKey, cluster.ClientKey + ".pub", keyPath, cluster.KnownHosts}

	// A wrong fingerprint: refused, nothing written.
	fl := e.fingerprints()
	fl[3] = "node2=SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	r := e.csync(n1, append([]string{"init", "--install"}, append(fl, e.installFlags()...)...)...)
	if r.code == 0 || !strings.Contains(r.stderr, "refused") || !strings.Contains(r.stderr, "nothing was written") {
		t.Errorf("init with a wrong fingerprint was not refused:\n%s", r)
	}
	// No fingerprints and no terminal: nobody confirmed; nothing written.
	r = e.csync(n1, "init")
	if r.code == 0 || !strings.Contains(r.stderr, "--fingerprint node3="+e.c.HostKeyFingerprint(3)) {
		t.Errorf("init without confirmed fingerprints did not refuse and list them:\n%s", r)
	}
	t.Logf("init without fingerprints (exit %d):\n%s%s", r.code, r.stdout, r.stderr)
	for p, v := range snapshot(n1, append(made, stateDirIn)...) {
		if v != "<none>" {
			t.Errorf("a refused init wrote %s on node1", p)
		}
	}
	if _, err := os.Stat(n1.Path(stateDirIn)); err == nil {
		t.Errorf("a refused init made the state directory")
	}

	// The real thing.
	args := append([]string{"init", "--install"}, append(e.fingerprints(), e.installFlags()...)...)
	r = e.csync(n1, args...)
	if r.code != 0 {
		t.Fatalf("init failed:\n%s", r)
	}
	t.Logf("init:\n%s", r.stdout)
	wantModes := map[string]os.FileMode{cluster.ClientKey: 0o600, keyPath: 0o600, cluster.KnownHosts: 0o600, stateDirIn: 0o700}
	for p, mode := range wantModes {
		fi, err := os.Stat(n1.Path(p))
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("after init, %s on node1: %v %v, want mode %04o", p, fi, err, mode)
		}
	}
	kh, _ := os.ReadFile(n1.Path(cluster.KnownHosts))
	if got := strings.Count(string(kh), "\n"); got != 3 {
		t.Errorf("known_hosts has %d lines, want one per node (3):\n%s", got, kh)
	}
	pub, _ := os.ReadFile(n1.Path(cluster.ClientKey + ".pub"))
	pubKey := strings.Join(strings.Fields(string(pub))[:2], " ")
	pk, _, _, _, err := ssh.ParseAuthorizedKey(pub)
	if err != nil {
		t.Fatalf("identity .pub: %v", err)
	}
	identityFP := ssh.FingerprintSHA256(pk)
	wantLine := fmt.Sprintf(`command="%s serve --config %s",restrict,from="%s,%s,%s" %s`, binary, cfgPath, n1.Addr, n2.Addr, n3.Addr, pubKey)
	for _, nd := range e.c.Nodes() {
		ak, _ := os.ReadFile(nd.AuthorizedKeysPath())
		if !strings.Contains(string(ak), wantLine) {
			t.Errorf("%s's authorized_keys lacks\n  %s\nit has:\n%s", nd.Name, wantLine, ak)
		}
		if !strings.Contains(string(ak), e.c.ClientPublicKey()) {
			t.Errorf("init dropped the admin's own line on %s", nd.Name)
		}
	}

	// A second init changes nothing and says so.
	before := snapshot(n1, made...)
	beforeAK := snapshot(n2, n2.AuthorizedKeysPath())
	r = e.csync(n1, args...)
	if r.code != 0 || !strings.Contains(r.stdout, "nothing to do") {
		t.Errorf("second init:\n%s", r)
	}
	t.Logf("second init:\n%s", r.stdout)
	r = e.csync(n1, append([]string{"--json"}, args...)...)
	var ij struct {
		Changed        bool
		Steps          []any
		AuthorizedKeys []struct{ Line string } `json:"authorized_keys"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &ij); err != nil || r.code != 0 || ij.Changed || len(ij.Steps) != 0 ||
		len(ij.AuthorizedKeys) != 1 || !strings.HasPrefix(ij.AuthorizedKeys[0].Line, wantLine+" ") {
		t.Errorf("init --json on a set-up cluster: %+v %v\n%s", ij, err, r)
	}
	if after := snapshot(n1, made...); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("the second init changed files on node1")
	}
	if after := snapshot(n2, n2.AuthorizedKeysPath()); fmt.Sprint(after) != fmt.Sprint(beforeAK) {
		t.Errorf("the second init changed node2's authorized_keys")
	}

	// push-config: everything arrives with node1's modes.
	r = e.csync(n1, "push-config", "--admin-identity", adminKey)
	if r.code != 0 {
		t.Fatalf("push-config failed:\n%s", r)
	}
	t.Logf("push-config:\n%s", r.stdout)
	pushed := []string{cfgPath, keyPath, cluster.ClientKey, cluster.ClientKey + ".pub", cluster.KnownHosts}
	want := snapshot(n1, pushed...)
	for _, nd := range []*cluster.Node{n2, n3} {
		if got := snapshot(nd, pushed...); fmt.Sprint(got) != fmt.Sprint(want) {
			for _, p := range pushed {
				if got[p] != want[p] {
					t.Errorf("%s on %s after push-config: %.40q, node1 has %.40q", p, nd.Name, got[p], want[p])
				}
			}
		}
		if !gone(nd.Path(cluster.EtcDir + "/.ocf-csync-tmp")) {
			t.Errorf("staging directory left in %s on %s", cluster.EtcDir, nd.Name)
		}
	}
	if r = e.csync(n1, "push-config", "--admin-identity", adminKey); r.code != 0 || strings.Count(r.stdout, "up to date") != 2 {
		t.Errorf("second push-config did not find both peers up to date:\n%s", r)
	}
	t.Logf("second push-config:\n%s", r.stdout)

	// The first sync, through the pinned key.
	e.writeFile(n1, dataDir+"/hello.txt", "hello, new cluster\n", 0o644)
	r = e.mustSync(n1)
	t.Logf("first sync: %s", strings.TrimSpace(r.stdout))
	for _, nd := range []*cluster.Node{n2, n3} {
		if got, err := os.ReadFile(data(nd, "hello.txt")); string(got) != "hello, new cluster\n" {
			t.Errorf("first sync did not reach %s: %q %v", nd.Name, got, err)
		}
		if log, _ := os.ReadFile(nd.SSHDLog()); !bytes.Contains(log, []byte("Accepted publickey for root from "+n1.Addr)) || !bytes.Contains(log, []byte(identityFP)) {
			t.Errorf("%s's sshd did not let node1 in with the cluster identity %s (the pinned line)", nd.Name, identityFP)
		}
	}

	// A config edited on a peer is not overwritten without --force.
	edited := string(readIn(t, n2, cfgPath)) + "# local note on node2\n"
	e.writeFile(n2, cfgPath, edited, 0o644)
	e.writeFile(n1, cfgPath, string(readIn(t, n1, cfgPath))+"# new line from node1\n", 0o644)
	r = e.csync(n1, "push-config", "--admin-identity", adminKey)
	t.Logf("push-config over node2's edit (exit %d):\n%s%s", r.code, r.stdout, r.stderr)
	if r.code == 0 || !strings.Contains(r.stdout, "REFUSED") || !strings.Contains(r.stdout, "-# local note on node2") || !strings.Contains(r.stdout, "+# new line from node1") {
		t.Errorf("push-config over a peer's edit was not refused with a diff:\n%s", r)
	}
	if got := string(readIn(t, n2, cfgPath)); got != edited {
		t.Errorf("node2's edited config was overwritten without --force")
	}
	if got := string(readIn(t, n3, cfgPath)); got != string(readIn(t, n1, cfgPath)) {
		t.Errorf("node3 (not edited) did not get the new config")
	}
	r = e.csync(n1, "push-config", "--force", "--admin-identity", adminKey, n2.Name)
	if r.code != 0 || string(readIn(t, n2, cfgPath)) != string(readIn(t, n1, cfgPath)) {
		t.Errorf("push-config --force did not overwrite node2's config:\n%s", r)
	}
}

func readIn(t *testing.T, n *cluster.Node, p string) []byte {
	t.Helper()
	data, err := os.ReadFile(n.Path(p))
	if err != nil {
		t.Fatal(err)
	}
	return data
}
