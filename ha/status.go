package ha

import (
	"encoding/xml"
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// ClusterStatus is what `crm_mon --output-as=xml` reports, reduced to what
// the gate and status need.
type ClusterStatus struct {
	DC       string // name of the designated controller, "" when none
	HasDC    bool
	Quorum   bool // <current_dc with_quorum="true">; false without a DC
	Nodes    []NodeStatus
	Resource []ResourceStatus // every primitive, groups and clones flattened
}

// NodeStatus is one <node> of <nodes>.
type NodeStatus struct {
	Name, ID    string
	Online      bool
	Standby     bool
	Maintenance bool
	Pending     bool
	Unclean     bool
	Shutdown    bool
	IsDC        bool
}

// ResourceStatus is one <resource> element. A multiply active primitive is
// one element with NodesRunningOn > 1; a clone has one element per instance.
type ResourceStatus struct {
	ID             string
	Agent          string // "ocf:heartbeat:IPaddr2"
	Role           string // Started, Starting, Stopped, Stopping, Promoted, …
	TargetRole     string
	Active         bool
	Orphaned       bool
	Blocked        bool
	Managed        bool
	Failed         bool
	NodesRunningOn int
	Nodes          []string // where it is active (or pending)
	Group, Clone   string   // enclosing group / clone id, if any
}

// Node returns the node called name, or nil.
func (s *ClusterStatus) Node(name string) *NodeStatus {
	for i := range s.Nodes {
		if s.Nodes[i].Name == name {
			return &s.Nodes[i]
		}
	}
	return nil
}

// OnlineNodes lists the names of the online nodes.
func (s *ClusterStatus) OnlineNodes() []string {
	var out []string
	for _, n := range s.Nodes {
		if n.Online {
			out = append(out, n.Name)
		}
	}
	return out
}

// Placement sums up where resource id is: started lists the nodes where an
// instance is Started (or promoted/unpromoted, i.e. running), other the
// nodes where it is active in any other role (Starting, Stopping, …), and
// multiple is true when it runs on more than one node. found is false when
// crm_mon does not know the resource at all.
func (s *ClusterStatus) Placement(id string) (started, other []string, multiple, found bool) {
	seen := map[string]bool{}
	for _, r := range s.Resource {
		if r.ID != id {
			continue
		}
		found = true
		if r.NodesRunningOn > 1 {
			multiple = true
		}
		for _, n := range r.Nodes {
			seen[n] = true
			if runningRole(r.Role) {
				started = append(started, n)
			} else {
				other = append(other, n)
			}
		}
	}
	if len(seen) > 1 {
		multiple = true
	}
	slices.Sort(started)
	slices.Sort(other)
	return slices.Compact(started), slices.Compact(other), multiple, found
}

// runningRole reports whether a crm_mon role means "up and running" (not a
// pending start or stop).
func runningRole(role string) bool {
	switch role {
	case "Started", "Promoted", "Unpromoted", "Master", "Slave":
		return true
	}
	return false
}

// XML shapes of crm_mon --output-as=xml (api-version 2.x).
type xmlResult struct {
	XMLName xml.Name `xml:"pacemaker-result"`
	Summary struct {
		DC *struct {
			Present    string `xml:"present,attr"`
			Name       string `xml:"name,attr"`
			WithQuorum string `xml:"with_quorum,attr"`
		} `xml:"current_dc"`
	} `xml:"summary"`
	Nodes struct {
		Node []struct {
			Name        string `xml:"name,attr"`
			ID          string `xml:"id,attr"`
			Online      string `xml:"online,attr"`
			Standby     string `xml:"standby,attr"`
			Maintenance string `xml:"maintenance,attr"`
			Pending     string `xml:"pending,attr"`
			Unclean     string `xml:"unclean,attr"`
			Shutdown    string `xml:"shutdown,attr"`
			IsDC        string `xml:"is_dc,attr"`
		} `xml:"node"`
	} `xml:"nodes"`
	Resources *xmlResList `xml:"resources"`
	Status    *struct {
		Code    int      `xml:"code,attr"`
		Message string   `xml:"message,attr"`
		Errors  []string `xml:"errors>error"`
	} `xml:"status"`
}

type xmlResList struct {
	Resource []xmlResource `xml:"resource"`
	Group    []struct {
		ID string `xml:"id,attr"`
		xmlResList
	} `xml:"group"`
	Clone []struct {
		ID string `xml:"id,attr"`
		xmlResList
	} `xml:"clone"`
	Bundle []struct {
		ID      string `xml:"id,attr"`
		Replica []struct {
			Resource []xmlResource `xml:"resource"`
		} `xml:"replica"`
	} `xml:"bundle"`
}

type xmlResource struct {
	ID             string `xml:"id,attr"`
	Agent          string `xml:"resource_agent,attr"`
	Role           string `xml:"role,attr"`
	TargetRole     string `xml:"target_role,attr"`
	Active         string `xml:"active,attr"`
	Orphaned       string `xml:"orphaned,attr"`
	Blocked        string `xml:"blocked,attr"`
	Managed        string `xml:"managed,attr"`
	Failed         string `xml:"failed,attr"`
	NodesRunningOn string `xml:"nodes_running_on,attr"`
	Node           []struct {
		Name string `xml:"name,attr"`
	} `xml:"node"`
}

// errNoStatus marks crm_mon output that is a <pacemaker-result> with a
// failure status and no cluster data.
var errNoStatus = errors.New("crm_mon reported no cluster status")

// StatusError is crm_mon's own failure report (<status code= message=>).
type StatusError struct {
	Code    int
	Message string
	Errors  []string
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("crm_mon: %s (code %d)", e.Message, e.Code)
	for _, m := range e.Errors {
		s += "; " + m
	}
	return s
}

func (e *StatusError) Unwrap() error {
	if e.Code == crmNotConnected {
		return ErrNotRunning
	}
	return errNoStatus
}

// crmNotConnected is CRM_EX_DISCONNECT: the cluster is not running here.
const crmNotConnected = 102

// ParseStatus decodes `crm_mon --output-as=xml` output. A result carrying a
// non-zero <status> code is returned as a *StatusError (matching
// ErrNotRunning for "Not connected").
func ParseStatus(data []byte) (*ClusterStatus, error) {
	var x xmlResult
	if err := xml.Unmarshal(data, &x); err != nil {
		return nil, fmt.Errorf("parse crm_mon XML: %w", err)
	}
	if x.Status != nil && x.Status.Code != 0 {
		return nil, &StatusError{Code: x.Status.Code, Message: x.Status.Message, Errors: x.Status.Errors}
	}
	s := &ClusterStatus{}
	if dc := x.Summary.DC; dc != nil && isTrue(dc.Present) {
		s.HasDC, s.DC, s.Quorum = true, dc.Name, isTrue(dc.WithQuorum)
	}
	for _, n := range x.Nodes.Node {
		s.Nodes = append(s.Nodes, NodeStatus{
			Name: n.Name, ID: n.ID, Online: isTrue(n.Online), Standby: isTrue(n.Standby),
			Maintenance: isTrue(n.Maintenance), Pending: isTrue(n.Pending), Unclean: isTrue(n.Unclean),
			Shutdown: isTrue(n.Shutdown), IsDC: isTrue(n.IsDC),
		})
	}
	if x.Resources != nil {
		if err := s.addResources(x.Resources, "", ""); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *ClusterStatus) addResources(l *xmlResList, group, clone string) error {
	for _, r := range l.Resource {
		if err := s.addResource(r, group, clone); err != nil {
			return err
		}
	}
	for i := range l.Group {
		if err := s.addResources(&l.Group[i].xmlResList, l.Group[i].ID, clone); err != nil {
			return err
		}
	}
	for i := range l.Clone {
		if err := s.addResources(&l.Clone[i].xmlResList, group, l.Clone[i].ID); err != nil {
			return err
		}
	}
	for _, b := range l.Bundle {
		for _, rep := range b.Replica {
			for _, r := range rep.Resource {
				if err := s.addResource(r, group, b.ID); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (s *ClusterStatus) addResource(r xmlResource, group, clone string) error {
	n, err := strconv.Atoi(r.NodesRunningOn)
	if r.NodesRunningOn == "" {
		n, err = len(r.Node), nil
	}
	if err != nil || n < 0 {
		return fmt.Errorf("parse crm_mon XML: resource %q has nodes_running_on=%q", r.ID, r.NodesRunningOn)
	}
	rs := ResourceStatus{
		ID: r.ID, Agent: r.Agent, Role: r.Role, TargetRole: r.TargetRole,
		Active: isTrue(r.Active), Orphaned: isTrue(r.Orphaned), Blocked: isTrue(r.Blocked),
		Managed: isTrue(r.Managed), Failed: isTrue(r.Failed), NodesRunningOn: n,
		Group: group, Clone: clone,
	}
	for _, nd := range r.Node {
		rs.Nodes = append(rs.Nodes, nd.Name)
	}
	s.Resource = append(s.Resource, rs)
	return nil
}

// isTrue reads Pacemaker's XML booleans.
func isTrue(s string) bool {
	switch s {
	case "true", "1", "yes", "on", "TRUE", "True":
		return true
	}
	return false
}
