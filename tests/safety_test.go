package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"ocf-csync/tests/cluster"
)

// Paths of the data-safety scenario, in-node. The include root www is a
// mount point: a bind mount of disk, the "data disk", on both nodes. etc is
// a second group that must go on while www is refused.
const (
	safeWWW  = dataDir + "/www"
	safeDisk = dataDir + "/disk"
	safeEtc  = dataDir + "/etc"
)

func (e *env) safetyConfig() string {
	var hosts []string
	for _, n := range e.c.Nodes() {
		hosts = append(hosts, n.Name)
	}
	return fmt.Sprintf(`group www {
	host %[1]s;
	key %[2]s;
	include %[3]s;
}
group etc {
	host %[1]s;
	key %[2]s;
	include %[4]s;
}
ssh {
	identity %[5]s;
	known-hosts %[6]s;
	remote-command "%[7]s serve";
	connect-timeout 5;
}
ha {
	notify "/etc/ocf-csync/notify.sh";
}
`, strings.Join(hosts, " "), keyPath, safeWWW, safeEtc, cluster.ClientKey, cluster.KnownHosts, binary)
}

// inNode runs a shell command on n and fails the test if it fails.
func (e *env) inNode(n *cluster.Node, script string) string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, _, err := n.Run(ctx, "sh", "-ec", script)
	if err != nil {
		e.t.Fatalf("on %s: %v", n.Name, err)
	}
	return out
}

// files counts the regular files below an in-node directory, as the node
// sees it (through its mounts).
func (e *env) files(n *cluster.Node, dir string) int {
	e.t.Helper()
	var c int
	fmt.Sscan(e.inNode(n, "find "+dir+" -type f | wc -l"), &c)
	return c
}

// refused runs sync on n and checks that it fails with a refusal line
// naming want.
func (e *env) refused(n *cluster.Node, want string, args ...string) result {
	e.t.Helper()
	r := e.csync(n, append([]string{"sync"}, args...)...)
	if r.code != 1 || !strings.Contains(r.stderr, "ocf-csync: refused ") || !strings.Contains(r.stderr, want) {
		e.t.Fatalf("sync on %s: want exit 1 and a refusal naming %q:\n%s", n.Name, want, r)
	}
	e.t.Logf("refused as expected: %s", firstLine(r.stderr, "ocf-csync: refused"))
	return r
}

func firstLine(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// agent runs the OCF agent action on n as Pacemaker's executor would.
func (e *env) agent(n *cluster.Node, action string) result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := n.Command(ctx, binary, action)
	cmd.Env = append(cmd.Env, "OCF_ROOT=/usr/lib/ocf", "OCF_RA_VERSION_MAJOR=1", "OCF_RESOURCE_INSTANCE=p_mirror",
		"OCF_RESKEY_config="+cfgPath, "OCF_RESKEY_node="+n.Name, "OCF_RESKEY_CRM_meta_interval=30000",
		"HA_RSCTMP=/run/resource-agents", "HA_LOGFILE=/run/ocf-csync-agent.log")
	var o, er strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &er
	err := cmd.Run()
	r := result{args: []string{action}, stdout: o.String(), stderr: er.String()}
	if cmd.ProcessState != nil {
		r.code = cmd.ProcessState.ExitCode()
	} else if err != nil {
		e.t.Fatalf("agent %s on %s: %v", action, n.Name, err)
	}
	return r
}

// agentStatus is the part of the daemon's status file this test reads.
type agentStatus struct {
	LastSync time.Time `json:"last_sync"`
	Refusals []struct {
		Kind, Path string
	} `json:"refusals"`
}

func (e *env) waitAgent(n *cluster.Node, what string, ok func(agentStatus) bool) {
	e.t.Helper()
	path := n.Path("/run/resource-agents/ocf-csync-p_mirror.status")
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var s agentStatus // fresh each time: fields left out of the JSON stay zero
		if data, err := os.ReadFile(path); err == nil && json.Unmarshal(data, &s) == nil && ok(s) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	data, _ := os.ReadFile(path)
	logs, _ := os.ReadFile(n.Path("/run/ocf-csync-agent.log"))
	e.t.Fatalf("daemon on %s: %s did not happen within 30 s; status file:\n%s\nlog:\n%s", n.Name, what, data, logs)
}

