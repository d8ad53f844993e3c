// Package cluster starts a throwaway multi-node cluster on this machine for
// tests and demos. Every node is a network namespace with an address on a
// private bridge, a real OpenSSH sshd, its own hostname and its own
// /etc/ocf-csync, /var/lib/ocf-csync, /srv/ocf-csync, /run and /etc/hosts
// (bind mounts inside a private mount namespace, so the host sees none of
// them).
//
// Per node one long-lived holder process ("sleep infinity" inside
// `ip netns exec NS unshare -m -u`) owns the mount and UTS namespaces; sshd
// and every command "on" the node enter them with nsenter. That way sshd can
// be stopped and started again without losing the node's mounts.
//
// Clusters of different processes coexist: names and the 127.1.X.0/24
// subnet come from a random tag, the host mount points are shared under
// flocks in /run (see hostmounts.go), and Start sweeps up what clusters of
// killed test processes left behind (see Sweep).
//
// It needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and the tools ip, unshare,
// nsenter, mount, hostname, sleep, sshd and ssh-keygen.
package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
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

	"ocf-csync/tests/netns"
)

// In-node paths that are private to each node.
const (
	EtcDir  = "/etc/ocf-csync"     // node's B/etc
	VarDir  = "/var/lib/ocf-csync" // node's B/var
	DataDir = "/srv/ocf-csync"     // node's B/data: the sample data root
	RunDir  = "/run"               // node's B/run
)

// ClientKey and KnownHosts are the in-node paths of the cluster-wide SSH
// client key and of the node's known_hosts file.
const (
	ClientKey  = EtcDir + "/id_ed25519"
	KnownHosts = EtcDir + "/known_hosts"
)

// binds maps in-node directories to subdirectories of a node's base dir.
var binds = []struct{ inNode, sub string }{
	{EtcDir, "etc"},
	{VarDir, "var"},
	{DataDir, "data"},
	{RunDir, "run"},
}

// hostMountPoints must exist on the host for the bind mounts (/run does).
var hostMountPoints = []string{EtcDir, VarDir, DataDir}

// MaxNodes bounds Options.Nodes: addresses are 127.1.X.1 … 127.1.X.MaxNodes.
const MaxNodes = 200

// killGrace is how long Close and StopSSHD wait after SIGTERM before SIGKILL.
const killGrace = 2 * time.Second

// readyTimeout bounds the wait for a node's holder and sshd to come up.
const readyTimeout = 5 * time.Second

// Options configures Start.
type Options struct {
	// Nodes is the number of nodes, 1 … MaxNodes.
	Nodes int
	// Binary is the ocf-csync binary. It must be visible in every node, so
	// not under one of the per-node directories. Optional; its directory is
	// put first on PATH for Node.Command.
	Binary string
	// KnownHostsSkip lists node indexes (1-based) whose host key is left out
	// of the other nodes' known_hosts.
	KnownHostsSkip []int
	// Log receives progress lines; nil discards them.
	Log io.Writer

	// hook, when set (tests only), runs after each start stage; an error
	// from it aborts Start as if the stage had failed.
	hook func(c *Cluster, stage string) error
}

// Cluster is a running set of nodes. Close it when done.
type Cluster struct {
	tag     string
	subnet  int // X in 127.1.X.N
	dir     string
	net     netns.Network // hub and node namespaces
	binary  string
	log     io.Writer
	nodes   []*Node
	clientP string // client public key line

	hostMP *netns.HostMounts
	alive  *os.File // lock on dir/alive held while the cluster exists

	closeOnce sync.Once
	closeErr  error
	lastOut   bool // Close released the host mount points (no other cluster was up)
}

// Node is one cluster member.
type Node struct {
	Index int    // 1-based
	Name  string // hostname: node1, node2, …
	Addr  string // 127.1.X.Index on eth0
	Dir   string // host-side base dir B
	Netns string // network namespace name
	PID   int    // sshd's PID, 0 while stopped

	c       *Cluster
	hostKey string // "ssh-ed25519 AAAA…"
	mu      sync.Mutex
	holder  *netns.Proc
	sshd    *netns.Proc
}

