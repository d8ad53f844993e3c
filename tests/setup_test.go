package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ocf-csync/tests/cluster"
)

// In-node paths every test uses.
const (
	cfgPath   = cluster.EtcDir + "/ocf-csync.cfg"
	keyPath   = cluster.EtcDir + "/group.key"
	dataDir   = cluster.DataDir
	groupName = "data"
)

// cmdTimeout bounds one ocf-csync command; the 256 MiB transfers are the
// slowest and take seconds.
const cmdTimeout = 3 * time.Minute

// env is a started cluster with ocf-csync configured on every node.
type env struct {
	t *testing.T
	c *cluster.Cluster
}

// newEnv starts a cluster of n nodes and writes the same config and group
// key on each: one group of all nodes over /srv/ocf-csync.
func newEnv(t *testing.T, n int) *env {
	t.Helper()
	c := cluster.New(t, cluster.Options{Nodes: n, Binary: binary})
	e := &env{t: t, c: c}
	key := groupKey(1)
	for _, nd := range c.Nodes() {
		e.writeFile(nd, cfgPath, e.configText(), 0o644)
		e.writeFile(nd, keyPath, key+"\n", 0o600)
	}
	return e
}

// configText is the config every node reads.
func (e *env) configText() string {
	var hosts []string
	for _, n := range e.c.Nodes() {
		hosts = append(hosts, n.Name)
	}
	return fmt.Sprintf(`# written by the ocf-csync acceptance tests
group %s {
	host %s;
	key %s;
	include %s;
}

ssh {
	identity %s;
	known-hosts %s;
	remote-command "%s serve";
	connect-timeout 5;
}
`, groupName, strings.Join(hosts, " "), keyPath, dataDir, cluster.ClientKey, cluster.KnownHosts, binary)
}

// groupKey is a csync2-style key: 64 characters of [A-Za-z0-9._],
// deterministic per seed.
func groupKey(seed uint64) string {
	const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._"
	r := rand.New(rand.NewPCG(seed, 0x6f6366))
	b := make([]byte, 64)
	for i := range b {
		b[i] = chars[r.IntN(len(chars))]
	}
	return string(b)
}

func (e *env) node(i int) *cluster.Node { return e.c.Node(i) }

// writeFile writes an in-node file through its host-side path.
func (e *env) writeFile(n *cluster.Node, inNode, data string, mode os.FileMode) {
	e.t.Helper()
	p := n.Path(inNode)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		e.t.Fatalf("create parent of %s on %s: %v", inNode, n.Name, err)
	}
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		e.t.Fatalf("write %s on %s: %v", inNode, n.Name, err)
	}
	if err := os.Chmod(p, mode); err != nil {
		e.t.Fatalf("chmod %s on %s: %v", inNode, n.Name, err)
	}
}

// data is the host-side path of rel below node n's /srv/ocf-csync.
func data(n *cluster.Node, rel string) string {
	return n.Path(filepath.Join(dataDir, rel))
}

// result is what one ocf-csync command did.
type result struct {
	args   []string
	stdout string
	stderr string
	code   int // exit status; -1 if it did not exit normally
}

func (r result) String() string {
	return fmt.Sprintf("`ocf-csync %s` exited %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// csync runs ocf-csync on node n as that node, with the test config.
func (e *env) csync(n *cluster.Node, args ...string) result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := e.csyncCmd(ctx, n, args...)
	var o, er bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &er
	err := cmd.Run()
	r := result{args: append([]string{"--config", cfgPath, "--node", n.Name}, args...), stdout: o.String(), stderr: er.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		e.t.Fatalf("run ocf-csync %s on %s: %v", strings.Join(args, " "), n.Name, err)
	}
	if ctx.Err() != nil {
		e.t.Fatalf("ocf-csync %s on %s did not finish within %v:\n%s", strings.Join(args, " "), n.Name, cmdTimeout, r)
	}
	return r
}

// csyncCmd prepares ocf-csync on node n with --config and --node.
func (e *env) csyncCmd(ctx context.Context, n *cluster.Node, args ...string) *exec.Cmd {
	full := append([]string{"--config", cfgPath, "--node", n.Name}, args...)
	return n.Command(ctx, binary, full...)
}

// mustSync runs `sync` (plus args) on node n and fails the test unless it
// exits 0.
func (e *env) mustSync(n *cluster.Node, args ...string) result {
	e.t.Helper()
	r := e.csync(n, append([]string{"sync"}, args...)...)
	if r.code != 0 {
		e.t.Fatalf("sync on %s failed:\n%s", n.Name, r)
	}
	return r
}

// pushResult is the part of `ocf-csync --json sync` the tests read.
type pushResult struct {
	Peers []struct {
		Peer      string   `json:"peer"`
		Planned   int      `json:"planned"`
		Updated   int      `json:"updated"`
		Same      int      `json:"same"`
		Deleted   int      `json:"deleted"`
		Conflicts int      `json:"conflicts"`
		Refused   int      `json:"refused"`
		Failed    int      `json:"failed"`
		Skipped   int      `json:"skipped"`
		DataBytes int64    `json:"data_bytes"`
		WireSent  int64    `json:"wire_sent_bytes"`
		WireRecvd int64    `json:"wire_received_bytes"`
		Problems  []string `json:"problems"`
	} `json:"peers"`
}

// syncJSON runs `--json sync` on node n, which must succeed, and decodes
// its result.
func (e *env) syncJSON(n *cluster.Node, args ...string) pushResult {
	e.t.Helper()
	r := e.csync(n, append([]string{"--json", "sync"}, args...)...)
	if r.code != 0 {
		e.t.Fatalf("sync on %s failed:\n%s", n.Name, r)
	}
	var pr pushResult
	if err := json.Unmarshal([]byte(r.stdout), &pr); err != nil {
		e.t.Fatalf("sync --json on %s printed no result JSON (%v):\n%s", n.Name, err, r)
	}
	return pr
}

// linkBytes is rx+tx of node n's eth0.
func (e *env) linkBytes(n *cluster.Node) uint64 {
	e.t.Helper()
	rx, tx, err := n.LinkCounters()
	if err != nil {
		e.t.Fatal(err)
	}
	return rx + tx
}

// dirtyFor lists node n's dirty entries for peer (`list dirty`): the paths.
func (e *env) dirtyFor(n *cluster.Node, peer string) []string {
	e.t.Helper()
	r := e.csync(n, "list", "--peer", peer, "dirty")
	if r.code != 0 && (r.code != 2 || r.stderr != "") { // 2 and silent: none
		e.t.Fatalf("list dirty on %s failed:\n%s", n.Name, r)
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		f := strings.SplitN(line, "\t", 4)
		if len(f) == 4 && f[2] == peer {
			out = append(out, f[3])
		}
	}
	return out
}
