package cluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"ocf-csync/tests/netns"
)

// nodePATH is the PATH of commands run on a node.
const nodePATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// startHolder starts the process that owns the node's mount and UTS
// namespaces: it bind-mounts the node's directories, sets the hostname and
// then sleeps until Close. unshare runs without --fork, so ip, unshare, sh
// and sleep are one PID, which is the PID we keep.
func (n *Node) startHolder(ctx context.Context) error {
	var script strings.Builder
	script.WriteString("set -e\n")
	for _, b := range binds {
		fmt.Fprintf(&script, "mount --bind %s %s\n", shellQuote(filepath.Join(n.Dir, b.sub)), b.inNode)
	}
	fmt.Fprintf(&script, "mount --bind %s /etc/hosts\n", shellQuote(filepath.Join(n.Dir, "hosts")))
	script.WriteString(netns.HideHostBashrc)
	fmt.Fprintf(&script, "hostname %s\n", n.Name)
	script.WriteString("echo ready\nexec sleep infinity </dev/null >/dev/null 2>&1\n")

	p, err := netns.StartHolder(ctx, n.Netns, script.String(), filepath.Join(n.Dir, "holder.log"), readyTimeout)
	if p != nil {
		n.mu.Lock()
		n.holder = p
		n.mu.Unlock()
	}
	if err != nil {
		return fmt.Errorf("start %s: %w", n.Name, err)
	}
	return nil
}

// holderPID is the PID whose namespaces every command on the node enters.
func (n *Node) holderPID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.holder == nil {
		return 0
	}
	return n.holder.PID()
}

