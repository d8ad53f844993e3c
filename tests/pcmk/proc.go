package pcmk

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The process helpers follow tests/cluster/proc.go (unexported there).

// proc is a child process this package started and reaps.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startProc starts cmd so that it dies with the test process even if Close
// never runs, and reaps it in the background.
func startProc(cmd *exec.Cmd) (*proc, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// pidRef names a process that is not our child; start (jiffies since boot)
// guards against signalling a recycled PID.
type pidRef struct {
	pid   int
	start string
}

// procStat returns the parent PID, state and start time of pid.
func procStat(pid int) (ppid int, state, start string, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, "", "", err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, "", "", fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, "", "", fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	ppid, _ = strconv.Atoi(f[1])
	return ppid, f[0], f[19], nil
}

func allPIDs() []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// descendants returns every live descendant of root (not root itself).
func descendants(root int) []pidRef {
	children := map[int][]pidRef{}
	for _, pid := range allPIDs() {
		ppid, _, start, err := procStat(pid)
		if err == nil {
			children[ppid] = append(children[ppid], pidRef{pid, start})
		}
	}
	var out []pidRef
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c.pid)
		}
	}
	return out
}

// nsMembers returns every process in pid's mount namespace except pid.
func nsMembers(pid int) []pidRef {
	want, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
	if err != nil {
		return nil
	}
	var out []pidRef
	for _, p := range allPIDs() {
		if p == pid {
			continue
		}
		if ns, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(p), "ns", "mnt")); err != nil || ns != want {
			continue
		}
		if _, _, start, err := procStat(p); err == nil {
			out = append(out, pidRef{p, start})
		}
	}
	return out
}

// alive reports whether r still runs (zombies count as gone).
func (r pidRef) alive() bool {
	_, state, start, err := procStat(r.pid)
	return err == nil && start == r.start && state != "Z"
}

func (r pidRef) signal(sig syscall.Signal) {
	if r.alive() {
		syscall.Kill(r.pid, sig)
	}
}

// terminate stops our children and the other processes by PID: SIGTERM,
// then SIGKILL for whatever still runs after grace (at once when grace is
// 0). It names the PIDs that survived even SIGKILL.
func terminate(own []*proc, others []pidRef, grace time.Duration) error {
	if grace > 0 {
		for _, p := range own {
			if !p.exited() {
				p.cmd.Process.Signal(syscall.SIGTERM)
			}
		}
		for _, r := range others {
			r.signal(syscall.SIGTERM)
		}
		if waitGone(own, others, time.Now().Add(grace)) {
			return nil
		}
	}
	for _, p := range own {
		if !p.exited() {
			p.cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	for _, r := range others {
		r.signal(syscall.SIGKILL)
	}
	if waitGone(own, others, time.Now().Add(killWait)) {
		return nil
	}
	var left []string
	for _, p := range own {
		if !p.exited() {
			left = append(left, strconv.Itoa(p.pid()))
		}
	}
	for _, r := range others {
		if r.alive() {
			left = append(left, strconv.Itoa(r.pid))
		}
	}
	return errors.New("processes survived SIGKILL: " + strings.Join(left, " "))
}

// killWait is how long terminate waits for SIGKILLed processes to go.
const killWait = 2 * time.Second

func waitGone(own []*proc, others []pidRef, deadline time.Time) bool {
	for {
		gone := true
		for _, p := range own {
			gone = gone && p.exited()
		}
		for _, r := range others {
			gone = gone && !r.alive()
		}
		if gone {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}
