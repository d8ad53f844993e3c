package tests

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"ocf-csync/tests/cluster"
)

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

// sftpMixedTree: a mixed tree with a 64 MiB file reaches node2 and node3
// (helpers) and the SFTP slave node4 identical by manifest (mtimes to the
// second there); what SFTP cannot make is reported; deletions, an update
// and a new deep directory follow.
func sftpMixedTree(e *env) {
	t, n1, n4 := e.t, e.node(1), e.node(4)
	root := n1.Path(dataDir)
	buildTree(t, root)
	writeRandom(t, filepath.Join(root, "big-64m"), 64<<20, 64)
	os.Chmod(filepath.Join(root, "big-64m"), 0o640)
	os.Lchown(filepath.Join(root, "big-64m"), uidA, gidB)

	t0 := time.Now()
	r := e.mustSync(n1)
	t.Logf("mixed tree (helper to node2, node3; SFTP to node4) in %v: %s", time.Since(t0).Round(time.Millisecond), strings.TrimSpace(r.stdout))
	e.requireSame("node1", manifest(t, root), 2, 3)
	e.requireSFTPSame(n1, n4)
	for _, want := range []string{"fifo cannot be made over SFTP", "symlink owner cannot be set over SFTP"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("sync did not report %q:\n%s", want, r)
		}
	}
	if !gone(filepath.Join(n4.Path(dataDir), ".ocf-csync-tmp")) {
		t.Errorf("staging directory left on node4")
	}

	// Deletions (deepest first, never recursive), an update, a new dir.
	for _, p := range []string{"dir", "links", "plain.txt"} {
		os.RemoveAll(filepath.Join(root, p))
	}
	e.writeFile(n1, dataDir+"/owned/new/deeper/file", "new\n", 0o600)
	e.writeFile(n1, dataDir+"/names/with space", "changed\n", 0o644)
	// node4 only from here on (the helpers catch up before the failover).
	e.mustSync(n1, "--peer", n4.Name)
	e.requireSFTPSame(n1, n4)
	for _, p := range []string{"dir", "links", "plain.txt"} {
		if !gone(data(n4, p)) {
			t.Errorf("%s deleted on node1 is still on node4", p)
		}
	}
}

// sftpChangedBehindBack: a file changed on the target behind the sender's
// back is replaced (a slave loses); its old version is in the target's
// backup directory and the sender logs it.
func sftpChangedBehindBack(e *env) {
	t, n1, n4 := e.t, e.node(1), e.node(4)
	e.writeFile(n4, dataDir+"/owned/f", "edited on node4\n", 0o640)
	e.writeFile(n1, dataDir+"/owned/f", "v2 from node1\n", 0o640)
	r := e.mustSync(n1, "--peer", n4.Name)
	if got, _ := os.ReadFile(data(n4, "owned/f")); string(got) != "v2 from node1\n" {
		t.Errorf("node4's owned/f = %q, want node1's: a slave always loses", got)
	}
	bk := n4.Path(filepath.Join(sftpBackup, dataDir, "owned/f"))
	if got, err := os.ReadFile(bk); string(got) != "edited on node4\n" {
		t.Errorf("backup of node4's edit at %s = %q, %v", bk, got, err)
	}
	if !strings.Contains(r.stderr, "changed behind this node's back") {
		t.Errorf("the sender did not log the change behind its back:\n%s", r)
	}
	e.requireSFTPSame(n1, n4)
}

// sftpSymlinkedDir: a symlinked directory planted on the target is
// refused; nothing is written through it.
func sftpSymlinkedDir(e *env) {
	t, n1, n4 := e.t, e.node(1), e.node(4)
	outside := n4.Path(cluster.VarDir + "/outside")
	os.MkdirAll(outside, 0o755)
	os.RemoveAll(data(n4, "owned/new"))
	if err := os.Symlink(cluster.VarDir+"/outside", data(n4, "owned/new")); err != nil {
		t.Fatal(err)
	}
	e.writeFile(n1, dataDir+"/owned/new/deeper/file", "through the link?\n", 0o600)
	r := e.csync(n1, "sync", "--peer", n4.Name)
	t.Logf("sync through a planted symlinked directory (exit %d):\n%s%s", r.code, r.stdout, r.stderr)
	if r.code == 0 || !strings.Contains(r.stdout+r.stderr, "symlink") {
		t.Errorf("sync through a planted symlinked directory did not fail with a reason:\n%s", r)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("ocf-csync wrote through the symlink on node4: %v", ents)
	}
	if target, err := os.Readlink(data(n4, "owned/new")); err != nil || target != cluster.VarDir+"/outside" {
		t.Errorf("the planted symlink was changed: %q %v", target, err)
	}
	os.Remove(data(n4, "owned/new"))
	e.mustSync(n1, "--peer", n4.Name)
	e.requireSFTPSame(n1, n4)
}

