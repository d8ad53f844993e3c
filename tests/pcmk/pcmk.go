// Package pcmk starts a throwaway corosync+Pacemaker cluster on this
// machine for tests. Every node is a network namespace with an address on a
// private bridge (127.1.X.N/24 on eth0, route_localnet so 127.x crosses the
// veth) and a private mount and UTS namespace with its own /etc/corosync,
// /var/lib/pacemaker, /var/lib/corosync, /var/log/{pacemaker,corosync},
// /run and /dev/shm, so the nodes' corosync and Pacemaker daemons neither
// see each other's files nor the host's. The recipe is the one measured in
// /work/shared/reference/pacemaker.md §4.
//
// Per node one holder process ("sleep infinity" inside `ip netns exec NS
// unshare -m -u`) owns the mount and UTS namespaces; corosync, pacemakerd
// and every command run "on" the node enter them with nsenter, so a node's
// stack can be killed (Crash) and started again (StartStack) without losing
// its namespaces.
//
// The CIB is seeded with dc-deadtime=2s and stonith-enabled=false; two
// nodes get two_node: 1, and the totem token is 1000 ms: a 2-node cluster
// has a DC in about 5 s.
//
// It needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and the tools ip, unshare,
// nsenter, mount, hostname, sleep, corosync, pacemakerd, crm_mon,
// crm_attribute and cibadmin.
package pcmk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ocf-csync/ha"
	"ocf-csync/tests/netns"
)

// MaxNodes bounds Options.Nodes (node ids 1 … MaxNodes).
const MaxNodes = 16

// privateDirs are replaced in every node by a directory of its own; the
// host must have them (the pacemaker and corosync packages create them).
var privateDirs = []string{
	"/etc/corosync",
	"/var/lib/pacemaker",
	"/var/lib/corosync",
	"/var/log/pacemaker",
	"/var/log/corosync",
}

// Cluster dirs live in a fixed place so that a later run finds the leftovers
// of a killed one (see sweep).
const (
	dirBase   = "/tmp"
	dirPrefix = "ocf-csync-pcmk-"
	netnsDir  = netns.Dir
	mutexPath = "/run/ocf-csync-pcmk.mutex"
)

// Options configures Start.
type Options struct {
	// Nodes is the number of nodes, 1 … MaxNodes.
	Nodes int
	// Token is corosync's totem token timeout; 1 s when 0. Failure
	// detection takes about 1.2 × token plus consensus.
	Token time.Duration
	// CIBProperties are extra cluster options seeded into the CIB before
	// start (dc-deadtime=2s and stonith-enabled=false always are).
	CIBProperties map[string]string
	// PrivateDirs are further in-node directories that each node gets a
	// private, empty copy of (e.g. /etc/ocf-csync). They must exist on the
	// host.
	PrivateDirs []string
	// SSHD starts a real OpenSSH sshd on every node (listening on its
	// address, root by the cluster-wide ClientKey) and makes EtcDir,
	// VarDir and DataDir private per node, with ClientKey, KnownHosts and
	// an /etc/hosts naming every node.
	SSHD bool
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Cluster is a running set of nodes. Close it when done.
type Cluster struct {
	tag    string
	subnet int // X in 127.1.X.N
	dir    string
	net    netns.Network // hub and node namespaces
	log    io.Writer
	opts   Options
	nodes  []*Node
	alive  *os.File // lock on dir/alive held while the cluster exists
	mu     sync.Mutex
	hostMP *netns.HostMounts // share of the host mount points (SSHD)
	closed sync.Once
	cerr   error

	// UpIn is how long Start took from its first command to a DC with
	// quorum and every node online.
	UpIn time.Duration
}

// RequireRoot skips the test (or, when $CI is set, fails it) with the reason
// when this process cannot start a Pacemaker cluster.
func RequireRoot(t testing.TB) {
	t.Helper()
	reason := unavailable()
	if reason == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("Pacemaker cluster unavailable (and $CI is set, so this is an error): %s", reason)
	}
	t.Skipf("Pacemaker cluster unavailable: %s", reason)
}

