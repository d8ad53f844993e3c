package netns

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
)

// Network is a hub network namespace with bridge br0 and node namespaces
// whose eth0 is a veth into the bridge. Everything is created inside the
// new namespaces, never in the host's: each veth pair is born in the node
// netns with its peer placed directly in the hub. Network remembers the
// namespaces it created so that Delete removes exactly those.
type Network struct {
	Hub string // hub netns name

	mu      sync.Mutex
	created []string // hub first
}

// CreateHub creates the hub namespace and its bridge br0.
func (nw *Network) CreateHub(ctx context.Context) error {
	if err := nw.add(ctx, nw.Hub); err != nil {
		return err
	}
	if err := IPBatch(ctx, nw.Hub, "link add br0 type bridge\nlink set br0 up\nlink set lo up\n"); err != nil {
		return fmt.Errorf("create bridge in %s: %w", nw.Hub, err)
	}
	return nil
}

// AddNode creates namespace ns whose eth0 has addr (with its /24) and is a
// veth into the hub's bridge, port being the veth's name in the hub; name
// is the node's name for error messages.
func (nw *Network) AddNode(ctx context.Context, name, ns, port, addr string) error {
	if err := nw.add(ctx, ns); err != nil {
		return err
	}
	// Sysctls before the veth exists so eth0 inherits the defaults too.
	// lo shrinks to 127.0.0.1/32, else "local 127.0.0.0/8 dev lo" would
	// swallow every 127.1.X.N; route_localnet lets 127.x cross the veth.
	script := `set -e
for f in /proc/sys/net/ipv6/conf/all/disable_ipv6 /proc/sys/net/ipv6/conf/default/disable_ipv6 \
         /proc/sys/net/ipv4/conf/all/route_localnet /proc/sys/net/ipv4/conf/default/route_localnet; do
  [ -e "$f" ] && echo 1 >"$f"
done
ip link add eth0 type veth peer name ` + port + ` netns ` + nw.Hub + `
echo 1 >/proc/sys/net/ipv4/conf/eth0/route_localnet
ip link set lo up
ip addr del 127.0.0.1/8 dev lo
ip addr add 127.0.0.1/32 dev lo
ip addr add ` + addr + `/24 dev eth0
ip link set eth0 up
`
	if _, err := Run(ctx, "ip", "netns", "exec", ns, "sh", "-c", script); err != nil {
		return fmt.Errorf("set up network of %s: %w", name, err)
	}
	if err := IPBatch(ctx, nw.Hub, "link set "+port+" master br0\nlink set "+port+" up\n"); err != nil {
		return fmt.Errorf("attach %s to bridge: %w", name, err)
	}
	return nil
}

// add creates a network namespace and records it for Delete.
func (nw *Network) add(ctx context.Context, name string) error {
	if _, err := Run(ctx, "ip", "netns", "add", name); err != nil {
		return fmt.Errorf("create network namespace: %w", err)
	}
	nw.mu.Lock()
	nw.created = append(nw.created, name)
	nw.mu.Unlock()
	return nil
}

// Delete deletes the created namespaces, nodes first (and with them the
// veths and the bridge). Stop the processes in them first.
func (nw *Network) Delete() error {
	nw.mu.Lock()
	names := nw.created
	nw.created = nil
	nw.mu.Unlock()
	var errs []error
	for i := len(names) - 1; i >= 0; i-- {
		if _, err := Run(context.Background(), "ip", "netns", "del", names[i]); err != nil {
			errs = append(errs, fmt.Errorf("delete network namespace: %w", err))
		}
	}
	return errors.Join(errs...)
}

// IPBatch runs ip commands inside netns ns.
func IPBatch(ctx context.Context, ns, script string) error {
	cmd := exec.CommandContext(ctx, "ip", "-n", ns, "-batch", "-")
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip -n %s -batch: %w: %s", ns, err, strings.TrimSpace(string(out)))
	}
	return nil
}
