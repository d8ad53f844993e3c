package main

import (
	"slices"
	"strings"

	"ocf-csync/syncer/config"
)

// checkNode refuses a --node name that is a host of no group: a usage
// error listing the hosts, where a wrong host name from the system is a
// config problem.
func checkNode(cfg *config.Config, name string) error {
	var hosts []string
	for _, g := range cfg.Groups {
		for _, h := range g.Hosts {
			if h.Name == name {
				return nil
			}
			if !slices.Contains(hosts, h.Name) {
				hosts = append(hosts, h.Name)
			}
		}
	}
	return usagef("unknown node %q: no group of %s lists it as a host; the hosts are: %s", name, cfg.Files[0], listOrNone(hosts))
}

// knownPeers lists the hosts of this node's groups, itself left out, in
// config order.
func (l *loaded) knownPeers() []string {
	var names []string
	for _, g := range l.view.Groups {
		for _, h := range g.Peers() {
			if !slices.Contains(names, h.Name) {
				names = append(names, h.Name)
			}
		}
	}
	return names
}

// checkPeers refuses -P/--peer values that no group of this node knows
// (csync2 compares peer names case-insensitively); a typo must not turn a
// sync into a silent no-op. "" is an unset flag.
func (l *loaded) checkPeers(peers []string) error {
	known := l.knownPeers()
	for _, p := range peers {
		if p == "" || slices.Contains(known, strings.ToLower(p)) {
			continue
		}
		if strings.EqualFold(p, l.view.Name) {
			return usagef("peer %q is this node; its peers are: %s", p, listOrNone(known))
		}
		return usagef("unknown peer %q: no group of node %s has such a host; its peers are: %s", p, l.view.Name, listOrNone(known))
	}
	return nil
}

// checkGroups refuses -G/--group values that are not groups of this node.
func (l *loaded) checkGroups(groups []string) error {
	var mine []string
	for _, g := range l.view.Groups {
		mine = append(mine, g.Name)
	}
	for _, name := range groups {
		if slices.Contains(mine, name) {
			continue
		}
		for _, g := range l.cfg.Groups {
			if g.Name == name {
				return usagef("group %q does not list node %s as a host; this node's groups are: %s", name, l.view.Name, listOrNone(mine))
			}
		}
		return usagef("unknown group %q; this node's groups are: %s", name, listOrNone(mine))
	}
	return nil
}

func listOrNone(names []string) string {
	if len(names) == 0 {
		return "(none)"
	}
	return strings.Join(names, ", ")
}