// TestDataSafety is issue 10's acceptance, chained on one 2-node cluster:
// an include root that is an unmounted mount point, a removed root, a
// foreign file system over the root, the daemon with its watcher and the
// OCF monitor, a mass deletion, and a receiver whose data disk is gone.
func TestDataSafety(t *testing.T) {
	e := newEnv(t, 2)
	n1, n2 := e.node(1), e.node(2)
	for _, n := range []*cluster.Node{n1, n2} {
		e.writeFile(n, cfgPath, e.safetyConfig(), 0o644)
		e.writeFile(n, "/etc/ocf-csync/notify.sh", "#!/bin/sh\necho \"$@\" >> /etc/ocf-csync/notify.log\n", 0o755)
		e.inNode(n, fmt.Sprintf("mkdir -p %[1]s %[2]s %[3]s; mount --bind %[2]s %[1]s", safeWWW, safeDisk, safeEtc))
	}
	// 200 files in 10 directories on node1's data disk, 3 in etc.
	for i := range 200 {
		e.writeFile(n1, fmt.Sprintf("%s/d%d/f%03d", safeDisk, i%10, i), fmt.Sprintf("file %d\n", i), 0o644)
	}
	for i := range 3 {
		e.writeFile(n1, fmt.Sprintf("%s/conf%d", safeEtc, i), "conf\n", 0o644)
	}
	e.mustSync(n1)
	if got := e.files(n2, safeWWW); got != 200 {
		t.Fatalf("first sync: node2 has %d files in www, want 200", got)
	}
	want200 := func(step string) {
		t.Helper()
		if got := e.files(n2, safeWWW); got != 200 {
			t.Fatalf("%s: node2 has %d of 200 files left", step, got)
		}
	}

	// 1. The data disk is not mounted: the root is an empty mount point.
	// etc changes meanwhile, and its group goes on.
	e.inNode(n1, "umount "+safeWWW)
	e.writeFile(n1, safeEtc+"/conf0", "changed\n", 0o644)
	r := e.refused(n1, "refused "+safeWWW+" (group www): the include root is on another file system now")
	if !strings.Contains(r.stderr, "run 'ocf-csync accept-root "+safeWWW+"'") {
		t.Errorf("the refusal does not name the override:\n%s", r)
	}
	want200("unmounted data disk")
	if b, _ := os.ReadFile(n2.Path(safeEtc + "/conf0")); string(b) != "changed\n" {
		t.Errorf("the etc group did not go on: conf0 on node2 = %q", b)
	}
	st := e.csync(n1, "status")
	if !strings.Contains(st.stdout, "REFUSED:   1") || !strings.Contains(st.stdout, "refused "+safeWWW) {
		t.Errorf("status does not show the refusal:\n%s", st)
	}
	js := e.csync(n1, "--json", "status")
	if !strings.Contains(js.stdout, `"kind": "root-other-fs"`) {
		t.Errorf("status --json does not show the refusal:\n%s", js)
	}
	if b, _ := os.ReadFile(n1.Path("/etc/ocf-csync/notify.log")); !strings.Contains(string(b), "root-refused node1  refused "+safeWWW) {
		t.Errorf("no root-refused notification:\n%s", b)
	}

	// 2. The root is gone altogether.
	e.inNode(n1, "rmdir "+safeWWW)
	e.refused(n1, "refused "+safeWWW+" (group www): the include root is gone")
	want200("root removed")

	// 3. A different file system with other content over the root.
	e.inNode(n1, fmt.Sprintf("mkdir %[1]s; mount -t tmpfs other %[1]s; echo intruder > %[1]s/intruder", safeWWW))
	e.refused(n1, "the include root is on another file system now: tmpfs")
	want200("tmpfs over the root")
	if out := e.inNode(n2, "ls "+safeWWW); strings.Contains(out, "intruder") {
		t.Error("the tmpfs's content reached node2")
	}

	// 4. The real tree returns: a normal sync, nothing deleted.
	e.inNode(n1, fmt.Sprintf("umount %[1]s; mount --bind %[2]s %[1]s", safeWWW, safeDisk))
	r = e.mustSync(n1)
	want200("tree returned")
	if st := e.csync(n1, "status"); strings.Contains(st.stdout, "REFUSED") {
		t.Errorf("status still shows a refusal:\n%s", st)
	}

	// 5. Under the agent's daemon with the watcher on, the files vanish
	// from the data disk (moved away): the watcher sees the deletions
	// first, and the root guard holds. monitor says 190 and why.
	if r := e.agent(n1, "start"); r.code != 0 {
		t.Fatalf("agent start:\n%s", r)
	}
	t.Cleanup(func() { e.agent(n1, "stop") })
	e.waitAgent(n1, "a first cycle", func(s agentStatus) bool { return !s.LastSync.IsZero() })
	e.inNode(n1, fmt.Sprintf("mkdir -p %[1]s.away; mv %[1]s/* %[1]s.away/", safeDisk))
	e.waitAgent(n1, "a refusal", func(s agentStatus) bool { return len(s.Refusals) > 0 })
	m := e.agent(n1, "monitor")
	if m.code != 190 || !strings.Contains(m.stderr, "ocf-exit-reason:degraded: refused "+safeWWW) {
		t.Errorf("monitor with a refused root: want 190 and the reason:\n%s", m)
	}
	want200("daemon, files moved away")
	e.inNode(n1, fmt.Sprintf("mv %[1]s.away/* %[1]s/; rmdir %[1]s.away", safeDisk))
	e.waitAgent(n1, "the refusal to clear", func(s agentStatus) bool { return len(s.Refusals) == 0 })
	if m := e.agent(n1, "monitor"); m.code != 0 {
		t.Errorf("monitor after the files returned:\n%s", m)
	}
	if r := e.agent(n1, "stop"); r.code != 0 {
		t.Fatalf("agent stop:\n%s", r)
	}
	want200("daemon stopped")

	// 6. rm -rf of 60%: refused; --allow-mass-delete pushes it, once.
	for d := range 6 {
		if err := os.RemoveAll(n1.Path(fmt.Sprintf("%s/d%d", safeDisk, d))); err != nil {
			t.Fatal(err)
		}
	}
	e.refused(n1, "refused "+safeWWW+" (group www): 120 files deleted in one cycle: 60% of the group's 200 files, more than max-delete 50%")
	want200("rm -rf of 60%")
	if b, _ := os.ReadFile(n1.Path("/etc/ocf-csync/notify.log")); !strings.Contains(string(b), "mass-delete-refused node1") {
		t.Errorf("no mass-delete-refused notification:\n%s", b)
	}
	e.mustSync(n1, "--allow-mass-delete")
	if got := e.files(n2, safeWWW); got != 80 {
		t.Fatalf("after --allow-mass-delete node2 has %d files, want 80", got)
	}
	// A small deletion later goes through without a word.
	if err := os.Remove(n1.Path(safeDisk + "/d9/f199")); err != nil {
		t.Fatal(err)
	}
	if r := e.mustSync(n1); r.stderr != "" {
		t.Errorf("a small deletion was not silent:\n%s", r)
	}

	// 7. The receiver's data disk is not mounted: node2 refuses to write
	// into the mount point, which is on its root file system.
	e.inNode(n2, "umount "+safeWWW)
	e.writeFile(n1, safeDisk+"/d9/f189", "changed on node1\n", 0o644)
	e.writeFile(n1, safeDisk+"/new.txt", "new\n", 0o644)
	r = e.csync(n1, "sync")
	if r.code != 1 || !strings.Contains(r.stderr, "refused "+safeWWW+" (group www) by node2: include root refused") &&
		!strings.Contains(r.stderr, "refused "+safeWWW+" (group www) by node2:") {
		t.Fatalf("push to a receiver without its data disk: want exit 1 and node2's refusal:\n%s", r)
	}
	t.Logf("refused by the receiver: %s", firstLine(r.stderr, "ocf-csync: refused"))
	if entries, err := os.ReadDir(n2.Path(safeWWW)); err != nil || len(entries) != 0 {
		t.Errorf("node2's root file system got %d entries below the mount point (%v)", len(entries), err)
	}
	e.inNode(n2, fmt.Sprintf("mount --bind %[2]s %[1]s", safeWWW, safeDisk))
	e.mustSync(n1)
	if b, _ := os.ReadFile(n2.Path(safeDisk + "/new.txt")); string(b) != "new\n" {
		t.Errorf("after node2's disk returned: new.txt = %q", b)
	}
}
