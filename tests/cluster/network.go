package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// makeNetwork creates the hub netns with bridge br0 and, per node, a netns
// whose eth0 is a veth into the bridge. Everything is created inside the new
// namespaces, never in the host's: the veth pair is born in the node netns
// with its peer placed directly in the hub.
func (c *Cluster) makeNetwork(ctx context.Context) error {
	if err := c.addNetns(ctx, c.hub); err != nil {
		return err
	}
	hubScript := "link add br0 type bridge\nlink set br0 up\nlink set lo up\n"
	if err := ipBatch(ctx, c.hub, hubScript); err != nil {
		return fmt.Errorf("create bridge in %s: %w", c.hub, err)
	}
	for _, n := range c.nodes {
		if err := c.addNetns(ctx, n.Netns); err != nil {
			return err
		}
		port := fmt.Sprintf("n%d", n.Index)
		// Sysctls before the veth exists so eth0 inherits the defaults too.
		// lo shrinks to 127.0.0.1/32, else "local 127.0.0.0/8 dev lo" would
		// swallow every 127.1.X.N; route_localnet lets 127.x cross the veth.
		script := `set -e
for f in /proc/sys/net/ipv6/conf/all/disable_ipv6 /proc/sys/net/ipv6/conf/default/disable_ipv6 \
         /proc/sys/net/ipv4/conf/all/route_localnet /proc/sys/net/ipv4/conf/default/route_localnet; do
  [ -e "$f" ] && echo 1 >"$f"
done
ip link add eth0 type veth peer name ` + port + ` netns ` + c.hub + `
echo 1 >/proc/sys/net/ipv4/conf/eth0/route_localnet
ip link set lo up
ip addr del 127.0.0.1/8 dev lo
ip addr add 127.0.0.1/32 dev lo
ip addr add ` + n.Addr + `/24 dev eth0
ip link set eth0 up
`
		if _, err := run(ctx, "ip", "netns", "exec", n.Netns, "sh", "-c", script); err != nil {
			return fmt.Errorf("set up network of %s: %w", n.Name, err)
		}
		if err := ipBatch(ctx, c.hub, "link set "+port+" master br0\nlink set "+port+" up\n"); err != nil {
			return fmt.Errorf("attach %s to bridge: %w", n.Name, err)
		}
	}
	return nil
}

// addNetns creates a network namespace and records it for Close.
func (c *Cluster) addNetns(ctx context.Context, name string) error {
	if _, err := run(ctx, "ip", "netns", "add", name); err != nil {
		return fmt.Errorf("create network namespace: %w", err)
	}
	c.mu.Lock()
	c.netns = append(c.netns, name)
	c.mu.Unlock()
	return nil
}

// ipBatch runs ip commands inside netns ns.
func ipBatch(ctx context.Context, ns, script string) error {
	cmd := exec.CommandContext(ctx, "ip", "-n", ns, "-batch", "-")
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip -n %s -batch: %w: %s", ns, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// DialContext connects from inside the node's network namespace, so code in
// the test process (e.g. an x/crypto/ssh client) can reach node addresses,
// which the host's namespace cannot.
func (n *Node) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		// Setns changes only this thread; it is locked while in the node's
		// netns and unlocked only once back in the original one. The socket
		// is created on this thread, so it belongs to the node's netns.
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("dial from %s: %w", n.Name, err)}
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + n.Netns)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("dial from %s: %w", n.Name, err)}
			return
		}
		err = unix.Setns(int(target.Fd()), unix.CLONE_NEWNET)
		target.Close()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("dial from %s: enter netns %s: %w", n.Name, n.Netns, err)}
			return
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, network, addr)
		ch <- result{conn, err}
		// Stay locked if the way back fails: the runtime then discards the
		// thread when this goroutine ends.
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
	}()
	r := <-ch
	return r.conn, r.err
}

// LinkCounters returns the byte counters of the node's eth0.
func (n *Node) LinkCounters() (rx, tx uint64, err error) {
	out, err := run(context.Background(), "ip", "-n", n.Netns, "-s", "-j", "link", "show", "dev", "eth0")
	if err != nil {
		return 0, 0, fmt.Errorf("link counters of %s: %w", n.Name, err)
	}
	var links []struct {
		Stats struct {
			RX struct{ Bytes uint64 } `json:"rx"`
			TX struct{ Bytes uint64 } `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		return 0, 0, fmt.Errorf("link counters of %s: unexpected ip output %q: %v", n.Name, out, err)
	}
	return links[0].Stats.RX.Bytes, links[0].Stats.TX.Bytes, nil
}

// SetLink takes the node's bridge port down (a network partition of this
// node) or up again. Processes and mounts are untouched.
func (n *Node) SetLink(up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	if _, err := run(context.Background(), "ip", "-n", n.c.hub, "link", "set", fmt.Sprintf("n%d", n.Index), state); err != nil {
		return fmt.Errorf("set link of %s %s: %w", n.Name, state, err)
	}
	return nil
}
