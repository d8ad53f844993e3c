package netns

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

// killWait is how long Terminate waits for SIGKILLed processes to go.
const killWait = 2 * time.Second

// Proc is a child process started with StartProc and reaped in the
// background.
type Proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// StartProc starts cmd so that it dies with the test process even if the
// caller never stops it (Pdeathsig survives exec chains such as ip →
// unshare → sh → sleep and nsenter → sshd), and reaps it in the background.
func StartProc(cmd *exec.Cmd) (*Proc, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// PID is the process's PID.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended and been reaped.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// PIDRef names a process that is not our child; the start time (jiffies
// since boot) guards against signalling a recycled PID.
type PIDRef struct {
	PID   int
	start string
}

// procStat returns the parent PID, state and start time of pid.
func procStat(pid int) (ppid int, state, start string, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, "", "", err
	}
	// comm may contain spaces and parens; fields resume after the last ')'.
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

// allPIDs lists the numeric entries of /proc.
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

// Descendants returns every live descendant of root (not root itself).
func Descendants(root int) []PIDRef {
	children := map[int][]PIDRef{}
	for _, pid := range allPIDs() {
		ppid, _, start, err := procStat(pid)
		if err == nil {
			children[ppid] = append(children[ppid], PIDRef{pid, start})
		}
	}
	var out []PIDRef
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c.PID)
		}
	}
	return out
}

// MountNSMembers returns every process in the same mount namespace as pid,
// except pid itself: whatever ran "on" a node whose holder is pid.
func MountNSMembers(pid int) []PIDRef {
	want, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
	if err != nil {
		return nil
	}
	var out []PIDRef
	for _, p := range allPIDs() {
		if p == pid {
			continue
		}
		if ns, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(p), "ns", "mnt")); err != nil || ns != want {
			continue
		}
		if _, _, start, err := procStat(p); err == nil {
			out = append(out, PIDRef{p, start})
		}
	}
	return out
}

// Alive reports whether r still runs (zombies count as gone).
func (r PIDRef) Alive() bool {
	_, state, start, err := procStat(r.PID)
	return err == nil && start == r.start && state != "Z"
}

func (r PIDRef) signal(sig syscall.Signal) {
	if r.Alive() {
		syscall.Kill(r.PID, sig)
	}
}

// Terminate stops our children and the other processes by PID: SIGTERM,
// then SIGKILL for whatever still runs after grace (SIGKILL at once when
// grace is 0). It returns an error naming the PIDs that survived even
// SIGKILL.
func Terminate(own []*Proc, others []PIDRef, grace time.Duration) error {
	if grace > 0 {
		for _, p := range own {
			if !p.Exited() {
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
		if !p.Exited() {
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
		if !p.Exited() {
			left = append(left, strconv.Itoa(p.PID()))
		}
	}
	for _, r := range others {
		if r.Alive() {
			left = append(left, strconv.Itoa(r.PID))
		}
	}
	return errors.New("processes survived SIGKILL: " + strings.Join(left, " "))
}

// waitGone polls until every process is gone or the deadline passes.
func waitGone(own []*Proc, others []PIDRef, deadline time.Time) bool {
	for {
		gone := true
		for _, p := range own {
			gone = gone && p.Exited()
		}
		for _, r := range others {
			gone = gone && !r.Alive()
		}
		if gone {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}
