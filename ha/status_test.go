package ha

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// The samples in testdata were captured from the 2- and 3-node clusters of
// tests/pcmk (Pacemaker 2.1.5, crm_mon api-version 2.25) and from crm_mon
// on a host without a cluster.
func TestParseStatusSamples(t *testing.T) {
	tests := []struct {
		file           string
		dc             string
		quorum         bool
		online         []string
		res            string
		started, other []string
		multiple       bool
	}{
		{file: "idle", dc: "node2", quorum: true, online: []string{"node1", "node2"}, res: "vip"},
		{file: "vip-started", dc: "node2", quorum: true, online: []string{"node1", "node2"}, res: "vip", started: []string{"node1"}},
		// node1's half of a 2-node split brain: two_node keeps quorum.
		{file: "partition-node1", dc: "node1", quorum: true, online: []string{"node1"}, res: "vip", started: []string{"node1"}},
		// After the merge: one element, nodes_running_on=2, role Stopping.
		{file: "multiple-active", dc: "node2", quorum: true, online: []string{"node1", "node2"}, res: "vip", other: []string{"node1", "node2"}, multiple: true},
		{file: "starting", dc: "node1", quorum: true, online: []string{"node1", "node2", "node3"}, res: "slow", other: []string{"node3"}},
		{file: "no-quorum", dc: "node3", quorum: false, online: []string{"node3"}, res: "slow", started: []string{"node3"}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", "crm_mon-"+tc.file+".xml"))
			if err != nil {
				t.Fatal(err)
			}
			s, err := ParseStatus(data)
			if err != nil {
				t.Fatal(err)
			}
			if !s.HasDC || s.DC != tc.dc || s.Quorum != tc.quorum {
				t.Errorf("DC %q (has %v) quorum %v, want %q, %v", s.DC, s.HasDC, s.Quorum, tc.dc, tc.quorum)
			}
			if got := s.OnlineNodes(); !slices.Equal(got, tc.online) {
				t.Errorf("online %v, want %v", got, tc.online)
			}
			started, other, multiple, found := s.Placement(tc.res)
			wantFound := tc.file != "idle"
			if found != wantFound || !slices.Equal(started, tc.started) || !slices.Equal(other, tc.other) || multiple != tc.multiple {
				t.Errorf("Placement(%s) = %v, %v, multiple %v, found %v; want %v, %v, %v, %v",
					tc.res, started, other, multiple, found, tc.started, tc.other, tc.multiple, wantFound)
			}
		})
	}
}

func TestParseStatusNotConnected(t *testing.T) {
	data, err := os.ReadFile("testdata/crm_mon-not-connected.xml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = ParseStatus(data)
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 102 || !errors.Is(err, ErrNotRunning) {
		t.Fatalf("err = %v, want a StatusError 102 matching ErrNotRunning", err)
	}
}

func TestParseStatusShapes(t *testing.T) {
	// Groups and clones are flattened; a clone's instances on two nodes are
	// multiple, which Placement reports (callers only ask it about the IP
	// primitive).
	doc := `<pacemaker-result api-version="2.25"><summary><current_dc present="true" name="a" with_quorum="true"/></summary>
<nodes><node name="a" online="true"/><node name="b" online="true"/></nodes>
<resources>
 <group id="g" number_resources="2"><resource id="vip" role="Started" active="true" nodes_running_on="1"><node name="a"/></resource>
  <resource id="mirror" role="Starting" active="true" nodes_running_on="1"><node name="a"/></resource></group>
 <clone id="c"><resource id="d" role="Started" nodes_running_on="1"><node name="a"/></resource><resource id="d" role="Started" nodes_running_on="1"><node name="b"/></resource></clone>
</resources><status code="0" message="OK"/></pacemaker-result>`
	s, err := ParseStatus([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Resource) != 4 || s.Resource[0].Group != "g" || s.Resource[2].Clone != "c" {
		t.Fatalf("resources %+v", s.Resource)
	}
	if st, _, multi, _ := s.Placement("vip"); !slices.Equal(st, []string{"a"}) || multi {
		t.Errorf("vip: %v multiple %v", st, multi)
	}
	if _, other, _, _ := s.Placement("mirror"); !slices.Equal(other, []string{"a"}) {
		t.Errorf("mirror pending on %v, want a", other)
	}
	if st, _, multi, _ := s.Placement("d"); !slices.Equal(st, []string{"a", "b"}) || !multi {
		t.Errorf("clone d: %v multiple %v", st, multi)
	}
	for _, bad := range []string{"<pacemaker-result", `<pacemaker-result><resources><resource id="x" nodes_running_on="-1"/></resources></pacemaker-result>`} {
		if _, err := ParseStatus([]byte(bad)); err == nil {
			t.Errorf("ParseStatus(%q) succeeded", bad)
		}
	}
}
