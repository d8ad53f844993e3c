package engine

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"ocf-csync/syncer/config"
)

// Lookup resolves a host name to addresses (net.DefaultResolver.LookupHost).
type Lookup func(ctx context.Context, host string) ([]string, error)

// ConnectingAddress is the client address sshd put first in SSH_CONNECTION
// ("client-ip client-port server-ip server-port"). ok is false when the
// variable is empty: serve was not started by sshd.
func ConnectingAddress(sshConnection string) (addr netip.Addr, ok bool, err error) {
	f := strings.Fields(sshConnection)
	if len(f) == 0 {
		return netip.Addr{}, false, nil
	}
	a, err := netip.ParseAddr(f[0])
	if err != nil || len(f) != 4 {
		return netip.Addr{}, true, fmt.Errorf("SSH_CONNECTION %q is not \"client-ip client-port server-ip server-port\"", sshConnection)
	}
	return a.Unmap().WithZone(""), true, nil
}

// PeerAddresses lists the addresses a sender claiming to be node may
// connect from, as csync2 checks a peer's IP: every address its names in
// the node's groups resolve to (the host name, and the address of a
// host@address entry), and the ha block's cluster IP, which the active node
// may send from (IPsrcaddr). unresolved names the names that did not
// resolve, with why.
func PeerAddresses(ctx context.Context, view *config.NodeView, node string, lookup Lookup) (addrs []netip.Addr, unresolved []string) {
	node = strings.ToLower(node)
	var names []string
	for _, g := range view.Groups {
		if h, ok := g.Host(node); ok {
			names = append(names, h.Name, h.Addr)
		}
	}
	if ip := view.Config.HA.ClusterIP; ip != "" {
		names = append(names, ip)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	for _, n := range names {
		if n == "" {
			continue
		}
		if a, err := netip.ParseAddr(n); err == nil {
			addrs = append(addrs, a.Unmap().WithZone(""))
			continue
		}
		got, err := lookup(ctx, n)
		if err != nil {
			unresolved = append(unresolved, fmt.Sprintf("%s (%v)", n, err))
			continue
		}
		for _, s := range got {
			if a, err := netip.ParseAddr(s); err == nil {
				addrs = append(addrs, a.Unmap().WithZone(""))
			}
		}
	}
	slices.SortFunc(addrs, func(a, b netip.Addr) int { return a.Compare(b) })
	return slices.Compact(addrs), unresolved
}

// CheckPeerAddress refuses a sender whose claimed node name does not match
// the address its SSH connection comes from. Without SSH_CONNECTION serve
// runs locally (root ran it by hand, or a test drives it over pipes): the
// claim is then trusted, as that caller could write the files itself.
func CheckPeerAddress(ctx context.Context, view *config.NodeView, claimed, sshConnection string, lookup Lookup) error {
	seen, ok, err := ConnectingAddress(sshConnection)
	if !ok {
		return nil
	}
	if err != nil {
		return err
	}
	accepted, unresolved := PeerAddresses(ctx, view, claimed, lookup)
	if slices.Contains(accepted, seen) {
		return nil
	}
	list := make([]string, len(accepted))
	for i, a := range accepted {
		list[i] = a.String()
	}
	from := "nowhere"
	if len(list) > 0 {
		from = "only from " + strings.Join(list, ", ")
	}
	msg := fmt.Sprintf("sender claims to be %s but connects from %s; %s accepts %s %s (its resolved names, host@address entries and the ha cluster-ip)",
		claimed, seen, view.Name, claimed, from)
	if len(unresolved) > 0 {
		msg += fmt.Sprintf("; could not resolve %s: fix name resolution on %s or write host %s@ADDRESS", strings.Join(unresolved, ", "), view.Name, claimed)
	}
	return errors.New(msg)
}
