package pcmk

// Options.SSHD: a real OpenSSH sshd per node and private ocf-csync
// directories, the way tests/cluster sets its nodes up, so that ocf-csync
// can push between the nodes of a Pacemaker cluster.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"ocf-csync/tests/netns"
)

// In-node paths private to each node when Options.SSHD is set (the same
// as tests/cluster's).
const (
	EtcDir  = "/etc/ocf-csync"
	VarDir  = "/var/lib/ocf-csync"
	DataDir = "/srv/ocf-csync"
)

// ClientKey and KnownHosts are the in-node paths of the cluster-wide SSH
// client key (authorized for root on every node) and of the node's
// known_hosts file (every node's host key under its name and address).
const (
	ClientKey  = EtcDir + "/id_ed25519"
	KnownHosts = EtcDir + "/known_hosts"
)

const sshdPath = "/usr/sbin/sshd"

// sshdDirs become private per node with Options.SSHD.
var sshdDirs = []string{EtcDir, VarDir, DataDir}

// sshdTimeout bounds the wait for a node's sshd to answer.
const sshdTimeout = 10 * time.Second

// privDirs are the in-node directories bind-mounted from Dir/priv.
func (c *Cluster) privDirs() []string {
	dirs := slices.Clone(c.opts.PrivateDirs)
	if c.opts.SSHD {
		for _, d := range sshdDirs {
			if !slices.Contains(dirs, d) {
				dirs = append(dirs, d)
			}
		}
	}
	return dirs
}

// Path maps an in-node path below one of the node's private directories
// (Options.PrivateDirs, the SSHD dirs, the Pacemaker and corosync dirs) to
// its host-side path; any other path is shared with the host and returned
// cleaned.
func (n *Node) Path(inNode string) string {
	p := filepath.Clean(inNode)
	for _, d := range n.c.privDirs() {
		if p == d || strings.HasPrefix(p, d+"/") {
			return filepath.Join(n.Dir, "priv", subdir(d), strings.TrimPrefix(p, d))
		}
	}
	if lp := n.LogPath(p); lp != "" {
		return lp
	}
	for _, d := range privateDirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return filepath.Join(n.Dir, subdir(d), strings.TrimPrefix(p, d))
		}
	}
	return p
}

// SSHDLog is the host-side path of the node's sshd log (sshd -e output).
func (n *Node) SSHDLog() string { return filepath.Join(n.Dir, "sshd.out") }

// SSHDPid is the PID of the node's sshd, 0 when it does not run.
func (n *Node) SSHDPid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.sshd == nil || n.sshd.Exited() {
		return 0
	}
	return n.sshd.PID()
}

// makeSSHFiles writes the client key, every node's host key, sshd_config,
// authorized_keys, /etc/hosts and known_hosts.
func (c *Cluster) makeSSHFiles(ctx context.Context) error {
	clientKey := filepath.Join(c.dir, "id_ed25519")
	pub, err := netns.Keygen(ctx, clientKey, "ocf-csync-pcmk-"+c.tag)
	if err != nil {
		return err
	}
	priv, err := os.ReadFile(clientKey)
	if err != nil {
		return fmt.Errorf("read client key: %w", err)
	}
	var hosts strings.Builder
	hosts.WriteString("127.0.0.1\tlocalhost\n")
	for _, n := range c.nodes {
		fmt.Fprintf(&hosts, "%s\t%s\n", n.Addr, n.Name)
	}
	hostKeys := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		if hostKeys[i], err = netns.Keygen(ctx, filepath.Join(n.Dir, "ssh_host_ed25519_key"), "root@"+n.Name); err != nil {
			return err
		}
	}
	var known strings.Builder
	for i, n := range c.nodes {
		fmt.Fprintf(&known, "%s,%s %s\n", n.Name, n.Addr, hostKeys[i])
	}
	for _, n := range c.nodes {
		files := []struct {
			path string
			data string
			mode os.FileMode
		}{
			{n.Path(ClientKey), string(priv), 0o600},
			{n.Path(ClientKey + ".pub"), pub + "\n", 0o644},
			{n.Path(KnownHosts), known.String(), 0o644},
			{filepath.Join(n.Dir, "authorized_keys"), pub + "\n", 0o600},
			{filepath.Join(n.Dir, "hosts"), hosts.String(), 0o644},
			{filepath.Join(n.Dir, "sshd_config"), n.sshdConfig(), 0o644},
		}
		for _, f := range files {
			if err := os.WriteFile(f.path, []byte(f.data), f.mode); err != nil {
				return fmt.Errorf("write ssh files of %s: %w", n.Name, err)
			}
		}
	}
	return nil
}

