package pcmk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"ocf-csync/ha"
	"ocf-csync/tests/netns"
)

// nodePATH is the PATH of commands run on a node.
const nodePATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// In-node log files.
const (
	PacemakerLog = "/var/log/pacemaker/pacemaker.log"
	CorosyncLog  = "/var/log/corosync/corosync.log"
)

// Timeouts of the start-up stages.
const (
	holderTimeout   = 5 * time.Second
	corosyncTimeout = 15 * time.Second
	// stopGrace is how long pacemakerd gets to stop its resources and
	// daemons on SIGTERM before everything is killed.
	stopGrace = 5 * time.Second
)

// Node is one cluster member.
type Node struct {
	Index int    // 1-based; also the corosync nodeid
	Name  string // node1, node2, …: hostname and Pacemaker node name
	Addr  string // 127.1.X.Index on eth0
	Dir   string // host-side base dir
	Netns string // network namespace name

	c          *Cluster
	mu         sync.Mutex
	holder     *netns.Proc
	corosync   *netns.Proc
	pacemakerd *netns.Proc
	sshd       *netns.Proc
}

// startHolder starts the process owning the node's mount and UTS
// namespaces: it bind-mounts the private directories, puts tmpfs on /run
// and /dev/shm, sets the hostname and sleeps until Close.
func (n *Node) startHolder(ctx context.Context) error {
	var s strings.Builder
	s.WriteString("set -e\n")
	for _, d := range privateDirs {
		fmt.Fprintf(&s, "mount --bind %s %s\n", shellQuote(filepath.Join(n.Dir, subdir(d))), d)
	}
	for _, d := range n.c.privDirs() {
		fmt.Fprintf(&s, "mount --bind %s %s\n", shellQuote(filepath.Join(n.Dir, "priv", subdir(d))), shellQuote(d))
	}
	if n.c.opts.SSHD {
		fmt.Fprintf(&s, "mount --bind %s /etc/hosts\n", shellQuote(filepath.Join(n.Dir, "hosts")))
	}
	s.WriteString(netns.HideHostBashrc)
	s.WriteString(`mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/crm /run/resource-agents /run/lock /run/sshd
chown hacluster:haclient /run/crm
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
`)
	fmt.Fprintf(&s, "hostname %s\n", n.Name)
	s.WriteString("echo ready\nexec sleep infinity </dev/null >/dev/null 2>&1\n")

	p, err := netns.StartHolder(ctx, n.Netns, s.String(), filepath.Join(n.Dir, "holder.log"), holderTimeout)
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

func (n *Node) holderPID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.holder == nil {
		return 0
	}
	return n.holder.PID()
}

// StackRunning reports whether this node's corosync and pacemakerd run.
func (n *Node) StackRunning() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.corosync != nil && !n.corosync.Exited() && n.pacemakerd != nil && !n.pacemakerd.Exited()
}

// Pids returns the PIDs of the node's corosync and pacemakerd (0 when not
// running).
func (n *Node) Pids() (corosync, pacemakerd int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.corosync != nil && !n.corosync.Exited() {
		corosync = n.corosync.PID()
	}
	if n.pacemakerd != nil && !n.pacemakerd.Exited() {
		pacemakerd = n.pacemakerd.PID()
	}
	return
}

// StartStack starts corosync, waits until it answers, then starts
// pacemakerd. It does not wait for the cluster to form (see WaitFormed).
// It is a no-op while the stack runs.
func (n *Node) StartStack(ctx context.Context) error {
	if n.StackRunning() {
		return nil
	}
	hp := n.holderPID()
	if hp == 0 {
		return fmt.Errorf("start corosync on %s: node is not running", n.Name)
	}
	cs, err := n.startDaemon("corosync", []string{"corosync", "-f"}, nil)
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.corosync = cs
	n.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, corosyncTimeout)
	defer cancel()
	for {
		if cs.Exited() {
			return fmt.Errorf("start corosync on %s: it exited: %s | %s", n.Name,
				tail(filepath.Join(n.Dir, "corosync.out"), 5), tail(n.LogPath(CorosyncLog), 5))
		}
		if _, _, err := n.Run(wctx, "corosync-cfgtool", "-s"); err == nil {
			break
		} else if wctx.Err() != nil {
			return fmt.Errorf("start corosync on %s: not answering within %v: %v", n.Name, corosyncTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	pd, err := n.startDaemon("pacemakerd", []string{"pacemakerd"}, []string{"PCMK_logfile=" + PacemakerLog})
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.pacemakerd = pd
	n.mu.Unlock()
	return nil
}

// startDaemon runs argv on the node as a child of the test process
// (nsenter execs it, so the PID is the daemon's), output to Dir/NAME.out.
func (n *Node) startDaemon(name string, argv, env []string) (*netns.Proc, error) {
	lf, err := os.OpenFile(filepath.Join(n.Dir, name+".out"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s on %s: %w", name, n.Name, err)
	}
	defer lf.Close()
	cmd := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(n.holderPID()), "-n", "-m", "-u", "--"}, argv...)...)
	cmd.Env = append([]string{"PATH=" + nodePATH}, env...)
	cmd.Stdout, cmd.Stderr = lf, lf
	p, err := netns.StartProc(cmd)
	if err != nil {
		return nil, fmt.Errorf("start %s on %s: %w", name, n.Name, err)
	}
	return p, nil
}