func unavailable() string {
	if os.Geteuid() != 0 {
		return "needs root for network namespaces and bind mounts (run the tests as root)"
	}
	for _, tool := range []struct{ name, pkg string }{
		{"ip", "iproute2"}, {"unshare", "util-linux"}, {"nsenter", "util-linux"},
		{"mount", "mount"}, {"hostname", "hostname"}, {"sleep", "coreutils"},
		{"corosync", "corosync"}, {"corosync-cfgtool", "corosync"},
		{"pacemakerd", "pacemaker"}, {"crm_mon", "pacemaker-cli-utils"},
		{"crm_attribute", "pacemaker-cli-utils"}, {"cibadmin", "pacemaker-cli-utils"},
	} {
		if _, err := exec.LookPath(tool.name); err != nil {
			return fmt.Sprintf("%s not found on PATH (install %s)", tool.name, tool.pkg)
		}
	}
	for _, d := range privateDirs {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			return fmt.Sprintf("%s is not a directory on the host (install pacemaker and corosync)", d)
		}
	}
	return ""
}

// New starts a cluster for a test and closes it in t.Cleanup; when the test
// failed, the tails of the nodes' logs go to the test log first.
func New(t testing.TB, o Options) *Cluster {
	t.Helper()
	RequireRoot(t)
	if o.Log == nil {
		o.Log = testWriter{t}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := Start(ctx, o)
	if err != nil {
		t.Fatalf("start Pacemaker cluster: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.nodes {
				t.Logf("%s pacemaker.log tail:\n%s", n.Name, n.LogTail(40))
			}
		}
		if err := c.Close(); err != nil {
			t.Errorf("close Pacemaker cluster: %v", err)
		}
	})
	return c
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Start creates the namespaces, files and processes of a cluster and waits
// until every node sees a DC with quorum and all nodes online. On error
// everything it created is removed again.
func Start(ctx context.Context, o Options) (c *Cluster, err error) {
	if o.Nodes < 1 || o.Nodes > MaxNodes {
		return nil, fmt.Errorf("start Pacemaker cluster: Options.Nodes is %d, want 1 … %d", o.Nodes, MaxNodes)
	}
	if reason := unavailable(); reason != "" {
		return nil, fmt.Errorf("start Pacemaker cluster: %s", reason)
	}
	if o.SSHD {
		if reason := sshdUnavailable(); reason != "" {
			return nil, fmt.Errorf("start Pacemaker cluster with sshd: %s", reason)
		}
	}
	for _, d := range o.PrivateDirs {
		if !filepath.IsAbs(d) {
			return nil, fmt.Errorf("start Pacemaker cluster: private dir %q is not absolute", d)
		}
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("start Pacemaker cluster: private dir %s must exist on the host as a directory", d)
		}
	}
	if o.Token <= 0 {
		o.Token = time.Second
	}
	c = &Cluster{log: o.Log, opts: o}
	if c.log == nil {
		c.log = io.Discard
	}
	t0 := time.Now()
	defer func() {
		if err != nil {
			if cerr := c.Close(); cerr != nil {
				err = fmt.Errorf("%w (and cleaning up: %v)", err, cerr)
			}
			c = nil
		}
	}()
	if err := c.claim(); err != nil {
		return c, err
	}
	c.logf("pcmk %s: %d nodes on 127.1.%d.0/24, files in %s", c.tag, o.Nodes, c.subnet, c.dir)
	for i := 1; i <= o.Nodes; i++ {
		c.nodes = append(c.nodes, &Node{
			Index: i,
			Name:  fmt.Sprintf("node%d", i),
			Addr:  fmt.Sprintf("127.1.%d.%d", c.subnet, i),
			Dir:   filepath.Join(c.dir, fmt.Sprintf("node%d", i)),
			Netns: fmt.Sprintf("pm%sn%d", c.tag, i),
			c:     c,
		})
	}
	if o.SSHD {
		if err := c.acquireHostMounts(); err != nil {
			return c, err
		}
	}
	if err := c.makeFiles(ctx); err != nil {
		return c, err
	}
	if o.SSHD {
		if err := c.makeSSHFiles(ctx); err != nil {
			return c, err
		}
	}
	if err := c.makeNetwork(ctx); err != nil {
		return c, err
	}
	for _, n := range c.nodes {
		if err := n.startHolder(ctx); err != nil {
			return c, err
		}
	}
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i, n := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if o.SSHD {
				if errs[i] = n.StartSSHD(ctx); errs[i] != nil {
					return
				}
			}
			errs[i] = n.StartStack(ctx)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	if err := c.WaitFormed(ctx); err != nil {
		return c, err
	}
	c.UpIn = time.Since(t0)
	c.logf("pcmk %s: %d nodes up with a DC in %v", c.tag, len(c.nodes), c.UpIn.Round(time.Millisecond))
	return c, nil
}

