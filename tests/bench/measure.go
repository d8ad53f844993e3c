package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"ocf-csync/tests/cluster"
)

// Receiver kinds: how the receiving side's CPU and RSS are measured.
const (
	viaSSH    = "ssh"    // sshd's reaped-children CPU + /usr/bin/time around the helper
	viaCsync2 = "csync2" // a one-connection csync2 -iii daemon, our own child
	viaNone   = "none"   // a local command: no receiver
)

// timeFile is the in-node path the receiver's /usr/bin/time writes.
const timeFile = "/run/bench.time"

// clientTimeFile is the in-node path of the sender's /usr/bin/time output.
const clientTimeFile = "/run/bench-client.time"

// timeFormat is GNU time's -f: wall, user, sys seconds and max RSS in KiB.
const timeFormat = "%e:%U:%S:%M"

// job is one measured command on node1.
type job struct {
	tool     string
	args     []string // command and arguments, run on node1
	env      []string
	receiver string
	timeout  time.Duration
	// mayNotConnect: a missing receiver measurement is no error.
	mayNotConnect bool
	// peers are the receiving nodes of a viaSSH job (default node2): their
	// sshd CPU is summed, their helpers' peak RSS is the largest.
	peers []*cluster.Node
}

// sample is one measured run.
type sample struct {
	tool       string
	wall       time.Duration
	clientCPU  time.Duration // user+sys of the client process tree
	serverCPU  time.Duration // user+sys of everything the receiver ran
	helperCPU  time.Duration // user+sys of the helper alone (rsync/ocf-csync serve; csync2 daemon)
	clientRSS  int64         // KiB
	serverRSS  int64         // KiB
	sent, recv uint64        // node1 eth0 tx, rx bytes
	err        error         // the run failed or the result was wrong
	output     string
	round      int // 0-based round of a repeated data set
}

func (s sample) ok() bool { return s.err == nil }

// runner measures jobs on a two-node cluster.
type runner struct {
	c      *cluster.Cluster
	n1, n2 *cluster.Node
	log    func(format string, args ...any)
}

// measure runs j on node1 and measures both sides. The receiver must be
// idle before (nothing else may talk to node2's sshd during a run).
func (r *runner) measure(ctx context.Context, j job) sample {
	s := sample{tool: j.tool}
	ctx, cancel := context.WithTimeout(ctx, j.timeout)
	defer cancel()
	peers := j.peers
	if len(peers) == 0 {
		peers = []*cluster.Node{r.n2}
	}
	for _, n := range peers {
		os.Remove(n.Path(timeFile))
	}
	// Flush what earlier runs left dirty, so its writeback is not billed here.
	unix.Sync()

	var daemon *exec.Cmd
	var dlog bytes.Buffer
	if j.receiver == viaCsync2 {
		daemon = r.n2.Command(ctx, "/usr/bin/time", "-o", timeFile, "-f", timeFormat, "csync2", "-N", r.n2.Name, "-D", csync2DB, "-iii")
		daemon.Env = append(daemon.Env, "CSYNC2_SYSTEM_DIR="+csync2Dir)
		daemon.Stdout, daemon.Stderr = &dlog, &dlog
		daemon.Cancel = func() error { return killTree(daemon.Process.Pid) }
		if err := daemon.Start(); err != nil {
			s.err = fmt.Errorf("start csync2 daemon on %s: %w", r.n2.Name, err)
			return s
		}
		defer func() {
			if daemon.ProcessState == nil {
				killTree(daemon.Process.Pid)
				daemon.Wait()
			}
		}()
		if err := r.waitListen(ctx, r.n2, 30865); err != nil {
			s.err = fmt.Errorf("csync2 daemon on %s: %w: %s", r.n2.Name, err, dlog.String())
			return s
		}
	}

	rx0, tx0, err := r.n1.LinkCounters()
	if err != nil {
		s.err = err
		return s
	}
	var sshd0 time.Duration
	for _, n := range peers {
		c, _ := childCPU(n.PID)
		sshd0 += c
	}

	// GNU time forks a small process for the command: ru_maxrss of our own
	// child would start at this program's RSS (vfork shares the mm).
	os.Remove(r.n1.Path(clientTimeFile))
	cmd := r.n1.Command(ctx, "/usr/bin/time", append([]string{"-o", clientTimeFile, "-f", timeFormat}, j.args...)...)
	cmd.Env = append(cmd.Env, j.env...)
	cmd.Cancel = func() error { return killTree(cmd.Process.Pid) }
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	err = cmd.Run()
	s.wall = time.Since(t0)
	s.output = out.String()
	if err != nil {
		s.err = fmt.Errorf("%s: %w: %s", strings.Join(j.args, " "), err, lastLines(out.String(), 6))
		if ctx.Err() != nil {
			s.err = fmt.Errorf("%s: timed out after %v", j.tool, j.timeout)
		}
	}
	if cpu, rss, err := readTimeFile(r.n1.Path(clientTimeFile)); err == nil {
		s.clientCPU, s.clientRSS = cpu, rss
	} else if s.err == nil {
		s.err = fmt.Errorf("sender measurement: %w", err)
	}

	switch j.receiver {
	case viaSSH:
		// The sessions end shortly after the client; sshd reaps them and
		// adds their CPU (sshd-session, shell, time, helper) to its cutime.
		deadline := time.Now().Add(10 * time.Second)
		var sshd1 time.Duration
		for _, n := range peers {
			for len(children(n.PID)) > 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			c, _ := childCPU(n.PID)
			sshd1 += c
		}
		s.serverCPU = sshd1 - sshd0
		for _, n := range peers {
			if cpu, rss, err := readTimeFile(n.Path(timeFile)); err == nil {
				s.helperCPU += cpu
				s.serverRSS = max(s.serverRSS, rss)
			} else if s.err == nil && !j.mayNotConnect {
				s.err = fmt.Errorf("receiver measurement on %s: %w", n.Name, err)
			}
		}
	case viaCsync2:
		done := make(chan error, 1)
		go func() { done <- daemon.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			killTree(daemon.Process.Pid)
			<-done
		}
		if cpu, rss, err := readTimeFile(r.n2.Path(timeFile)); err == nil {
			s.serverCPU, s.helperCPU, s.serverRSS = cpu, cpu, rss
		} else if s.err == nil {
			s.err = fmt.Errorf("receiver measurement: %w", err)
		}
	}

	rx1, tx1, err := r.n1.LinkCounters()
	if err == nil {
		s.sent, s.recv = tx1-tx0, rx1-rx0
	}
	return s
}

