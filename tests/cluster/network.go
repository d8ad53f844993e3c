package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"

	"ocf-csync/tests/netns"
)

// makeNetwork creates the hub netns with bridge br0 and, per node, a netns
// whose eth0 is a veth into the bridge (see netns.Network).
func (c *Cluster) makeNetwork(ctx context.Context) error {
	if err := c.net.CreateHub(ctx); err != nil {
		return err
	}
	for _, n := range c.nodes {
		if err := c.net.AddNode(ctx, n.Name, n.Netns, fmt.Sprintf("n%d", n.Index), n.Addr); err != nil {
			return err
		}
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
	out, err := netns.Run(context.Background(), "ip", "-n", n.Netns, "-s", "-j", "link", "show", "dev", "eth0")
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
	if _, err := netns.Run(context.Background(), "ip", "-n", n.c.net.Hub, "link", "set", fmt.Sprintf("n%d", n.Index), state); err != nil {
		return fmt.Errorf("set link of %s %s: %w", n.Name, state, err)
	}
	return nil
}