// RequireRoot skips the test (or, when $CI is set, fails it) with the reason
// when this process cannot start a cluster.
func RequireRoot(t testing.TB) {
	t.Helper()
	reason := unavailable()
	if reason == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("multi-node cluster unavailable (and $CI is set, so this is an error): %s", reason)
	}
	t.Skipf("multi-node cluster unavailable: %s", reason)
}

// unavailable says why a cluster cannot start here, or "" when it can.
func unavailable() string {
	if os.Geteuid() != 0 {
		return "needs root for network namespaces and bind mounts (run the tests as root, e.g. sudo go test ./tests/...)"
	}
	for _, tool := range []struct{ name, pkg string }{
		{"ip", "iproute2"}, {"unshare", "util-linux"}, {"nsenter", "util-linux"},
		{"mount", "mount"}, {"hostname", "hostname"}, {"sleep", "coreutils"},
		{"ssh-keygen", "openssh-client"},
	} {
		if _, err := exec.LookPath(tool.name); err != nil {
			return fmt.Sprintf("%s not found on PATH (install %s)", tool.name, tool.pkg)
		}
	}
	if _, err := os.Stat(sshdPath); err != nil {
		return fmt.Sprintf("%s not found (install openssh-server)", sshdPath)
	}
	return ""
}

// New starts a cluster for a test and closes it in t.Cleanup. It skips or
// fails like RequireRoot when the machine cannot run one.
func New(t testing.TB, o Options) *Cluster {
	t.Helper()
	RequireRoot(t)
	if o.Log == nil {
		o.Log = testWriter{t}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := Start(ctx, o)
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	})
	return c
}

// testWriter sends progress lines to t.Log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Start creates the namespaces, files and processes of a cluster and waits
// until every sshd accepts connections. On error everything it created is
// already removed again.
func Start(ctx context.Context, o Options) (c *Cluster, err error) {
	if o.Nodes < 1 || o.Nodes > MaxNodes {
		return nil, fmt.Errorf("start cluster: Options.Nodes is %d, want 1 … %d", o.Nodes, MaxNodes)
	}
	if reason := unavailable(); reason != "" {
		return nil, fmt.Errorf("start cluster: %s", reason)
	}
	bin, err := checkBinary(o.Binary)
	if err != nil {
		return nil, err
	}
	for _, i := range o.KnownHostsSkip {
		if i < 1 || i > o.Nodes {
			return nil, fmt.Errorf("start cluster: KnownHostsSkip has node %d, want 1 … %d", i, o.Nodes)
		}
	}
	c = &Cluster{binary: bin, log: o.Log}
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
	stage := func(name string) error {
		if o.hook != nil {
			return o.hook(c, name)
		}
		return nil
	}

	if err := c.claim(); err != nil {
		return c, err
	}
	c.logf("cluster %s: %d nodes on 127.1.%d.0/24, files in %s", c.tag, o.Nodes, c.subnet, c.dir)
	for i := 1; i <= o.Nodes; i++ {
		c.nodes = append(c.nodes, &Node{
			Index: i,
			Name:  fmt.Sprintf("node%d", i),
			Addr:  fmt.Sprintf("127.1.%d.%d", c.subnet, i),
			Dir:   filepath.Join(c.dir, fmt.Sprintf("node%d", i)),
			Netns: fmt.Sprintf("oc%sn%d", c.tag, i),
			c:     c,
		})
	}
	if err := c.makeFiles(ctx, o.KnownHostsSkip); err != nil {
		return c, err
	}
	if err := stage("files"); err != nil {
		return c, err
	}
	if err := c.makeNetwork(ctx); err != nil {
		return c, err
	}
	if err := stage("network"); err != nil {
		return c, err
	}
	for _, n := range c.nodes {
		if err := n.startHolder(ctx); err != nil {
			return c, err
		}
		if err := stage("holder:" + n.Name); err != nil {
			return c, err
		}
	}
	// sshd start-up dominates; run the nodes side by side.
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i, n := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = n.startSSHD(ctx)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	if err := stage("sshd"); err != nil {
		return c, err
	}
	c.logf("cluster %s: %d nodes up in %v", c.tag, len(c.nodes), time.Since(t0).Round(time.Millisecond))
	return c, nil
}

