package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"ocf-csync/ra"
)

// TestOCF runs the agent as Pacemaker, ocf-tester and heartbeat do: a real
// binary called through a link named "mirror". testscript.Main's table in
// main_test.go has no "mirror" entry (the test binary called as mirror
// would run the tests), so this test builds the binary, or takes
// $OCF_CSYNC_BIN as make test passes it.
func TestOCF(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and starts daemons; not in -short")
	}
	bin := agentBinary(t)
	t.Run("script", func(t *testing.T) {
		testscript.Run(t, testscript.Params{
			Dir:                 "testdata/ocf",
			RequireExplicitExec: true,
			Setup: func(e *testscript.Env) error {
				e.Setenv("PATH", filepath.Dir(bin)+string(os.PathListSeparator)+e.Getenv("PATH"))
				rsc := filepath.Join(e.WorkDir, "rsc")
				e.Setenv("HA_RSCTMP", rsc)
				// A script that fails half-way must not leave its daemon.
				e.Defer(func() { killDaemons(rsc) })
				return writeTestKeys(e.WorkDir)
			},
			Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
				"exitcode":   cmdExitcode,
				"envsubst":   cmdEnvsubst,
				"waitfor":    cmdWaitfor,
				"killdaemon": cmdKillDaemon,
				"sleep": func(ts *testscript.TestScript, neg bool, args []string) {
					if neg || len(args) != 1 {
						ts.Fatalf("usage: sleep duration")
					}
					d, err := time.ParseDuration(args[0])
					ts.Check(err)
					time.Sleep(d)
				},
			},
		})
	})
	t.Run("pacemaker", func(t *testing.T) { testPacemaker(t, bin) })
}

// agentBinary copies $OCF_CSYNC_BIN, or builds ./cmd/ocf-csync, into a
// world-readable directory (ocf-tester runs meta-data as nobody) next to a
// "mirror" link.
func agentBinary(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ocf-csync-agent-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "ocf-csync")
	if src := os.Getenv("OCF_CSYNC_BIN"); src != "" {
		if err := copyFile(src, bin); err != nil {
			t.Fatal(err)
		}
	} else {
		goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
		out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput()
		if err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
	}
	if err := os.Symlink("ocf-csync", filepath.Join(dir, "mirror")); err != nil {
		t.Fatal(err)
	}
	return bin
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// writeTestKeys creates the group key, an SSH identity and known_hosts in
// dir: validate-all checks they exist; the only peer is unreachable.
func writeTestKeys(dir string) error {
	files := map[string]string{
		"g.key":       "ocfcsynctestkeyocfcsynctestkeyocfcsynctestkeyocfcsynctestkey0123\n",
		"known_hosts": "",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			return err
		}
	}
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ocf-test", "-f", filepath.Join(dir, "id")).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ssh-keygen: %v: %s", err, out)
	}
	return os.MkdirAll(filepath.Join(dir, "data"), 0o755)
}

// cmdWaitfor polls until a file's content matches a regexp:
// waitfor FILE REGEXP [SECONDS] (10 s by default).
func cmdWaitfor(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: waitfor file regexp [seconds]")
	}
	re, err := regexp.Compile(args[1])
	ts.Check(err)
	limit := 10 * time.Second
	if len(args) == 3 {
		d, err := time.ParseDuration(args[2] + "s")
		ts.Check(err)
		limit = d
	}
	end := time.Now().Add(limit)
	for {
		data, _ := os.ReadFile(ts.MkAbs(args[0]))
		if re.Match(data) {
			return
		}
		if time.Now().After(end) {
			ts.Fatalf("%s did not match %q within %v; it holds:\n%s", args[0], args[1], limit, data)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cmdKillDaemon SIGKILLs the daemon named in an agent state file, as a
// crash would: killdaemon STATEFILE.
func cmdKillDaemon(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: killdaemon statefile")
	}
	s, err := ra.ReadState(ts.MkAbs(args[0]))
	ts.Check(err)
	ts.Check(syscall.Kill(s.Pid, syscall.SIGKILL))
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.Pid)); err != nil || strings.Contains(string(data), ") Z ") {
			return
		}
	}
	ts.Fatalf("daemon %d survived SIGKILL", s.Pid)
}

// killDaemons SIGKILLs every daemon a state file in rsc names.
func killDaemons(rsc string) {
	files, _ := filepath.Glob(filepath.Join(rsc, "*.state"))
	for _, f := range files {
		if s, err := ra.ReadState(f); err == nil && s.Pid > 0 {
			syscall.Kill(s.Pid, syscall.SIGKILL)
		}
	}
}

const ocfDir = "/usr/lib/ocf/resource.d/csync"