// sftpKillMidCopy: kill -9 of the sender mid-copy leaves the old file or
// the new one under the real name, never a part; the next sync brings the
// new one and clears the staging directory.
func sftpKillMidCopy(e *env) {
	t, n1, n4 := e.t, e.node(1), e.node(4)
	root := n1.Path(dataDir)
	big := data(n4, "big-64m")
	oldSum := mustSHA256(t, big)
	writeRandom(t, filepath.Join(root, "big-64m"), 64<<20, 65)
	newSum := mustSHA256(t, filepath.Join(root, "big-64m"))
	// The link is slowed so that the copy is surely under way at the kill.
	shape(t, n1, "50mbit")
	defer shape(t, n1, "")
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := e.csyncCmd(ctx, n1, "sync", "--peer", n4.Name)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	staging := filepath.Join(n4.Path(dataDir), ".ocf-csync-tmp")
	waitFor(t, 60*time.Second, "a temp file of 1 MiB in node4's staging directory", func() bool {
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
		t.Fatalf("after kill -9 mid-copy node4's file is neither the old nor the new version")
	} else {
		t.Logf("after kill -9 mid-copy node4 has the %s version; sender output: %s", map[bool]string{true: "old", false: "new"}[sum == oldSum], strings.TrimSpace(out.String()))
	}
	shape(t, n1, "")
	r := e.mustSync(n1) // the helpers catch up too
	t.Logf("sync after the kill: %s", strings.TrimSpace(r.stdout))
	if sum := mustSHA256(t, big); sum != newSum {
		t.Errorf("the sync after the kill did not bring the new version")
	}
	if !gone(staging) {
		t.Errorf("the killed run's staging directory is still on node4")
	}
	e.requireSFTPSame(n1, n4)
	e.requireSame("node1", manifest(t, root), 2, 3)
}

// sftpFailover: node1's daemon is active and pushes a change to node2 and
// node3 while node4 is cut off, then dies (kill -9); node2 takes over and
// pushes that change and its own to node4.
func sftpFailover(e *env) {
	t, n1, n2, n3, n4 := e.t, e.node(1), e.node(2), e.node(3), e.node(4)
	d1, _ := e.daemon(n1)
	if err := n4.SetLink(false); err != nil {
		t.Fatal(err)
	}
	linkUp := func() {
		if err := n4.SetLink(true); err != nil {
			t.Error(err)
		}
	}
	defer func() {
		if t.Failed() {
			linkUp()
		}
	}()
	e.writeFile(n1, dataDir+"/late.txt", "node1 pushed it to node2 and node3 only\n", 0o644)
	waitFor(t, 180*time.Second, "node1's daemon to push late.txt to node2 and node3", func() bool {
		a, _ := os.ReadFile(data(n2, "late.txt"))
		b, _ := os.ReadFile(data(n3, "late.txt"))
		return len(a) > 0 && string(a) == string(b)
	})
	d1.Process.Signal(syscall.SIGKILL)
	d1.Wait()
	linkUp()
	if !gone(data(n4, "late.txt")) {
		t.Fatalf("node4 got late.txt while cut off: the scenario proves nothing")
	}

	e.writeFile(n2, dataDir+"/from-node2.txt", "node2 after takeover\n", 0o644)
	_, logs := e.daemon(n2)
	defer func() {
		if t.Failed() {
			t.Logf("node2's daemon:\n%s", logs)
		}
	}()
	waitFor(t, 240*time.Second, "node2's daemon to push late.txt and from-node2.txt to node4", func() bool {
		a, _ := os.ReadFile(data(n4, "late.txt"))
		b, _ := os.ReadFile(data(n4, "from-node2.txt"))
		return string(a) == "node1 pushed it to node2 and node3 only\n" && string(b) == "node2 after takeover\n"
	})
	if log, _ := os.ReadFile(n4.SSHDLog()); !bytes.Contains(log, []byte("Accepted publickey for root from "+n2.Addr)) {
		t.Errorf("node4 was not reached from node2")
	}
	waitFor(t, 60*time.Second, "from-node2.txt on node3", func() bool { return !gone(data(n3, "from-node2.txt")) })
	// The files are there before the push ends: its staging directory and
	// the root's mtime follow.
	waitFor(t, 60*time.Second, "node2's push to node4 to finish", func() bool {
		return diffManifests(n2.Name, sftpManifest(t, n2.Path(dataDir)), n4.Name, sftpManifest(t, n4.Path(dataDir))) == ""
	})
	e.requireSFTPSame(n2, n4)
}

// daemon starts `ocf-csync daemon` on n (without a cluster IP every node
// is active: it takes the next epoch) and stops it at the end of the test.
func (e *env) daemon(n *cluster.Node) (*exec.Cmd, *syncBuffer) {
	e.t.Helper()
	cmd := e.csyncCmd(context.Background(), n, "daemon", "--status-file", "/run/ocf-csync-test.status", "--rescan-interval", "600")
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		e.t.Fatalf("start daemon on %s: %v", n.Name, err)
	}
	e.t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, logs
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
		time.Sleep(20 * time.Millisecond)
	}
}