// checkBinary resolves Options.Binary and rejects paths a node would not see.
func checkBinary(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("start cluster: binary %q: %w", p, err)
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("start cluster: binary: %w (build it first, e.g. go build -o /tmp/ocf-csync ./cmd/ocf-csync)", err)
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("start cluster: binary %q is not an executable file", abs)
	}
	for _, b := range binds {
		if within(abs, b.inNode) {
			return "", fmt.Errorf("start cluster: binary %q is under %s, which every node replaces with its own directory; put it elsewhere (e.g. /tmp)", abs, b.inNode)
		}
	}
	return abs, nil
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// claim sweeps up clusters of dead processes, picks a tag no other cluster
// uses and registers for the host mount points, all under the machine-wide
// mutex so that no sweep sees a half-claimed cluster.
func (c *Cluster) claim() error {
	mu, err := netns.LockFile(netns.HostMountsMutex, syscall.LOCK_EX)
	if err != nil {
		return fmt.Errorf("start cluster: %w", err)
	}
	defer mu.Close() // closing drops the lock
	if err := sweep(c.log); err != nil {
		c.logf("cluster: sweeping stale clusters: %v", err)
	}
	if err := c.claimTag(); err != nil {
		return err
	}
	hm, err := netns.AcquireHostMounts(hostMountPoints)
	if err != nil {
		return err
	}
	c.hostMP = hm
	return nil
}

// claimTag picks a tag no other cluster uses (see netns.ClaimTag); the
// dir's alive lock, held until Close is done, tells sweep the cluster is in
// use.
func (c *Cluster) claimTag() error {
	cl, err := netns.ClaimTag(clusterDirBase, clusterDirPrefix, "oc")
	if err != nil {
		return fmt.Errorf("start cluster: %w", err)
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

// Dir is the cluster's host-side temp dir holding every node's base dir.
func (c *Cluster) Dir() string { return c.dir }

// Subnet is the nodes' network, "127.1.X.0/24".
func (c *Cluster) Subnet() string { return fmt.Sprintf("127.1.%d.0/24", c.subnet) }

// Binary is the resolved Options.Binary ("" when none was given).
func (c *Cluster) Binary() string { return c.binary }

// ClientPublicKey is the authorized_keys line of the cluster-wide client key
// (the one at ClientKey in every node).
func (c *Cluster) ClientPublicKey() string { return c.clientP }

// Nodes returns the nodes in index order.
func (c *Cluster) Nodes() []*Node { return c.nodes }

// Node returns node i (1-based); it panics on a bad index like a slice would.
func (c *Cluster) Node(i int) *Node { return c.nodes[i-1] }

// HostKeyFingerprint is node i's sshd host key fingerprint as OpenSSH prints
// it ("SHA256:…"), or "" for a bad index.
func (c *Cluster) HostKeyFingerprint(i int) string {
	if i < 1 || i > len(c.nodes) {
		return ""
	}
	return fingerprint(c.nodes[i-1].hostKey)
}

// fingerprint computes OpenSSH's SHA256 fingerprint of "type base64 …".
func fingerprint(pub string) string {
	f := strings.Fields(pub)
	if len(f) < 2 {
		return ""
	}
	blob, err := base64.StdEncoding.DecodeString(f[1])
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(blob)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// tail returns the last lines of a log file for error messages.
func tail(path string, max int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > max {
		lines = lines[len(lines)-max:]
	}
	return strings.Join(lines, " | ")
}
