package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"ocf-csync/tests/netns"
)

const sshdPath = "/usr/sbin/sshd"

// makeFiles creates every node's base dir: bind sources, keys, sshd_config,
// /etc/hosts and known_hosts.
func (c *Cluster) makeFiles(ctx context.Context, skip []int) error {
	clientKey := filepath.Join(c.dir, "id_ed25519")
	pub, err := netns.Keygen(ctx, clientKey, "ocf-csync-cluster-"+c.tag)
	if err != nil {
		return err
	}
	c.clientP = pub
	priv, err := os.ReadFile(clientKey)
	if err != nil {
		return fmt.Errorf("read client key: %w", err)
	}

	var hosts strings.Builder
	hosts.WriteString("127.0.0.1\tlocalhost\n")
	for _, n := range c.nodes {
		fmt.Fprintf(&hosts, "%s\t%s\n", n.Addr, n.Name)
	}

	for _, n := range c.nodes {
		for _, d := range []string{"etc", "var", "data", "run", "run/sshd", "run/resource-agents"} {
			// /run/sshd must be root-owned and not group/world writable.
			if err := os.MkdirAll(filepath.Join(n.Dir, d), 0o755); err != nil {
				return fmt.Errorf("create node dir: %w", err)
			}
		}
		hk, err := netns.Keygen(ctx, filepath.Join(n.Dir, "ssh_host_ed25519_key"), "root@"+n.Name)
		if err != nil {
			return err
		}
		n.hostKey = hk
		files := []struct {
			path string
			data string
			mode os.FileMode
		}{
			{"etc/id_ed25519", string(priv), 0o600},
			{"etc/id_ed25519.pub", pub + "\n", 0o644},
			{"authorized_keys", pub + "\n", 0o600},
			{"hosts", hosts.String(), 0o644},
			{"sshd_config", n.sshdConfig(), 0o644},
		}
		for _, f := range files {
			if err := os.WriteFile(filepath.Join(n.Dir, f.path), []byte(f.data), f.mode); err != nil {
				return fmt.Errorf("write node file: %w", err)
			}
		}
	}
	return c.WriteKnownHosts(skip...)
}

func (n *Node) sshdConfig() string {
	return fmt.Sprintf(`# ocf-csync test cluster %s, %s
ListenAddress %s
Port 22
AddressFamily inet
HostKey %s/ssh_host_ed25519_key
PidFile %s/sshd.pid
AuthorizedKeysFile %s/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
X11Forwarding no
AcceptEnv none
Subsystem sftp internal-sftp
LogLevel VERBOSE
MaxStartups 200:30:400
MaxSessions 100
`, n.c.tag, n.Name, n.Addr, n.Dir, n.Dir, n.Dir)
}

// WriteKnownHosts (re)writes every node's known_hosts (KnownHosts in the
// node). Each lists every node's host key under its name and address,
// except that the keys of the nodes in skip appear only in their own file.
// Use it to make a node's key unknown, or known again, mid-test.
func (c *Cluster) WriteKnownHosts(skip ...int) error {
	for _, n := range c.nodes {
		var b strings.Builder
		for _, m := range c.nodes {
			if m != n && slices.Contains(skip, m.Index) {
				continue
			}
			fmt.Fprintf(&b, "%s,%s %s\n", m.Name, m.Addr, m.hostKey)
		}
		p := n.Path(KnownHosts)
		if err := os.WriteFile(p+".tmp", []byte(b.String()), 0o644); err != nil {
			return fmt.Errorf("write known_hosts for %s: %w", n.Name, err)
		}
		if err := os.Rename(p+".tmp", p); err != nil {
			return fmt.Errorf("write known_hosts for %s: %w", n.Name, err)
		}
	}
	return nil
}

// Path maps an in-node path to the host-side path of the same file: paths
// under EtcDir, VarDir, DataDir and RunDir go to the node's base dir, any
// other path is shared with the host and returned cleaned.
func (n *Node) Path(p string) string {
	p = filepath.Clean(p)
	for _, b := range binds {
		if within(p, b.inNode) {
			return filepath.Join(n.Dir, b.sub, strings.TrimPrefix(p, b.inNode))
		}
	}
	if p == "/etc/hosts" {
		return filepath.Join(n.Dir, "hosts")
	}
	return p
}

// AuthorizedKeysPath is the host-side path of the node's sshd
// authorized_keys; rewrite it to pin keys, e.g. with command="…",restrict.
func (n *Node) AuthorizedKeysPath() string { return filepath.Join(n.Dir, "authorized_keys") }

// SSHDLog is the host-side path of the node's sshd log (sshd -e output).
func (n *Node) SSHDLog() string { return filepath.Join(n.Dir, "sshd.log") }
