package netns

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestTerminate starts sh with a sleep child: Descendants must find the
// sleep, and Terminate must stop both, with and without a SIGTERM grace.
func TestTerminate(t *testing.T) {
	for _, grace := range []time.Duration{0, time.Second} {
		p, err := StartProc(exec.Command("sh", "-c", "sleep 60 & wait"))
		if err != nil {
			t.Fatalf("start: %v", err)
		}
		var kids []PIDRef
		for deadline := time.Now().Add(5 * time.Second); len(kids) == 0 && time.Now().Before(deadline); {
			kids = Descendants(p.PID())
			time.Sleep(10 * time.Millisecond)
		}
		if len(kids) != 1 || !kids[0].Alive() {
			t.Fatalf("grace %v: Descendants(%d) = %v, want one live sleep", grace, p.PID(), kids)
		}
		if err := Terminate([]*Proc{p}, kids, grace); err != nil {
			t.Fatalf("grace %v: Terminate: %v", grace, err)
		}
		if !p.Exited() || kids[0].Alive() {
			t.Errorf("grace %v: after Terminate sh exited=%v, sleep alive=%v", grace, p.Exited(), kids[0].Alive())
		}
	}
}

// TestProcStat parses /proc/PID/stat of a child whose comm has a space
// and a parenthesis.
func TestProcStat(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("sleep not on PATH")
	}
	// comm is the executable's name: a symlink gives it a space and a ')'.
	odd := filepath.Join(t.TempDir(), "a) b")
	if err := os.Symlink(sleep, odd); err != nil {
		t.Fatal(err)
	}
	p, err := StartProc(exec.Command(odd, "60"))
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	defer Terminate([]*Proc{p}, nil, 0)
	ppid, state, start, err := procStat(p.PID())
	if err != nil || ppid != os.Getpid() || state == "" || state == "Z" || start == "" {
		t.Fatalf("procStat(%d) = ppid %d state %q start %q err %v, want ppid %d and a live state", p.PID(), ppid, state, start, err, os.Getpid())
	}
	if r := (PIDRef{p.PID(), start}); !r.Alive() {
		t.Errorf("PIDRef with the right start time is not alive")
	}
	if r := (PIDRef{p.PID(), start + "0"}); r.Alive() {
		t.Errorf("PIDRef with a wrong start time counts as alive (recycled PID)")
	}
}
