package tests

import (
	"context"
	"strings"
	"testing"
	"time"

	"ocf-csync/tests/pcmk"
)

// TestHACrmConfigure configures the agent the way the README shows, with
// crmsh, and checks that crm_mon reports it Started next to its IP, with
// the csync-* node attributes the daemon publishes.
func TestHACrmConfigure(t *testing.T) {
	pcmk.RequireRoot(t)
	installAgent(t)
	c := pcmk.New(t, pcmk.Options{Nodes: 2, SSHD: true})
	e := &haEnv{t: t, c: c, vip: c.SubnetPrefix() + ".100"}
	key := groupKey(7)
	o := haOpts{rescan: 600}
	for _, n := range c.Nodes() {
		e.write(n, haCfg, e.configText(o), 0o644)
		e.write(n, haKey, key+"\n", 0o600)
		e.write(n, haNotify, "#!/bin/sh\n", 0o755)
	}
	n1 := c.Node(1)
	for _, args := range [][]string{
		{"configure", "primitive", "vip", "ocf:heartbeat:IPaddr2", "params", "ip=" + e.vip, "cidr_netmask=24", "nic=eth0", "op", "monitor", "interval=10s"},
		{"configure", "primitive", "p_mirror", "ocf:csync:mirror", "params", "config=" + haCfg, "cluster_ip=" + e.vip,
			"op", "monitor", "interval=30s", "op", "stop", "timeout=300s"},
		{"configure", "group", "g", "vip", "p_mirror"},
	} {
		r := e.run(n1, "crm", args...)
		t.Logf("# crm %s\n%s", strings.Join(args, " "), r.stdout+r.stderr)
		if r.code != 0 {
			t.Fatalf("crm %s failed:\n%s", strings.Join(args, " "), r)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), haWait)
	defer cancel()
	var mon string
	for ctx.Err() == nil {
		out, _, _ := n1.Run(ctx, "crm_mon", "-1", "-A", "-r")
		mon = out
		if strings.Contains(out, "p_mirror") && strings.Count(out, "Started") >= 2 && strings.Count(out, "csync-pending") >= 2 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("# crm_mon -1 -A -r\n%s", mon)
	for _, want := range []string{"p_mirror\t(ocf:csync:mirror):\t Started", "csync-epoch", "csync-pending", "csync-conflicts"} {
		if !strings.Contains(mon, want) {
			t.Errorf("crm_mon does not show %q:\n%s", want, mon)
		}
	}
	act := c.Node(1)
	if strings.Contains(mon, "p_mirror\t(ocf:csync:mirror):\t Started node2") {
		act = c.Node(2)
	}
	r := e.csync(act, "status")
	t.Logf("# ocf-csync status (on %s)\n%s", act.Name, r.stdout)
	if !strings.Contains(r.stdout, "role:      active") {
		t.Errorf("status on the active node %s:\n%s", act.Name, r)
	}
}