func (n *Node) sshdConfig() string {
	return fmt.Sprintf(`# ocf-csync Pacemaker test cluster %s, %s
ListenAddress %s
Port 22
AddressFamily inet
HostKey %s/ssh_host_ed25519_key
PidFile /run/sshd.pid
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
LogLevel VERBOSE
MaxStartups 200:30:400
MaxSessions 100
`, n.c.tag, n.Name, n.Addr, n.Dir, n.Dir)
}

// StartSSHD starts sshd on the node and waits until it shows its host key
// (ssh-keyscan from inside the node). It is a no-op while sshd runs.
func (n *Node) StartSSHD(ctx context.Context) error {
	if n.SSHDPid() != 0 {
		return nil
	}
	if n.holderPID() == 0 {
		return fmt.Errorf("start sshd on %s: node is not running", n.Name)
	}
	p, err := n.startDaemon("sshd", []string{sshdPath, "-D", "-e", "-f", filepath.Join(n.Dir, "sshd_config")}, nil)
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.sshd = p
	n.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, sshdTimeout)
	defer cancel()
	for {
		if p.Exited() {
			return fmt.Errorf("start sshd on %s: it exited: %s", n.Name, tail(n.SSHDLog(), 5))
		}
		out, _, err := n.Run(wctx, "ssh-keyscan", "-T", "1", "-t", "ed25519", n.Addr)
		if err == nil && strings.Contains(out, "ssh-ed25519") {
			return nil
		}
		if wctx.Err() != nil {
			return fmt.Errorf("start sshd on %s: no host key from %s:22 within %v (%v): %s",
				n.Name, n.Addr, sshdTimeout, err, tail(n.SSHDLog(), 5))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// StopSSHD stops the node's sshd and its sessions by PID.
func (n *Node) StopSSHD() error {
	n.mu.Lock()
	p := n.sshd
	n.sshd = nil
	n.mu.Unlock()
	if p == nil {
		return nil
	}
	if err := netns.Terminate([]*netns.Proc{p}, netns.Descendants(p.PID()), 2*time.Second); err != nil {
		return fmt.Errorf("stop sshd on %s: %w", n.Name, err)
	}
	return nil
}

// acquireHostMounts makes sure the host mount points exist and registers
// the cluster as their user until releaseHostMounts; tests/cluster shares
// them (netns.HostMounts).
func (c *Cluster) acquireHostMounts() error {
	mu, err := netns.LockFile(netns.HostMountsMutex, syscall.LOCK_EX)
	if err != nil {
		return fmt.Errorf("host mount points: %w", err)
	}
	defer mu.Close()
	h, err := netns.AcquireHostMounts(sshdDirs)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.hostMP = h
	c.mu.Unlock()
	return nil
}

// releaseHostMounts unregisters the cluster; the last user removes the
// recorded directories while they are empty.
func (c *Cluster) releaseHostMounts() error {
	c.mu.Lock()
	h := c.hostMP
	c.hostMP = nil
	c.mu.Unlock()
	if h == nil {
		return nil
	}
	_, err := h.Release()
	return err
}

// sshdUnavailable says why Options.SSHD cannot work here, or "".
func sshdUnavailable() string {
	if _, err := os.Stat(sshdPath); err != nil {
		return sshdPath + " not found (install openssh-server)"
	}
	for _, tool := range []string{"ssh-keygen", "ssh-keyscan"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " not found on PATH (install openssh-client)"
		}
	}
	return ""
}
