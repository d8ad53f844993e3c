package ra

import (
	"bytes"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

type metaXML struct {
	Name      string `xml:"name,attr"`
	Version   string `xml:"version"`
	Longdesc  string `xml:"longdesc"`
	Shortdesc string `xml:"shortdesc"`
	Params    []struct {
		Name      string `xml:"name,attr"`
		Required  string `xml:"required,attr"`
		Longdesc  string `xml:"longdesc"`
		Shortdesc string `xml:"shortdesc"`
		Content   struct {
			Type    string  `xml:"type,attr"`
			Default *string `xml:"default,attr"`
		} `xml:"content"`
	} `xml:"parameters>parameter"`
	Actions []struct {
		Name     string `xml:"name,attr"`
		Timeout  string `xml:"timeout,attr"`
		Interval string `xml:"interval,attr"`
		Depth    string `xml:"depth,attr"`
	} `xml:"actions>action"`
}

func metaData(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteMetaData(&b, "mirror"); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestMetaDataContent(t *testing.T) {
	var m metaXML
	if err := xml.Unmarshal(metaData(t), &m); err != nil {
		t.Fatal(err)
	}
	if m.Name != "mirror" || m.Version != "1.1" || m.Longdesc == "" || m.Shortdesc == "" {
		t.Errorf("agent header: name %q version %q", m.Name, m.Version)
	}
	want := []string{"config", "cluster_ip", "ip_resource", "node", "state_dir", "failover_policy", "stranded",
		"notify", "rescan_interval", "final_sync_margin", "unreachable_threshold", "ocf_csync_binary"}
	if len(m.Params) != len(want) {
		t.Fatalf("%d parameters, want %d", len(m.Params), len(want))
	}
	for i, p := range m.Params {
		if p.Name != want[i] {
			t.Errorf("parameter %d is %q, want %q", i, p.Name, want[i])
		}
		if p.Longdesc == "" || p.Shortdesc == "" || p.Content.Default == nil || p.Content.Type == "" {
			t.Errorf("parameter %s lacks a description, type or default", p.Name)
		}
		if (p.Name == "config") != (p.Required == "1") {
			t.Errorf("parameter %s required=%q", p.Name, p.Required)
		}
	}
	wantActions := map[string]string{"start": "60s", "stop": "300s", "monitor": "30s", "validate-all": "30s",
		"meta-data": "5s", "notify": "30s", "status": "30s"}
	seen := map[string]bool{}
	for _, a := range m.Actions {
		seen[a.Name] = true
		if a.Timeout != wantActions[a.Name] {
			t.Errorf("action %s timeout %q, want %q", a.Name, a.Timeout, wantActions[a.Name])
		}
		if a.Name == "monitor" && (a.Interval != "30s" || a.Depth != "0") {
			t.Errorf("monitor interval %q depth %q", a.Interval, a.Depth)
		}
	}
	if len(seen) != len(wantActions) {
		t.Errorf("actions %v, want %v", seen, wantActions)
	}
}

// xmllint checks the meta-data as ocf-tester does: on stdin, in dir, where a
// DOCTYPE's relative "ra-api-1.dtd" resolves.
func xmllint(t *testing.T, dir string, args ...string) {
	t.Helper()
	path, err := exec.LookPath("xmllint")
	if err != nil {
		t.Skip("xmllint not installed (Debian package libxml2-utils)")
	}
	cmd := exec.Command(path, append(append([]string{"--noout"}, args...), "-")...)
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(metaData(t))
	out, err := cmd.CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("error")) || bytes.Contains(out, []byte("warning")) {
		t.Fatalf("xmllint %v: %v\n%s", args, err, out)
	}
}

// The OCF 1.0 DTD is what ocf-tester checks with (xmllint --valid, run in
// /usr/share/resource-agents); testdata holds a copy.
func TestMetaDataDTD(t *testing.T) {
	xmllint(t, "testdata", "--valid")
}

// The same against the copy resource-agents installs, when it is there.
func TestMetaDataSystemDTD(t *testing.T) {
	const dir = "/usr/share/resource-agents"
	if _, err := os.Stat(filepath.Join(dir, "ra-api-1.dtd")); err != nil {
		t.Skip("resource-agents' ra-api-1.dtd is not installed")
	}
	xmllint(t, dir, "--valid")
}

// OCF 1.1's RelaxNG schema (OCF-spec ra/1.1/ra-api.rng, copied to testdata).
func TestMetaDataRelaxNG(t *testing.T) {
	abs, err := filepath.Abs("testdata/ra-api-1.1.rng")
	if err != nil {
		t.Fatal(err)
	}
	xmllint(t, "testdata", "--relaxng", abs)
}