// waitListen waits until something on n listens on TCP port.
func (r *runner) waitListen(ctx context.Context, n *cluster.Node, port int) error {
	want := fmt.Sprintf(":%04X ", port)
	for {
		out, _, err := n.Run(ctx, "cat", "/proc/net/tcp")
		if err == nil {
			for _, l := range strings.Split(out, "\n") {
				f := strings.Fields(l)
				if len(f) > 3 && strings.HasSuffix(f[1]+" ", want) && f[3] == "0A" {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nothing listens on port %d: %w", port, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// killTree SIGKILLs the children of pid (the command under /usr/bin/time),
// then pid itself: all processes this program started.
func killTree(pid int) error {
	for _, c := range children(pid) {
		killTree(c)
	}
	return syscall.Kill(pid, syscall.SIGKILL)
}

// clkTck is USER_HZ, the unit of /proc/PID/stat times (100 on Linux).
const clkTck = 100

// statFields returns the fields of /proc/PID/stat after the comm field.
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return strings.Fields(s[i+1:]), nil
}

// childCPU is the user+sys time of pid's reaped children (cutime+cstime).
func childCPU(pid int) (time.Duration, error) {
	f, err := statFields(pid)
	if err != nil || len(f) < 15 {
		return 0, fmt.Errorf("read /proc/%d/stat: %v", pid, err)
	}
	cu, _ := strconv.ParseInt(f[13], 10, 64)
	cs, _ := strconv.ParseInt(f[14], 10, 64)
	return time.Duration(cu+cs) * time.Second / clkTck, nil
}

// children lists the live, non-zombie children of pid.
func children(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := statFields(p)
		if err != nil || len(f) < 2 {
			continue
		}
		if pp, _ := strconv.Atoi(f[1]); pp == pid && f[0] != "Z" {
			out = append(out, p)
		}
	}
	return out
}

// readTimeFile parses GNU time's timeFormat output (the last line; a
// "Command exited with non-zero status" line may come first).
func readTimeFile(p string) (cpu time.Duration, rssKiB int64, err error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, 0, fmt.Errorf("read %s: %w", p, err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	f := strings.Split(lines[len(lines)-1], ":")
	if len(f) != 4 {
		return 0, 0, fmt.Errorf("%s: unexpected /usr/bin/time output %q", p, b)
	}
	u, _ := strconv.ParseFloat(f[1], 64)
	sy, _ := strconv.ParseFloat(f[2], 64)
	rss, _ := strconv.ParseInt(f[3], 10, 64)
	return time.Duration((u + sy) * float64(time.Second)), rss, nil
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}