// WaitFormed waits until every node whose stack runs sees a DC, quorum and
// all those nodes online.
func (c *Cluster) WaitFormed(ctx context.Context) error {
	var up []*Node
	for _, n := range c.nodes {
		if n.StackRunning() {
			up = append(up, n)
		}
	}
	for _, n := range up {
		_, err := n.WaitStatus(ctx, "a DC with quorum and all nodes online", func(s *ha.ClusterStatus) bool {
			if !s.HasDC || !s.Quorum {
				return false
			}
			for _, m := range up {
				if ns := s.Node(m.Name); ns == nil || !ns.Online {
					return false
				}
			}
			return true
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// claim sweeps up clusters of dead processes and picks a free tag.
func (c *Cluster) claim() error {
	mu, err := netns.LockFile(mutexPath, syscall.LOCK_EX)
	if err != nil {
		return fmt.Errorf("start Pacemaker cluster: %w", err)
	}
	defer mu.Close()
	if err := sweep(c.log); err != nil {
		c.logf("pcmk: sweeping stale clusters: %v", err)
	}
	cl, err := netns.ClaimTag(dirBase, dirPrefix, "pm")
	if err != nil {
		return fmt.Errorf("start Pacemaker cluster: %w", err)
	}
	c.tag, c.subnet, c.dir, c.alive = cl.Tag, cl.Subnet, cl.Dir, cl.Alive
	c.net.Hub = cl.Hub
	return nil
}

func (c *Cluster) logf(format string, args ...any) {
	fmt.Fprintf(c.log, format+"\n", args...)
}

// Tag is the cluster's unique tag, part of every netns name.
func (c *Cluster) Tag() string { return c.tag }

// Dir is the cluster's host-side temp dir.
func (c *Cluster) Dir() string { return c.dir }

// SubnetPrefix is "127.1.X": node N is SubnetPrefix()+".N"; addresses
// .100 … .254 are free for resources such as a VIP.
func (c *Cluster) SubnetPrefix() string { return fmt.Sprintf("127.1.%d", c.subnet) }

// Nodes returns the nodes in index order.
func (c *Cluster) Nodes() []*Node { return c.nodes }

// Node returns node i (1-based).
func (c *Cluster) Node(i int) *Node { return c.nodes[i-1] }

// Close stops every process of the cluster by PID (pacemakerd gets SIGTERM
// and 5 s, then everything left in the nodes' namespaces gets SIGKILL),
// deletes the network namespaces and the temp dir. It is safe after a
// partial Start and idempotent.
func (c *Cluster) Close() error {
	c.closed.Do(func() { c.cerr = c.close() })
	return c.cerr
}

func (c *Cluster) close() error {
	t0 := time.Now()
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i, n := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = n.kill()
		}()
	}
	wg.Wait()
	if err := c.net.Delete(); err != nil {
		errs = append(errs, err)
	}
	if err := c.releaseHostMounts(); err != nil {
		errs = append(errs, err)
	}
	if c.dir != "" {
		if err := os.RemoveAll(c.dir); err != nil {
			errs = append(errs, fmt.Errorf("remove cluster dir: %w", err))
		}
	}
	if c.alive != nil {
		c.alive.Close()
	}
	if c.tag != "" {
		c.logf("pcmk %s: closed in %v", c.tag, time.Since(t0).Round(time.Millisecond))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close Pacemaker cluster %s: %w", c.tag, err)
	}
	return nil
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// tail returns the last lines of a file.
func tail(path string, max int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > max {
		lines = lines[len(lines)-max:]
	}
	return strings.Join(lines, "\n")
}
