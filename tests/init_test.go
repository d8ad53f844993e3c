package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"ocf-csync/tests/cluster"
)

// adminKey is where the administrator's own key sits on node1 in the init
// test: root can log in everywhere with it (the harness's key), and it is
// not the cluster identity that init makes.
const adminKey = cluster.RunDir + "/admin_ed25519"

// sftpBackup is the group's backup-directory, on every node.
const sftpBackup = cluster.VarDir + "/backup"

const stateDirIn = cluster.VarDir + "/ocf-csync"

// freshEnv starts four nodes that have sshd and root logins for the admin
// but nothing of ocf-csync's own: no identity, no known_hosts, no keys.
// node1 has the config: node1..node3 run ocf-csync, node4 is an SFTP
// receive-only slave with no ocf-csync binary at all.
func freshEnv(t *testing.T) *env {
	t.Helper()
	c := cluster.New(t, cluster.Options{Nodes: 4, Binary: binary})
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
	hideBinary(t, c.Node(4))
	e.writeFile(c.Node(1), cfgPath, fmt.Sprintf(`# a new cluster
group %s {
	host node1 node2 node3 (node4);
	key %s;
	include %s;
	backup-directory %s;
	backup-generations 3;
}

ssh {
	remote-command "%s serve";
	connect-timeout 5;
	sftp-hosts node4;
}
`, groupName, keyPath, dataDir, sftpBackup, binary), 0o644)
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

// snapshot reads files on n (host-side paths, or in-node paths mapped by
// n.Path): mode, owner, mtime and content; missing ones as "<none>".
func snapshot(n *cluster.Node, paths ...string) map[string]string {
	out := map[string]string{}
	for _, p := range paths {
		fi, err := os.Stat(n.Path(p))
		if err != nil {
			out[p] = "<none>"
			continue
		}
		data := []byte("<directory>")
		if !fi.IsDir() {
			data, _ = os.ReadFile(n.Path(p))
		}
		st := fi.Sys().(*syscall.Stat_t)
		out[p] = fmt.Sprintf("%04o %d:%d %s", fi.Mode().Perm(), st.Uid, st.Gid, data)
	}
	return out
}

// withMtimes is snapshot plus each file's mtime: what a rewrite with the
// same content would still change.
func withMtimes(n *cluster.Node, paths ...string) map[string]string {
	out := snapshot(n, paths...)
	for _, p := range paths {
		if fi, err := os.Stat(n.Path(p)); err == nil {
			out[p] = fi.ModTime().Format(time.RFC3339Nano) + " " + out[p]
		}
	}
	return out
}

// everyAuthorizedKeys is every node's authorized_keys, with mtimes.
func (e *env) everyAuthorizedKeys() map[string]string {
	out := map[string]string{}
	for _, nd := range e.c.Nodes() {
		out[nd.Name] = withMtimes(nd, nd.AuthorizedKeysPath())[nd.AuthorizedKeysPath()]
	}
	return out
}

// TestNewCluster is issue 14's acceptance, chained on one cluster: init on
// node1 of a fresh cluster (refusals first), a second init, push-config,
// the first sync, push-config over a peer's edit, then node4 as an SFTP
// slave without ocf-csync (mixed tree with a 64 MiB file, a change behind
// the sender's back, a planted symlinked directory, kill -9 mid-copy) and
// a failover after which node2 pushes to node4. A failed step ends the
// chain: every later one builds on it.
func TestNewCluster(t *testing.T) {
	e := freshEnv(t)
	var identityFP string
	steps := []struct {
		name string
		run  func(e *env)
	}{
		{"InitRefusesWrongOrMissingFingerprint", initRefuses},
		{"Init", func(e *env) { identityFP = initCluster(e) }},
		{"InitAgainChangesNothing", initAgain},
		{"PushConfig", pushConfig},
		{"FirstSync", func(e *env) { firstSync(e, identityFP) }},
		{"PushConfigRefusesPeerEdit", pushConfigPeerEdit},
		{"SFTPMixedTree", sftpMixedTree},
		{"SFTPChangedBehindBack", sftpChangedBehindBack},
		{"SFTPSymlinkedDirRefused", sftpSymlinkedDir},
		{"SFTPKill9MidCopy", sftpKillMidCopy},
		{"FailoverPushesToSFTPSlave", sftpFailover},
	}
	for _, s := range steps {
		if !t.Run(s.name, func(t *testing.T) { s.run(&env{t: t, c: e.c}) }) {
			t.Fatalf("step %s failed; the later steps build on it", s.name)
		}
	}
}

// made are the files init creates on node1.
var made = []string{cluster.ClientKey, cluster.ClientKey + ".pub", keyPath, cluster.KnownHosts}

// initRefuses: a wrong fingerprint, or none on a non-terminal, is refused
// before anything is written, here or on any node.
func initRefuses(e *env) {
	t, n1 := e.t, e.node(1)
	aks := e.everyAuthorizedKeys()
	fl := e.fingerprints()
	fl[3] = "node2=SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	r := e.csync(n1, append([]string{"init", "--install"}, append(fl, e.installFlags()...)...)...)
	if r.code == 0 || !strings.Contains(r.stderr, "refused") || !strings.Contains(r.stderr, "nothing was written") {
		t.Errorf("init with a wrong fingerprint was not refused:\n%s", r)
	}
	t.Logf("init with a wrong fingerprint for node2 (exit %d):\n%s", r.code, r.stderr)
	for p, v := range snapshot(n1, append(made, stateDirIn)...) {
		if v != "<none>" {
			t.Errorf("init with a wrong fingerprint wrote %s on node1", p)
		}
	}
	// No fingerprints and no terminal: nobody confirmed; nothing written.
	r = e.csync(n1, "init", "--install", "--admin-identity", adminKey)
	if r.code == 0 || !strings.Contains(r.stderr, "--fingerprint node4="+e.c.HostKeyFingerprint(4)) {
		t.Errorf("init without confirmed fingerprints did not refuse and list them:\n%s", r)
	}
	t.Logf("init without fingerprints (exit %d):\n%s%s", r.code, r.stdout, r.stderr)
	for p, v := range snapshot(n1, append(made, stateDirIn)...) {
		if v != "<none>" {
			t.Errorf("a refused init wrote %s on node1", p)
		}
	}
	if got := e.everyAuthorizedKeys(); fmt.Sprint(got) != fmt.Sprint(aks) {
		t.Errorf("a refused init changed authorized_keys files:\nbefore %q\nafter  %q", aks, got)
	}
}

// initArgs is the successful init.
func (e *env) initArgs() []string {
	return append([]string{"init", "--install"}, append(e.fingerprints(), e.installFlags()...)...)
}

// initCluster runs init for real and returns the identity's fingerprint.
func initCluster(e *env) string {
	t, n1 := e.t, e.node(1)
	r := e.csync(n1, e.initArgs()...)
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
	if key, _ := os.ReadFile(n1.Path(keyPath)); len(strings.TrimSpace(string(key))) != 64 {
		t.Errorf("group key %q is not 64 characters", key)
	}
	kh, _ := os.ReadFile(n1.Path(cluster.KnownHosts))
	for _, nd := range e.c.Nodes() {
		// Every node's key, this node's and the SFTP target's included.
		hk, _ := os.ReadFile(filepath.Join(nd.Dir, "ssh_host_ed25519_key.pub"))
		if f := strings.Fields(string(hk)); len(f) < 2 || !strings.Contains(string(kh), f[0]+" "+f[1]) {
			t.Errorf("known_hosts lacks %s's host key:\n%s", nd.Name, kh)
		}
	}
	if got := strings.Count(string(kh), "\n"); got != 4 {
		t.Errorf("known_hosts has %d lines, want one per node (4):\n%s", got, kh)
	}
	pub, _ := os.ReadFile(n1.Path(cluster.ClientKey + ".pub"))
	pk, _, _, _, err := ssh.ParseAuthorizedKey(pub)
	if err != nil {
		t.Fatalf("identity .pub: %v", err)
	}
	pubKey := strings.Join(strings.Fields(string(pub))[:2], " ")
	from := fmt.Sprintf(`from="%s,%s,%s,%s"`, e.node(1).Addr, e.node(2).Addr, e.node(3).Addr, e.node(4).Addr)
	serveLine := fmt.Sprintf(`command="%s serve --config %s",restrict,%s %s`, binary, cfgPath, from, pubKey)
	sftpLine := fmt.Sprintf(`command="internal-sftp",restrict,%s %s`, from, pubKey)
	for _, nd := range e.c.Nodes() {
		want, not := serveLine, sftpLine
		if nd.Index == 4 {
			want, not = sftpLine, serveLine
		}
		ak, _ := os.ReadFile(nd.AuthorizedKeysPath())
		if !strings.Contains(string(ak), want) || strings.Contains(string(ak), not) {
			t.Errorf("%s's authorized_keys: want\n  %s\nit has:\n%s", nd.Name, want, ak)
		}
		if !strings.Contains(string(ak), e.c.ClientPublicKey()) {
			t.Errorf("init dropped the admin's own line on %s", nd.Name)
		}
	}
	return ssh.FingerprintSHA256(pk)
}

// initAgain: a second init changes nothing, here or on the nodes, and
// says so (in text and in --json).
func initAgain(e *env) {
	t, n1 := e.t, e.node(1)
	before := withMtimes(n1, append(made, stateDirIn)...)
	aks := e.everyAuthorizedKeys()
	// A fingerprint that contradicts a recorded key is refused too.
	args := e.initArgs()
	for i, a := range args {
		if strings.HasPrefix(a, "node3=") {
			args[i] = "node3=" + e.c.HostKeyFingerprint(2)
		}
	}
	r := e.csync(n1, args...)
	if r.code == 0 || !strings.Contains(r.stderr, "refused") {
		t.Errorf("init with node2's fingerprint given for the recorded node3 was not refused:\n%s", r)
	}
	r = e.csync(n1, e.initArgs()...)
	if r.code != 0 || !strings.Contains(r.stdout, "nothing to do") || strings.Contains(r.stdout, "created") || strings.Contains(r.stdout, "installed") {
		t.Errorf("second init:\n%s", r)
	}
	t.Logf("second init:\n%s", r.stdout)
	r = e.csync(n1, append([]string{"--json"}, e.initArgs()...)...)
	var ij struct {
		Changed        bool  `json:"changed"`
		Steps          []any `json:"steps"`
		AuthorizedKeys []struct {
			Hosts []string `json:"hosts"`
			Line  string   `json:"line"`
		} `json:"authorized_keys"`
		Error any `json:"error"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &ij); err != nil || r.code != 0 || ij.Changed || ij.Steps == nil || len(ij.Steps) != 0 ||
		len(ij.AuthorizedKeys) != 2 || fmt.Sprint(ij.AuthorizedKeys[1].Hosts) != "[node4]" || !strings.HasPrefix(ij.AuthorizedKeys[1].Line, `command="internal-sftp",restrict,`) || ij.Error != nil {
		t.Errorf("init --json on a set-up cluster: %+v %v\n%s", ij, err, r)
	}
	if after := withMtimes(n1, append(made, stateDirIn)...); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("the second init changed files on node1:\nbefore %q\nafter  %q", before, after)
	}
	if got := e.everyAuthorizedKeys(); fmt.Sprint(got) != fmt.Sprint(aks) {
		t.Errorf("the second init changed authorized_keys files:\nbefore %q\nafter  %q", aks, got)
	}
}

// pushed are the files push-config copies to a node that runs ocf-csync.
var pushed = []string{cfgPath, keyPath, cluster.ClientKey, cluster.ClientKey + ".pub", cluster.KnownHosts}

// pushConfig: config, keys, identity and known_hosts arrive on node2 and
// node3 with node1's content, mode and owner; node4 (SFTP) gets nothing;
// a second push finds everything up to date.
func pushConfig(e *env) {
	t, n1 := e.t, e.node(1)
	// An owner and mode that are not the defaults, to see them kept.
	if err := os.Chown(n1.Path(cfgPath), 0, gidA); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(n1.Path(cfgPath), 0o640); err != nil {
		t.Fatal(err)
	}
	r := e.csync(n1, "push-config", "--admin-identity", adminKey)
	if r.code != 0 {
		t.Fatalf("push-config failed:\n%s", r)
	}
	t.Logf("push-config:\n%s", r.stdout)
	want := snapshot(n1, pushed...)
	if !strings.HasPrefix(want[cfgPath], fmt.Sprintf("0640 0:%d ", gidA)) || !strings.HasPrefix(want[keyPath], "0600 0:0 ") || !strings.HasPrefix(want[cluster.ClientKey], "0600 0:0 ") {
		t.Fatalf("node1's own files are not as set up: %.20q %.20q %.20q", want[cfgPath], want[keyPath], want[cluster.ClientKey])
	}
	for _, nd := range []*cluster.Node{e.node(2), e.node(3)} {
		got := snapshot(nd, pushed...)
		for _, p := range pushed {
			if got[p] != want[p] {
				t.Errorf("%s on %s after push-config: %.40q, node1 has %.40q", p, nd.Name, got[p], want[p])
			}
		}
		if ents, _ := os.ReadDir(nd.Path(cluster.EtcDir)); len(ents) != len(pushed) {
			t.Errorf("%s's %s holds %d entries, want the %d pushed files (a staging file left?): %v", nd.Name, cluster.EtcDir, len(ents), len(pushed), ents)
		}
	}
	for p, v := range snapshot(e.node(4), pushed...) {
		if v != "<none>" {
			t.Errorf("push-config wrote %s on the SFTP target node4", p)
		}
	}
	if r = e.csync(n1, "push-config", "--admin-identity", adminKey); r.code != 0 || strings.Count(r.stdout, "up to date") != 2 {
		t.Errorf("second push-config did not find both peers up to date:\n%s", r)
	}
	t.Logf("second push-config:\n%s", r.stdout)
}

// firstSync: the first sync reaches node2 and node3 through the pinned
// serve line and node4 through the pinned internal-sftp line, both logged
// in with the cluster identity; the pins hold (no shell command runs).
func firstSync(e *env, identityFP string) {
	t, n1 := e.t, e.node(1)
	e.writeFile(n1, dataDir+"/hello.txt", "hello, new cluster\n", 0o644)
	r := e.mustSync(n1)
	t.Logf("first sync:\n%s", r.stdout)
	for _, nd := range []*cluster.Node{e.node(2), e.node(3), e.node(4)} {
		if got, err := os.ReadFile(data(nd, "hello.txt")); string(got) != "hello, new cluster\n" {
			t.Errorf("first sync did not reach %s: %q %v", nd.Name, got, err)
		}
		if log, _ := os.ReadFile(nd.SSHDLog()); !bytes.Contains(log, []byte("Accepted publickey for root from "+n1.Addr)) || !bytes.Contains(log, []byte(identityFP)) {
			t.Errorf("%s's sshd did not let node1 in with the cluster identity %s", nd.Name, identityFP)
		}
	}
	// The identity runs serve (node2) or internal-sftp (node4), nothing else.
	logins := func(nd *cluster.Node) int {
		log, _ := os.ReadFile(nd.SSHDLog())
		n := 0
		for _, l := range strings.Split(string(log), "\n") {
			if strings.Contains(l, "Accepted publickey for root from "+n1.Addr) && strings.Contains(l, identityFP) {
				n++
			}
		}
		return n
	}
	for _, nd := range []*cluster.Node{e.node(2), e.node(4)} {
		before := logins(nd)
		// A forced serve waits for its handshake: the marker and the login
		// count tell, not the exit.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		marker := dataDir + "/pin-broken"
		_, stderr, err := n1.Run(ctx, "ssh", "-n", "-i", cluster.ClientKey, "-o", "BatchMode=yes", "-o", "UserKnownHostsFile="+cluster.KnownHosts,
			"-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=5", "root@"+nd.Name, "touch", marker)
		cancel()
		if logins(nd) != before+1 {
			t.Errorf("the shell login with the cluster identity was not let in on %s: the pin check proves nothing (%v: %s)", nd.Name, err, stderr)
		}
		if !gone(nd.Path(marker)) {
			t.Errorf("the cluster identity ran a shell command on %s: its authorized_keys line does not pin it", nd.Name)
		}
	}
}

// pushConfigPeerEdit: a config edited on a peer is not overwritten without
// --force (a diff shows what would change); with --force it is, with the
// diff printed.
func pushConfigPeerEdit(e *env) {
	t, n1, n2, n3 := e.t, e.node(1), e.node(2), e.node(3)
	edited := string(readIn(t, n2, cfgPath)) + "# local note on node2\n"
	e.writeFile(n2, cfgPath, edited, 0o640)
	e.writeFile(n1, cfgPath, string(readIn(t, n1, cfgPath))+"# new line from node1\n", 0o640)
	r := e.csync(n1, "push-config", "--admin-identity", adminKey)
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
	t.Logf("push-config --force node2 (exit %d):\n%s%s", r.code, r.stdout, r.stderr)
	if r.code != 0 || string(readIn(t, n2, cfgPath)) != string(readIn(t, n1, cfgPath)) {
		t.Errorf("push-config --force did not overwrite node2's config:\n%s", r)
	}
	if !strings.Contains(r.stdout, "-# local note on node2") || !strings.Contains(r.stdout, "updated") {
		t.Errorf("push-config --force did not print the diff of what it overwrote:\n%s", r)
	}
	if got := snapshot(n2, cfgPath)[cfgPath]; got != snapshot(n1, cfgPath)[cfgPath] {
		t.Errorf("node2's config after --force: %.30q, node1's: %.30q", got, snapshot(n1, cfgPath)[cfgPath])
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