// startSSHD starts sshd inside the node and waits until it greets.
func (n *Node) startSSHD(ctx context.Context) error {
	n.mu.Lock()
	if n.sshd != nil && !n.sshd.Exited() {
		n.mu.Unlock()
		return nil
	}
	n.mu.Unlock()
	hp := n.holderPID()
	if hp == 0 {
		return fmt.Errorf("start sshd on %s: node is not running", n.Name)
	}
	logPath := n.SSHDLog()
	lf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start sshd on %s: %w", n.Name, err)
	}
	defer lf.Close()
	cmd := exec.Command("nsenter", "-t", strconv.Itoa(hp), "-n", "-m", "-u", "--",
		sshdPath, "-D", "-e", "-f", filepath.Join(n.Dir, "sshd_config"))
	cmd.Stdout, cmd.Stderr = lf, lf
	p, err := netns.StartProc(cmd)
	if err != nil {
		return fmt.Errorf("start sshd on %s: %w", n.Name, err)
	}
	n.mu.Lock()
	n.sshd, n.PID = p, p.PID() // nsenter execs sshd, so this is sshd's PID
	n.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for {
		if p.Exited() {
			return fmt.Errorf("start sshd on %s: sshd exited: %s", n.Name, tail(logPath, 5))
		}
		if err := n.greets(ctx); err == nil {
			return nil
		} else if ctx.Err() != nil {
			return fmt.Errorf("start sshd on %s: no SSH greeting from %s:22 within %v (%v): %s",
				n.Name, n.Addr, readyTimeout, err, tail(logPath, 5))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// greets connects to the node's sshd from inside its netns and reads the
// SSH version line.
func (n *Node) greets(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	conn, err := n.DialContext(ctx, "tcp", n.Addr+":22")
	if err != nil {
		return err
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if !strings.HasPrefix(line, "SSH-2.0-") {
		return fmt.Errorf("no SSH greeting (%q, %v)", line, err)
	}
	return nil
}

// StopSSHD stops the node's sshd and every session it forked, by PID; the
// node's namespaces, mounts and other processes stay. Peers then see it down.
func (n *Node) StopSSHD() error {
	n.mu.Lock()
	p := n.sshd
	n.sshd, n.PID = nil, 0
	n.mu.Unlock()
	if p == nil {
		return nil
	}
	if err := netns.Terminate([]*netns.Proc{p}, netns.Descendants(p.PID()), killGrace); err != nil {
		return fmt.Errorf("stop sshd on %s: %w", n.Name, err)
	}
	return nil
}

// StartSSHD starts the node's sshd again after StopSSHD and waits until it
// accepts connections. It is a no-op while sshd runs.
func (n *Node) StartSSHD() error {
	return n.startSSHD(context.Background())
}

// Command prepares name to run inside the node: its network, mounts and
// hostname. Env is just PATH (with the cluster binary's dir first); append
// to cmd.Env for more.
func (n *Node) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	path := nodePATH
	if b := n.c.binary; b != "" {
		path = filepath.Dir(b) + ":" + path
	}
	cmd := exec.CommandContext(ctx, "nsenter",
		append([]string{"-t", strconv.Itoa(n.holderPID()), "-n", "-m", "-u", "--", name}, args...)...)
	cmd.Env = []string{"PATH=" + path}
	// Dies with the test process, so a crashed test leaves no daemon behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// Run runs a command on the node and returns its output; the error includes
// the command and its stderr.
func (n *Node) Run(ctx context.Context, name string, args ...string) (stdout, stderr string, err error) {
	if n.holderPID() == 0 {
		return "", "", fmt.Errorf("run %s on %s: node is not running", name, n.Name)
	}
	cmd := n.Command(ctx, name, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	if err != nil {
		err = fmt.Errorf("run %s on %s: %w: %s", strings.Join(append([]string{name}, args...), " "), n.Name, err, strings.TrimSpace(e.String()))
	}
	return o.String(), e.String(), err
}

// kill stops everything running on the node: sshd and its sessions, every
// other process in the node's mount namespace, and the holder.
func (n *Node) kill() error {
	n.mu.Lock()
	sshd, holder := n.sshd, n.holder
	n.sshd, n.PID = nil, 0
	n.mu.Unlock()
	var own []*netns.Proc
	var others []netns.PIDRef
	if sshd != nil {
		own = append(own, sshd)
		others = append(others, netns.Descendants(sshd.PID())...)
	}
	if holder != nil {
		own = append(own, holder)
		if !holder.Exited() {
			for _, r := range netns.MountNSMembers(holder.PID()) {
				if sshd == nil || r.PID != sshd.PID() {
					others = append(others, r)
				}
			}
		}
	}
	if err := netns.Terminate(own, others, killGrace); err != nil {
		return fmt.Errorf("stop %s: %w", n.Name, err)
	}
	n.mu.Lock()
	n.holder = nil
	n.mu.Unlock()
	return nil
}

// Close stops every process the cluster started (by PID: SIGTERM, SIGKILL
// after 2 s), deletes its network namespaces (and with them the veths and
// the bridge), removes the host mount points it created once no other
// cluster uses them, and removes its temp dir. The bind mounts live only in
// the nodes' private mount namespaces and vanish with their processes. It
// is safe after a partial Start and idempotent.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.close() })
	return c.closeErr
}

func (c *Cluster) close() error {
	t0 := time.Now()
	errs := make([]error, len(c.nodes))
	done := make(chan struct{})
	for i, n := range c.nodes {
		go func() {
			errs[i] = n.kill()
			done <- struct{}{}
		}()
	}
	for range c.nodes {
		<-done
	}
	if err := c.net.Delete(); err != nil {
		errs = append(errs, err)
	}
	if c.hostMP != nil {
		last, err := c.hostMP.Release()
		c.lastOut = last
		if err != nil {
			errs = append(errs, err)
		}
	}
	if c.dir != "" {
		if err := os.RemoveAll(c.dir); err != nil {
			errs = append(errs, fmt.Errorf("remove cluster dir: %w", err))
		}
	}
	if c.alive != nil {
		c.alive.Close()
	}
	err := errors.Join(errs...)
	if c.tag != "" {
		c.logf("cluster %s: closed in %v", c.tag, time.Since(t0).Round(time.Millisecond))
	}
	if err != nil {
		return fmt.Errorf("close cluster %s: %w", c.tag, err)
	}
	return nil
}
