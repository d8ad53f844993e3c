package tests

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"ocf-csync/tests/cluster"
)

// sftpBackup is the group's backup-directory, on every node.
const sftpBackup = cluster.VarDir + "/backup"

// sftpConfig: node1 and node2 run ocf-csync; node3 is a receive-only slave
// reached over SFTP (sshd's internal-sftp), with no ocf-csync binary.
func (e *env) sftpConfig(sftpNode string, hosts string) {
	e.t.Helper()
	e.writeRawConfig(fmt.Sprintf(`group %s {
	host %s;
	key %s;
	include %s;
	backup-directory %s;
	backup-generations 3;
}

ssh {
	identity %s;
	known-hosts %s;
	remote-command "%s serve";
	connect-timeout 5;
	sftp-hosts %s;
}
`, groupName, hosts, keyPath, dataDir, sftpBackup, cluster.ClientKey, cluster.KnownHosts, binary, sftpNode))
}

// hideBinary makes the ocf-csync binary invisible on n: an empty tmpfs over
// its directory in n's private mount namespace. n is then a host with sshd
// and nothing of ocf-csync.
func hideBinary(t *testing.T, n *cluster.Node) {
	t.Helper()
	ctx := context.Background()
	if _, _, err := n.Run(ctx, "mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "none", filepath.Dir(binary)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{binary, "/usr/sbin/ocf-csync", "/usr/local/sbin/ocf-csync"} {
		if _, _, err := n.Run(ctx, "test", "!", "-e", p); err != nil {
			t.Fatalf("%s still has an ocf-csync binary at %s", n.Name, p)
		}
	}
	if out, _, err := n.Run(ctx, "sh", "-c", "command -v ocf-csync || echo none"); err != nil || strings.TrimSpace(out) != "none" {
		t.Fatalf("ocf-csync is still on %s's PATH: %q %v", n.Name, out, err)
	}
}

// sftpManifest is what an SFTP target can reproduce of a tree: mtimes to
// the second (SFTP v3), no fifos, sockets or devices (no mknod), and no
// symlink mtimes or owners (no lsetstat).
func sftpManifest(t *testing.T, root string) []entry {
	var out []entry
	for _, e := range manifest(t, root) {
		switch e.Type {
		case "fifo", "socket", "chr", "blk":
			continue
		case "symlink":
			e.Mtime, e.UID, e.GID = 0, 0, 0
		default:
			e.Mtime = e.Mtime / 1e9 * 1e9
		}
		out = append(out, e)
	}
	return out
}

func (e *env) requireSFTPSame(from, to *cluster.Node) {
	e.t.Helper()
	if d := diffManifests(from.Name, sftpManifest(e.t, from.Path(dataDir)), to.Name, sftpManifest(e.t, to.Path(dataDir))); d != "" {
		e.t.Fatalf("SFTP target differs: %s", d)
	}
}