// Crash kills the node's corosync, pacemakerd and Pacemaker's daemons with
// SIGKILL, like a node failure but without rebooting: what the resource
// agents set up (a VIP on eth0) and other processes on the node stay.
func (n *Node) Crash() error {
	n.mu.Lock()
	cs, pd := n.corosync, n.pacemakerd
	n.corosync, n.pacemakerd = nil, nil
	n.mu.Unlock()
	var own []*netns.Proc
	var others []netns.PIDRef
	for _, p := range []*netns.Proc{pd, cs} {
		if p != nil {
			own = append(own, p)
			others = append(others, netns.Descendants(p.PID())...)
		}
	}
	if err := netns.Terminate(own, others, 0); err != nil {
		return fmt.Errorf("crash %s: %w", n.Name, err)
	}
	return nil
}

// StopStack stops pacemakerd gracefully (SIGTERM; it stops the resources
// here first), then corosync; after stopGrace each is killed.
func (n *Node) StopStack() error {
	n.mu.Lock()
	cs, pd := n.corosync, n.pacemakerd
	n.corosync, n.pacemakerd = nil, nil
	n.mu.Unlock()
	var errs []error
	if pd != nil {
		errs = append(errs, netns.Terminate([]*netns.Proc{pd}, netns.Descendants(pd.PID()), stopGrace))
	}
	if cs != nil {
		errs = append(errs, netns.Terminate([]*netns.Proc{cs}, netns.Descendants(cs.PID()), stopGrace))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stop the stack of %s: %w", n.Name, err)
	}
	return nil
}

// kill stops everything on the node: the stack gracefully, then every
// other process in its mount namespace, then the holder.
func (n *Node) kill() error {
	err := errors.Join(n.StopStack(), n.StopSSHD())
	n.mu.Lock()
	holder := n.holder
	n.holder = nil
	n.mu.Unlock()
	if holder == nil {
		return err
	}
	var others []netns.PIDRef
	if !holder.Exited() {
		others = netns.MountNSMembers(holder.PID())
	}
	return errors.Join(err, netns.Terminate([]*netns.Proc{holder}, others, 0))
}

// Command prepares name to run inside the node (network, mounts, hostname)
// with PATH as the only environment variable; append to cmd.Env for more.
func (n *Node) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "nsenter",
		append([]string{"-t", strconv.Itoa(n.holderPID()), "-n", "-m", "-u", "--", name}, args...)...)
	cmd.Env = []string{"PATH=" + nodePATH}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// Run runs a command on the node; the error includes the command and its
// stderr.
func (n *Node) Run(ctx context.Context, name string, args ...string) (stdout, stderr string, err error) {
	if n.holderPID() == 0 {
		return "", "", fmt.Errorf("run %s on %s: node is not running", name, n.Name)
	}
	cmd := n.Command(ctx, name, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err = cmd.Run(); err != nil {
		err = fmt.Errorf("run %s on %s: %w: %s", strings.Join(append([]string{name}, args...), " "), n.Name, err, strings.TrimSpace(e.String()))
	}
	return o.String(), e.String(), err
}

// Status is crm_mon's view from this node.
func (n *Node) Status(ctx context.Context) (*ha.ClusterStatus, error) {
	out, _, err := n.Run(ctx, "crm_mon", "-1", "--output-as=xml")
	if err != nil {
		return nil, err
	}
	s, err := ha.ParseStatus([]byte(out))
	if err != nil {
		return nil, fmt.Errorf("status of %s: %w", n.Name, err)
	}
	return s, nil
}

// WaitStatus polls crm_mon on the node every 100 ms until ok accepts the
// status, and returns that status; what says what it waits for.
func (n *Node) WaitStatus(ctx context.Context, what string, ok func(*ha.ClusterStatus) bool) (*ha.ClusterStatus, error) {
	var last error
	for {
		s, err := n.Status(ctx)
		if err == nil && ok(s) {
			return s, nil
		}
		if err != nil {
			last = err
		} else {
			last = fmt.Errorf("DC %q quorum %v online %v", s.DC, s.Quorum, s.OnlineNodes())
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: waiting for %s: %w (last: %v)", n.Name, what, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// LogTail returns the last lines of the node's pacemaker.log.
func (n *Node) LogTail(lines int) string {
	return tail(n.LogPath(PacemakerLog), lines)
}

// LogPath is the host-side path of an in-node log (PacemakerLog,
// CorosyncLog).
func (n *Node) LogPath(inNode string) string {
	for _, d := range privateDirs {
		if strings.HasPrefix(inNode, d+"/") {
			return filepath.Join(n.Dir, subdir(d), strings.TrimPrefix(inNode, d+"/"))
		}
	}
	return ""
}
