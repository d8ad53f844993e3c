package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ocf-csync/tests/netns"
)

func TestPath(t *testing.T) {
	n := &Node{Dir: "/tmp/c/node1"}
	for _, tc := range []struct{ in, want string }{
		{"/srv/ocf-csync/a", "/tmp/c/node1/data/a"},
		{"/srv/ocf-csync", "/tmp/c/node1/data"},
		{"/etc/ocf-csync/known_hosts", "/tmp/c/node1/etc/known_hosts"},
		{"/var/lib/ocf-csync/db/x", "/tmp/c/node1/var/db/x"},
		{"/run/resource-agents/y", "/tmp/c/node1/run/resource-agents/y"},
		{"/etc/hosts", "/tmp/c/node1/hosts"},
		{"/srv/ocf-csync-other/a", "/srv/ocf-csync-other/a"}, // prefix of a name, not a dir
		{"/tmp/shared/../x", "/tmp/x"},
	} {
		if got := n.Path(tc.in); got != tc.want {
			t.Errorf("Path(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestFingerprintMatchesSSHKeygen(t *testing.T) {
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen not installed (openssh-client)")
	}
	key := filepath.Join(t.TempDir(), "k")
	pub, err := netns.Keygen(t.Context(), key, "x")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ssh-keygen", "-l", "-f", key+".pub").Output()
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(string(out)); len(f) < 2 || f[1] != fingerprint(pub) {
		t.Errorf("fingerprint(%q) = %q, ssh-keygen says %q", pub, fingerprint(pub), out)
	}
}

// sshCat runs the OpenSSH client on from to cat path on to.
func sshCat(ctx context.Context, from, to *Node, path string) (string, error) {
	out, _, err := from.Run(ctx, "ssh", "-F", "none", "-i", ClientKey,
		"-o", "UserKnownHostsFile="+KnownHosts, "-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes", "-o", "ConnectTimeout=3",
		"root@"+to.Addr, "cat", path)
	return out, err
}

// snapshot is what a cluster left on the machine, checked after Close.
type snapshot struct {
	tag  string
	dir  string
	pids []int
}

func takeSnapshot(c *Cluster) snapshot {
	s := snapshot{tag: c.tag, dir: c.dir}
	for _, n := range c.nodes {
		if p := n.holderPID(); p != 0 {
			s.pids = append(s.pids, p)
		}
		if n.PID != 0 {
			s.pids = append(s.pids, n.PID)
		}
	}
	return s
}

// missingMountPoints lists the host mount points that do not exist now.
func missingMountPoints() []string {
	var m []string
	for _, mp := range hostMountPoints {
		if _, err := os.Stat(mp); err != nil {
			m = append(m, mp)
		}
	}
	return m
}

// checkGone fails t if anything of the snapshot is left.
func checkGone(t *testing.T, s snapshot, missingBefore []string, lastOut bool) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatalf("ip netns list: %v", err)
	}
	if s.tag == "" || strings.Contains(string(out), "oc"+s.tag) {
		t.Errorf("network namespaces of cluster %q left after Close:\n%s", s.tag, out)
	}
	for _, pid := range s.pids {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			t.Errorf("process %d still exists after Close", pid)
		}
	}
	if _, err := os.Stat(s.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cluster dir %s left after Close (stat: %v)", s.dir, err)
	}
	if !lastOut {
		t.Logf("another cluster is running, so the host mount points stay; not checking them")
		return
	}
	for _, mp := range missingBefore {
		if _, err := os.Stat(mp); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("host mount point %s was created by the cluster but is left after Close", mp)
		}
	}
}

