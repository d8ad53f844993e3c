package ha

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestCLIOnCIBFile drives the CLI adapter against a CIB file (CIB_file=),
// which crm_attribute, cibadmin and crm_mon accept in place of a running
// cluster.
func TestCLIOnCIBFile(t *testing.T) {
	for _, tool := range []string{"cibadmin", "crm_attribute", "crm_mon"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (pacemaker-cli-utils): %v", tool, err)
		}
	}
	ctx := context.Background()
	cib := filepath.Join(t.TempDir(), "cib.xml")
	empty, err := exec.Command("cibadmin", "--empty").Output()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cib, empty, 0o600); err != nil {
		t.Fatal(err)
	}
	c := &CLI{Env: []string{"CIB_file=" + cib}}
	setup := func(args ...string) {
		t.Helper()
		if _, err := c.run(ctx, "cibadmin", args...); err != nil {
			t.Fatal(err)
		}
	}
	setup("-C", "-o", "nodes", "-X", `<node id="1" uname="node1"/>`)
	setup("-C", "-o", "nodes", "-X", `<node id="2" uname="node2"/>`)
	setup("-C", "-o", "resources", "-X", `<group id="g"><primitive id="p_vip" class="ocf" provider="heartbeat" type="IPaddr2">`+
		`<instance_attributes id="ia"><nvpair id="ip" name="ip" value="10.9.8.7"/></instance_attributes></primitive></group>`)

	if _, ok, err := c.GetNodeAttribute(ctx, "node1", EpochAttribute, Forever); ok || err != nil {
		t.Errorf("unset attribute: ok %v err %v", ok, err)
	}
	if err := c.SetNodeAttribute(ctx, "node1", EpochAttribute, "4", Forever); err != nil {
		t.Fatal(err)
	}
	if err := c.SetNodeAttribute(ctx, "node2", EpochAttribute, "7", Forever); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := c.GetNodeAttribute(ctx, "node2", EpochAttribute, Forever); v != "7" || !ok || err != nil {
		t.Errorf("GetNodeAttribute = %q, %v, %v; want 7", v, ok, err)
	}
	m, err := c.NodeAttributes(ctx, EpochAttribute)
	if err != nil || len(m) != 2 || m["node1"] != "4" || m["node2"] != "7" {
		t.Errorf("NodeAttributes = %v, %v", m, err)
	}
	if err := c.SetNodeAttribute(ctx, "node1", "x", "1", "sometimes"); err == nil {
		t.Error("bad lifetime accepted")
	}
	for ip, want := range map[string]string{"10.9.8.7": "p_vip", "10.9.8.7/24": "p_vip", "10.9.8.8": ""} {
		if got, err := c.ResourceForIP(ctx, ip); got != want || err != nil {
			t.Errorf("ResourceForIP(%s) = %q, %v; want %q", ip, got, err, want)
		}
	}
	s, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Nodes) != 2 || s.HasDC {
		t.Errorf("status of the CIB file: %+v", s)
	}
}

// TestCLINoCluster: without a cluster the adapter says ErrNotRunning (and
// crm_mon says so at once, not after a timeout).
func TestCLINoCluster(t *testing.T) {
	if _, err := exec.LookPath("crm_mon"); err != nil {
		t.Skipf("crm_mon not installed: %v", err)
	}
	c := NewCLI()
	_, err := c.Status(context.Background())
	if err == nil {
		t.Skip("a Pacemaker cluster runs on this host; the no-cluster path cannot be tested here")
	}
	if !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Status without a cluster: %v; want ErrNotRunning", err)
	}
	if _, err := c.NodeName(context.Background()); !errors.Is(err, ErrNotRunning) {
		t.Errorf("NodeName without a cluster: %v; want ErrNotRunning", err)
	}
	if _, err := (&CLI{}).run(context.Background(), "crm_no_such_tool"); !errors.Is(err, ErrNotRunning) {
		t.Errorf("missing tool: %v; want ErrNotRunning", err)
	}
}
