// Package ha is ocf-csync's cluster awareness: whether this node is the
// active one (the gate), epochs and handoff records, the failover decision
// and the notify hook. Pacemaker is reached through the Pacemaker
// interface; the CLI adapter drives crm_mon, crm_node, crm_attribute and
// cibadmin.
package ha

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"ocf-csync/syncer/config"
)

// Decision is the gate's answer and why.
type Decision struct {
	Active bool
	// Reason says why, in words for `-v` and status.
	Reason string
	// Node is this node's name ("" when no Pacemaker was asked).
	Node string
	// IPHolder is where the IP resource runs per crm_mon (comma-separated
	// when several), or this node when only the local interfaces were
	// checked and the IP is here; "" when unknown or nowhere.
	IPHolder string
	// Quorum is the partition's quorum per crm_mon; false without
	// Pacemaker.
	Quorum bool
	// MultipleActive is set when the IP resource is active on more than
	// one node (split brain): nobody may push.
	MultipleActive   bool
	PacemakerPresent bool
	// Gated is false when no cluster-ip or ip-resource is configured: then
	// every node is active, as with csync2.
	Gated bool
}

// Gate answers "am I the active node?" at the moment of asking.
type Gate struct {
	ClusterIP  string // address, optionally with /prefix
	IPResource string // Pacemaker resource id
	Pacemaker  Pacemaker
	// LocalAddrs lists this host's interface addresses; nil means
	// net.InterfaceAddrs (tests replace it).
	LocalAddrs func() ([]net.Addr, error)
	Log        *slog.Logger // nil: no logging
}

// NewGate builds the gate for an ha block; pcmk nil means the CLI adapter.
func NewGate(h config.HA, pcmk Pacemaker, log *slog.Logger) *Gate {
	if pcmk == nil {
		pcmk = NewCLI()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Gate{ClusterIP: h.ClusterIP, IPResource: h.IPResource, Pacemaker: pcmk, Log: log}
}

// Active decides whether this node may push now. Every rule must hold:
//   - with neither ClusterIP nor IPResource there is no gate: active;
//   - ClusterIP: the address is on a local interface;
//   - IPResource: crm_mon shows it Started on this node (a pending
//     "Starting" does not count) and nowhere else;
//   - when Pacemaker answers: the partition has a DC and quorum, and the IP
//     resource (IPResource, or the primitive whose ip is ClusterIP) is
//     Started here and not active on more than one node.
//
// On error the decision is "not active" with the error in Reason as well.
func (g *Gate) Active(ctx context.Context) (Decision, error) {
	if g.ClusterIP == "" && g.IPResource == "" {
		return Decision{Active: true, Reason: "no cluster-ip or ip-resource configured: every node pushes"}, nil
	}
	d := Decision{Gated: true}
	fail := func(err error) (Decision, error) {
		d.Active = false
		d.Reason = err.Error()
		return d, err
	}

	var ipLocal bool
	if g.ClusterIP != "" {
		ip := net.ParseIP(bareIP(g.ClusterIP))
		if ip == nil {
			return fail(fmt.Errorf("cluster-ip %q is not an IP address", g.ClusterIP))
		}
		local, err := g.hasAddr(ip)
		if err != nil {
			return fail(err)
		}
		ipLocal = local
	}

	pcmk := g.Pacemaker
	if pcmk == nil {
		pcmk = NewCLI()
	}
	st, err := pcmk.Status(ctx)
	switch {
	case errors.Is(err, ErrNotRunning):
		if g.IPResource != "" {
			d.Reason = fmt.Sprintf("ip-resource %s is configured but Pacemaker is not running here: standby", g.IPResource)
			return d, nil
		}
		d.Active = ipLocal
		if ipLocal {
			d.IPHolder = "local"
			d.Reason = fmt.Sprintf("cluster IP %s is on a local interface (no Pacemaker here)", g.ClusterIP)
		} else {
			d.Reason = fmt.Sprintf("cluster IP %s is not on a local interface (no Pacemaker here): standby", g.ClusterIP)
		}
		return d, nil
	case err != nil:
		return fail(fmt.Errorf("ask Pacemaker whether this node is active: %w", err))
	}
	d.PacemakerPresent = true
	d.Quorum = st.Quorum
	node, err := pcmk.NodeName(ctx)
	if err != nil {
		return fail(fmt.Errorf("ask Pacemaker for this node's name: %w", err))
	}
	d.Node = node

	res := g.IPResource
	if res == "" {
		if res, err = pcmk.ResourceForIP(ctx, g.ClusterIP); err != nil {
			return fail(err)
		}
	}
	var started, other []string
	found := false
	if res != "" {
		started, other, d.MultipleActive, found = st.Placement(res)
		d.IPHolder = strings.Join(started, ",")
	} else if ipLocal {
		d.IPHolder = node
	}

	switch {
	case !st.HasDC:
		d.Reason = "Pacemaker has no DC (partition still forming): standby"
	case !st.Quorum:
		d.Reason = "this partition has no quorum: standby"
	case d.MultipleActive:
		d.Reason = fmt.Sprintf("IP resource %s is active on more than one node (%s): split brain, nobody pushes",
			res, strings.Join(append(started, other...), ","))
	case g.IPResource != "" && !found:
		d.Reason = fmt.Sprintf("ip-resource %s is not in the cluster configuration: standby", res)
	case g.ClusterIP != "" && !ipLocal:
		d.Reason = fmt.Sprintf("cluster IP %s is not on a local interface: standby", g.ClusterIP)
	case res != "" && !contains(started, node):
		// Also with only cluster-ip: an address left behind on this node
		// (e.g. after its Pacemaker was killed) does not make it active
		// while Pacemaker runs the IP resource elsewhere.
		if contains(other, node) {
			d.Reason = fmt.Sprintf("IP resource %s is not yet Started here (%s pending): standby", res, node)
		} else {
			d.Reason = fmt.Sprintf("IP resource %s is not Started on %s: standby", res, node)
		}
	default:
		d.Active = true
		switch {
		case g.ClusterIP != "" && g.IPResource != "":
			d.Reason = fmt.Sprintf("cluster IP %s is local and ip-resource %s is Started here, with quorum", g.ClusterIP, res)
		case g.ClusterIP != "":
			d.Reason = fmt.Sprintf("cluster IP %s is on a local interface, with quorum", g.ClusterIP)
		default:
			d.Reason = fmt.Sprintf("ip-resource %s is Started on %s, with quorum", res, node)
		}
	}
	if g.Log != nil {
		g.Log.Debug("gate", "active", d.Active, "reason", d.Reason)
	}
	return d, nil
}

// hasAddr reports whether ip is on a local interface right now.
func (g *Gate) hasAddr(ip net.IP) (bool, error) {
	list := g.LocalAddrs
	if list == nil {
		list = net.InterfaceAddrs
	}
	addrs, err := list()
	if err != nil {
		return false, fmt.Errorf("list local interface addresses: %w", err)
	}
	for _, a := range addrs {
		var aip net.IP
		switch v := a.(type) {
		case *net.IPNet:
			aip = v.IP
		case *net.IPAddr:
			aip = v.IP
		default:
			aip = net.ParseIP(bareIP(a.String()))
		}
		if aip != nil && aip.Equal(ip) {
			return true, nil
		}
	}
	return false, nil
}

// bareIP strips a /prefix.
func bareIP(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i]
	}
	return s
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