// testPacemaker drives the agent through Pacemaker's own executor without
// a cluster (crm_resource --force-*) and through ocf-tester. Both look for
// the agent at /usr/lib/ocf/resource.d/csync/mirror, so the test links it
// there and restores whatever was there before.
func testPacemaker(t *testing.T, bin string) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to link the agent into /usr/lib/ocf/resource.d")
	}
	for _, tool := range []string{"crm_resource", "ocf-tester"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (Debian packages pacemaker-cli-utils, resource-agents)", tool)
		}
	}
	link := filepath.Join(ocfDir, "mirror")
	installAgentLink(t, link, bin)

	work := t.TempDir()
	if err := os.Chmod(work, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeTestKeys(work); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killDaemons(filepath.Join(work, "rsc")) })
	cfg := filepath.Join(work, "m.cfg")
	if err := os.WriteFile(cfg, []byte(testConfig(work)), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := map[string]string{"config": cfg, "node": "node1", "state_dir": filepath.Join(work, "state")}
	env := append(os.Environ(), "HA_RSCTMP="+filepath.Join(work, "rsc"))
	run := func(name string, args ...string) (int, string) {
		cmd := exec.Command(name, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			return ee.ExitCode(), string(out)
		case err != nil:
			t.Fatalf("%s: %v", name, err)
		}
		return 0, string(out)
	}
	crm := func(op string, o map[string]string) (int, string) {
		args := []string{op, "--class", "ocf", "--provider", "csync", "--agent", "mirror"}
		for k, v := range o {
			args = append(args, "--option", k+"="+v)
		}
		return run("crm_resource", args...)
	}

	steps := []struct {
		op   string
		want int
	}{
		{"--validate", 0},
		{"--force-check", 7},
		{"--force-start", 0},
		{"--force-check", 0},
		{"--force-start", 0},
		{"--force-stop", 0},
		{"--force-check", 7},
		{"--force-stop", 0},
	}
	for _, s := range steps {
		if rc, out := crm(s.op, opts); rc != s.want {
			t.Fatalf("crm_resource %s: rc %d, want %d\n%s", s.op, rc, s.want, out)
		}
	}

	// A broken config: 6 with the file:line:col reason, as crm_mon would show it.
	bad := filepath.Join(work, "bad.cfg")
	if err := os.WriteFile(bad, []byte("group g {\n\thost node1\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rc, out := crm("--validate", map[string]string{"config": bad, "node": "node1"})
	if rc != 6 || !strings.Contains(out, "ocf-exit-reason:invalid config: "+bad+":3:1:") {
		t.Errorf("validate with a broken config: rc %d, want 6 and a file:line:col reason\n%s", rc, out)
	}
	// Missing on this host: 5.
	rc, out = crm("--validate", map[string]string{"config": filepath.Join(work, "none.cfg"), "node": "node1"})
	if rc != 5 || !strings.Contains(out, "not installed") {
		t.Errorf("validate with a missing config: rc %d, want 5\n%s", rc, out)
	}

	args := []string{"-n", "t1"}
	for k, v := range opts {
		args = append(args, "-o", k+"="+v)
	}
	rc, out = run("ocf-tester", append(args, link)...)
	if rc != 0 || !strings.Contains(out, link+" passed all tests") {
		t.Errorf("ocf-tester: rc %d\n%s", rc, out)
	}
	t.Logf("ocf-tester:\n%s", out)
	if _, err := os.Stat(filepath.Join(work, "rsc", "ocf-csync-t1.state")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ocf-tester left the agent started: %v", err)
	}
}

// installAgentLink points link at bin, creating its directory if needed,
// and undoes exactly that at cleanup.
func installAgentLink(t *testing.T, link, bin string) {
	lockAgentLink(t)
	t.Helper()
	old, err := os.Readlink(link)
	switch {
	case err == nil:
		t.Cleanup(func() { os.Remove(link); os.Symlink(old, link) })
	case errors.Is(err, os.ErrNotExist):
		if _, err := os.Stat(ocfDir); errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(ocfDir, 0o755); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Remove(ocfDir) })
		}
		t.Cleanup(func() { os.Remove(link) })
	default:
		t.Skipf("%s exists and is not a link (%v); not replacing it", link, err)
	}
	// Cleanups run last-in first-out: the link goes before its directory.
	tmp := link + ".ocf-test"
	if err := os.Symlink(bin, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		t.Fatal(err)
	}
}

// testConfig is a group of this node and one peer that refuses connections
// (port 1 on loopback), so start, monitor and stop work on one machine.
func testConfig(dir string) string {
	return fmt.Sprintf(`group g {
	host node1 node2@127.0.0.1;
	key %[1]s/g.key;
	include %[1]s/data;
}
ssh {
	port 1;
	identity %[1]s/id;
	known-hosts %[1]s/known_hosts;
	connect-timeout 2;
}
`, dir)
}

// lockAgentLink serializes the test packages that install the agent at
// /usr/lib/ocf/resource.d/csync/mirror (go test runs packages in
// parallel); the lock is released when the test ends.
func lockAgentLink(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile("/run/ocf-csync-agent-link.lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatalf("open agent link lock: %v", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("lock agent link: %v", err)
	}
	t.Cleanup(func() { f.Close() })
}