// TestSFTPTarget: an SFTP-only slave gets a mixed tree identical by
// manifest; a change made behind the sender's back is replaced and kept in
// the backup directory; a symlinked directory planted there is refused; a
// sender killed mid-copy leaves the old file or the new one; after a
// failover the new active node pushes there too.
func TestSFTPTarget(t *testing.T) {
	e := newEnv(t, 3)
	n1, n2, n3 := e.node(1), e.node(2), e.node(3)
	e.sftpConfig(n3.Name, "node1 node2 (node3)")
	hideBinary(t, n3)
	os.Remove(n3.Path(cfgPath))
	os.Remove(n3.Path(keyPath))

	root := n1.Path(dataDir)
	buildTree(t, root)
	writeRandom(t, filepath.Join(root, "big-64m"), 64<<20, 64)
	os.Chmod(filepath.Join(root, "big-64m"), 0o640)
	os.Lchown(filepath.Join(root, "big-64m"), uidA, gidB)

	// 1. The mixed tree, and what cannot be made is reported.
	t0 := time.Now()
	r := e.mustSync(n1)
	t.Logf("first sync (SFTP to node3, helper to node2) in %v: %s", time.Since(t0).Round(time.Millisecond), strings.TrimSpace(r.stdout))
	e.requireSame("node1", manifest(t, root), 2)
	e.requireSFTPSame(n1, n3)
	for _, want := range []string{"fifo cannot be made over SFTP", "symlink owner cannot be set over SFTP"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("sync did not report %q:\n%s", want, r)
		}
	}
	if gone(filepath.Join(n3.Path(dataDir), ".ocf-csync-tmp")) == false {
		t.Errorf("staging directory left on node3")
	}

	// Deletions (deepest first, never recursive), an update, a new dir.
	for _, p := range []string{"dir", "links", "plain.txt"} {
		os.RemoveAll(filepath.Join(root, p))
	}
	e.writeFile(n1, dataDir+"/owned/new/deeper/file", "new\n", 0o600)
	e.writeFile(n1, dataDir+"/names/with space", "changed\n", 0o644)
	e.mustSync(n1)
	e.requireSFTPSame(n1, n3)
	e.requireSame("node1", manifest(t, root), 2)

	// 2. Changed behind the sender's back: replaced, old version kept.
	e.writeFile(n3, dataDir+"/owned/f", "edited on node3\n", 0o640)
	e.writeFile(n1, dataDir+"/owned/f", "v2 from node1\n", 0o640)
	r = e.mustSync(n1)
	if got, _ := os.ReadFile(data(n3, "owned/f")); string(got) != "v2 from node1\n" {
		t.Errorf("node3's owned/f = %q, want node1's: a slave always loses", got)
	}
	bk := n3.Path(filepath.Join(sftpBackup, dataDir, "owned/f"))
	if got, err := os.ReadFile(bk); string(got) != "edited on node3\n" {
		t.Errorf("backup of node3's edit at %s = %q, %v", bk, got, err)
	}
	if !strings.Contains(r.stderr, "changed behind this node's back") {
		t.Errorf("the sender did not log the change behind its back:\n%s", r)
	}

	// 3. A symlinked directory planted on the target is refused.
	outside := n3.Path(cluster.VarDir + "/outside")
	os.MkdirAll(outside, 0o755)
	os.RemoveAll(data(n3, "owned/new"))
	if err := os.Symlink(cluster.VarDir+"/outside", data(n3, "owned/new")); err != nil {
		t.Fatal(err)
	}
	e.writeFile(n1, dataDir+"/owned/new/deeper/file", "through the link?\n", 0o600)
	r = e.csync(n1, "sync")
	if r.code == 0 || !strings.Contains(r.stdout+r.stderr, "symlink") {
		t.Errorf("sync through a planted symlinked directory did not fail with a reason:\n%s", r)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("ocf-csync wrote through the symlink on node3: %v", ents)
	}
	os.Remove(data(n3, "owned/new"))
	e.mustSync(n1)
	e.requireSFTPSame(n1, n3)

	// 4. kill -9 of the sender mid-copy: the old file or the new one. The
	// link to node3 is slowed so that the copy is surely under way.
	big := data(n3, "big-64m")
	oldSum := mustSHA256(t, big)
	writeRandom(t, filepath.Join(root, "big-64m"), 64<<20, 65)
	newSum := mustSHA256(t, filepath.Join(root, "big-64m"))
	shape(t, n1, "50mbit")
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := e.csyncCmd(ctx, n1, "sync", "--peer", n3.Name)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	staging := filepath.Join(n3.Path(dataDir), ".ocf-csync-tmp")
	waitFor(t, 60*time.Second, "a temp file of 1 MiB in node3's staging directory", func() bool {
		ents, _ := os.ReadDir(staging)
		for _, en := range ents {
			if fi, err := en.Info(); err == nil && fi.Size() > 1<<20 {
				return true
			}
		}
		return false
	})
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if sum := mustSHA256(t, big); sum != oldSum && sum != newSum {
		t.Fatalf("after kill -9 mid-copy node3's file is neither the old nor the new version")
	} else {
		t.Logf("after kill -9 mid-copy node3 has the %s version; sender output: %s", map[bool]string{true: "old", false: "new"}[sum == oldSum], strings.TrimSpace(out.String()))
	}
	shape(t, n1, "")
	e.mustSync(n1)
	if sum := mustSHA256(t, big); sum != newSum {
		t.Errorf("the sync after the kill did not bring the new version")
	}
	if !gone(staging) {
		t.Errorf("the killed run's staging directory is still on node3")
	}
	e.requireSFTPSame(n1, n3)

	// 5. Failover: node1 fails after pushing a change to node2 only; node2
	// becomes active (epoch 2) and pushes that change and its own to node3.
	e.writeFile(n1, dataDir+"/late.txt", "node1 pushed it to node2 only\n", 0o644)
	e.mustSync(n1, "--peer", n2.Name)
	e.writeFile(n2, dataDir+"/from-node2.txt", "node2 after takeover\n", 0o644)
	e.startDaemon(n2)
	for p, want := range map[string]string{"late.txt": "node1 pushed it to node2 only\n", "from-node2.txt": "node2 after takeover\n"} {
		if got, err := os.ReadFile(data(n3, p)); string(got) != want {
			t.Errorf("after failover node3's %s = %q (%v), want %q", p, got, err, want)
		}
	}
}

// shape limits n's outgoing and incoming rate (tbf on eth0); "" removes it.
func shape(t *testing.T, n *cluster.Node, rate string) {
	t.Helper()
	ctx := context.Background()
	if rate == "" {
		n.Run(ctx, "tc", "qdisc", "del", "dev", "eth0", "root")
		return
	}
	if _, _, err := n.Run(ctx, "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", rate, "burst", "64kb", "latency", "200ms"); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s after %v", what, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