func TestCluster(t *testing.T) {
	RequireRoot(t)
	ctx := t.Context()
	missingBefore := missingMountPoints()
	t0 := time.Now()
	c := New(t, Options{Nodes: 3})
	startTime := time.Since(t0)
	n1, n2, n3 := c.Node(1), c.Node(2), c.Node(3)
	if len(c.Nodes()) != 3 || n3.Index != 3 || n3.Name != "node3" {
		t.Fatalf("nodes = %+v", c.Nodes())
	}
	for _, mp := range hostMountPoints {
		if fi, err := os.Stat(mp); err != nil || !fi.IsDir() {
			t.Errorf("host mount point %s missing while the cluster runs: %v", mp, err)
		}
	}

	t.Run("hostname", func(t *testing.T) {
		for _, n := range c.Nodes() {
			out, _, err := n.Run(ctx, "hostname")
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(out); got != n.Name {
				t.Errorf("hostname on %s = %q", n.Name, got)
			}
		}
	})

	// Each node's own marker, written from the host side.
	for _, n := range c.Nodes() {
		if err := os.WriteFile(n.Path(DataDir+"/marker"), []byte("marker of "+n.Name+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("ssh", func(t *testing.T) {
		local, _, err := n1.Run(ctx, "cat", DataDir+"/marker")
		if err != nil || local != "marker of node1\n" {
			t.Fatalf("node1's own marker = %q, %v", local, err)
		}
		rx0, tx0, err := n1.LinkCounters()
		if err != nil {
			t.Fatal(err)
		}
		for _, to := range []*Node{n2, n3} {
			out, err := sshCat(ctx, n1, to, DataDir+"/marker")
			if err != nil {
				t.Fatalf("ssh node1 → %s: %v\nsshd log: %s", to.Name, err, tail(to.SSHDLog(), 10))
			}
			if want := "marker of " + to.Name + "\n"; out != want {
				t.Errorf("ssh node1 → %s cat marker = %q, want %q", to.Name, out, want)
			}
		}
		rx1, tx1, err := n1.LinkCounters()
		if err != nil {
			t.Fatal(err)
		}
		// Two SSH handshakes move kilobytes each way.
		if rx1 < rx0+1000 || tx1 < tx0+1000 {
			t.Errorf("node1 eth0 counters rx %d→%d tx %d→%d, want both to grow by ≥1000 after two ssh sessions", rx0, rx1, tx0, tx1)
		}
		// By node name too: /etc/hosts and known_hosts carry the names.
		out, _, err := n2.Run(ctx, "ssh", "-F", "none", "-i", ClientKey,
			"-o", "UserKnownHostsFile="+KnownHosts, "-o", "StrictHostKeyChecking=yes",
			"-o", "BatchMode=yes", "root@node3", "hostname")
		if err != nil || strings.TrimSpace(out) != "node3" {
			t.Errorf("ssh node2 → node3 by name: %q, %v", out, err)
		}
	})

	t.Run("dial", func(t *testing.T) {
		conn, err := n1.DialContext(ctx, "tcp", n3.Addr+":22")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		buf := make([]byte, 8)
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Read(buf); err != nil || string(buf) != "SSH-2.0-" {
			t.Errorf("greeting from node3 via DialContext = %q, %v", buf, err)
		}
	})

	t.Run("stop-start-sshd", func(t *testing.T) {
		old := n2.PID
		if err := n2.StopSSHD(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", old)); err == nil {
			t.Errorf("sshd %d still exists after StopSSHD", old)
		}
		if _, err := sshCat(ctx, n1, n2, DataDir+"/marker"); err == nil {
			t.Fatal("ssh to node2 worked with its sshd stopped")
		}
		// The node itself lives on: mounts and hostname are intact.
		if out, _, err := n2.Run(ctx, "cat", DataDir+"/marker"); err != nil || out != "marker of node2\n" {
			t.Errorf("node2 marker with sshd stopped = %q, %v", out, err)
		}
		if err := n2.StartSSHD(); err != nil {
			t.Fatal(err)
		}
		if n2.PID == 0 || n2.PID == old {
			t.Errorf("sshd PID after restart = %d (before %d)", n2.PID, old)
		}
		if out, err := sshCat(ctx, n1, n2, DataDir+"/marker"); err != nil || out != "marker of node2\n" {
			t.Errorf("ssh to node2 after StartSSHD = %q, %v", out, err)
		}
	})

	t.Run("known-hosts", func(t *testing.T) {
		fp, err := exec.Command("ssh-keygen", "-l", "-f", filepath.Join(n3.Dir, "ssh_host_ed25519_key.pub")).Output()
		if err != nil {
			t.Fatal(err)
		}
		if got := c.HostKeyFingerprint(3); got == "" || !strings.Contains(string(fp), got) {
			t.Errorf("HostKeyFingerprint(3) = %q, ssh-keygen -l says %q", got, fp)
		}
		if err := c.WriteKnownHosts(3); err != nil {
			t.Fatal(err)
		}
		_, err = sshCat(ctx, n1, n3, DataDir+"/marker")
		if err == nil || !strings.Contains(err.Error(), "Host key verification failed") {
			t.Errorf("ssh to node3 with its key left out of known_hosts: %v, want host key verification failure", err)
		}
		if _, err := sshCat(ctx, n1, n2, DataDir+"/marker"); err != nil {
			t.Errorf("ssh to node2 with only node3 left out: %v", err)
		}
		if err := c.WriteKnownHosts(); err != nil {
			t.Fatal(err)
		}
		if _, err := sshCat(ctx, n1, n3, DataDir+"/marker"); err != nil {
			t.Errorf("ssh to node3 after restoring known_hosts: %v", err)
		}
	})

	t.Run("partition", func(t *testing.T) {
		if err := n3.SetLink(false); err != nil {
			t.Fatal(err)
		}
		tctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := n1.DialContext(tctx, "tcp", n3.Addr+":22")
		cancel()
		if err == nil {
			t.Error("node1 reached node3 with node3's link down")
		}
		if err := n3.SetLink(true); err != nil {
			t.Fatal(err)
		}
		if _, err := sshCat(ctx, n1, n3, DataDir+"/marker"); err != nil {
			t.Errorf("ssh to node3 after the link came back: %v", err)
		}
	})

	// A long-running command on a node must die with the cluster.
	bg := n1.Command(context.Background(), "sleep", "300")
	if err := bg.Start(); err != nil {
		t.Fatal(err)
	}
	bgDone := make(chan error, 1)
	go func() { bgDone <- bg.Wait() }()
	// nsenter joins the node's namespaces after it starts: wait for that,
	// so Close finds the command among the node's processes.
	hostMnt, _ := os.Readlink("/proc/self/ns/mnt")
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if m, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", bg.Process.Pid)); err == nil && m != hostMnt {
			break
		}
	}

	snap := takeSnapshot(c)
	snap.pids = append(snap.pids, bg.Process.Pid)
	t1 := time.Now()
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	closeTime := time.Since(t1)
	select {
	case <-bgDone:
	case <-time.After(5 * time.Second):
		t.Error("command running on node1 survived Close")
	}
	checkGone(t, snap, missingBefore, c.lastOut)
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	t.Logf("3 nodes: start %v, close %v", startTime.Round(time.Millisecond), closeTime.Round(time.Millisecond))
}

func TestPartialStartCleansUp(t *testing.T) {
	RequireRoot(t)
	for _, stage := range []string{"files", "network", "holder:node2", "sshd"} {
		t.Run(stage, func(t *testing.T) {
			missingBefore := missingMountPoints()
			injected := errors.New("injected failure")
			var c *Cluster
			var snap snapshot
			o := Options{Nodes: 3, Log: testWriter{t}}
			o.hook = func(cl *Cluster, s string) error {
				c = cl
				snap = takeSnapshot(cl)
				if s == stage {
					return injected
				}
				return nil
			}
			got, err := Start(t.Context(), o)
			if !errors.Is(err, injected) || got != nil {
				t.Fatalf("Start = %v, %v; want nil and the injected error", got, err)
			}
			if c == nil {
				t.Fatalf("stage %q never reached", stage)
			}
			if stage == "sshd" && len(snap.pids) != 6 {
				t.Errorf("at stage sshd the snapshot has PIDs %v, want 3 holders and 3 sshds", snap.pids)
			}
			checkGone(t, snap, missingBefore, c.lastOut)
			if err := c.Close(); err != nil {
				t.Errorf("Close after failed Start: %v", err)
			}
		})
	}
}

// TestTwoClusters checks that clusters do not share names or addresses and
// that closing one leaves the other's bind mounts alone.
func TestTwoClusters(t *testing.T) {
	RequireRoot(t)
	ctx := t.Context()
	missingBefore := missingMountPoints()
	a, err := Start(ctx, Options{Nodes: 1, Log: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b := New(t, Options{Nodes: 2})
	if a.tag == b.tag || a.Node(1).Netns == b.Node(1).Netns || a.dir == b.dir {
		t.Fatalf("clusters share names: %q/%q", a.tag, b.tag)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if a.lastOut {
		t.Error("first cluster to close thinks it was the last one")
	}
	if got := missingMountPoints(); len(got) > 0 {
		t.Errorf("host mount points %v removed while another cluster runs", got)
	}
	if err := os.WriteFile(b.Node(2).Path(DataDir+"/m"), []byte("b2"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, _, err := b.Node(2).Run(ctx, "cat", DataDir+"/m"); err != nil || out != "b2" {
		t.Errorf("cluster b's bind mount after closing a: %q, %v", out, err)
	}
	snap := takeSnapshot(b)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	checkGone(t, snap, missingBefore, b.lastOut)
}

// TestSweep leaves a cluster behind as a killed test process would (its
// alive lock dropped, processes and namespaces still there) and checks that
// Sweep removes it while a live cluster stays untouched.
func TestSweep(t *testing.T) {
	RequireRoot(t)
	live := New(t, Options{Nodes: 1})
	dead, err := Start(t.Context(), Options{Nodes: 2, Log: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	snap := takeSnapshot(dead)
	dead.alive.Close() // what the kernel does when the owner dies
	if err := Sweep(testWriter{t}); err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	checkGone(t, snap, nil, false)
	// The rest of dead's teardown: only its share of the host mount points.
	dead.closeOnce.Do(func() {})
	if _, err := dead.hostMP.Release(); err != nil {
		t.Error(err)
	}
	if _, _, err := live.Node(1).Run(t.Context(), "true"); err != nil {
		t.Errorf("live cluster after Sweep: %v", err)
	}
	if _, err := os.Stat(live.Dir()); err != nil {
		t.Errorf("live cluster's dir after Sweep: %v", err)
	}
}
