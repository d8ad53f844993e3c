package config

import (
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
)

// NodeView is the config as one node sees it: only the groups that list the
// node, with %prefix% references resolved to this node's paths.
type NodeView struct {
	Name     string
	Config   *Config
	Groups   []*GroupView
	prefixes map[string]string // prefix name -> this node's path (defined ones only)
}

// GroupView is a group this node belongs to.
type GroupView struct {
	*Group
	Self    Host // this node's own host entry (its first one)
	node    *NodeView
	pats    []cpattern   // Patterns, resolved
	actions [][]cpattern // per Action, its patterns resolved
	used    []string     // prefix names the group refers to
}

// cpattern is a pattern with its %prefix% resolved for the node.
type cpattern struct {
	text    string // resolved pattern
	include bool
	compare bool
	path    bool     // pathname pattern (else basename)
	flags   FnmFlags // FnmPathname unless "**" appears in the pattern
	steps   []string // leading-directory parts of a path include (csync2 step_into)
}

// Node narrows the config to the node called name (compared lower-cased). It
// fails if the node is in no group or if its groups use a %prefix% that has
// no path for this node.
func (c *Config) Node(name string) (*NodeView, error) {
	name = strings.ToLower(strings.TrimSpace(name))
	v := &NodeView{Name: name, Config: c, prefixes: map[string]string{}}
	for _, pr := range c.Prefixes {
		if p, ok := pr.Resolve(name); ok {
			v.prefixes[pr.Name] = p
		}
	}
	var errs ErrorList
	for _, g := range c.Groups {
		i := slices.IndexFunc(g.Hosts, func(h Host) bool { return h.Name == name })
		if i < 0 {
			continue
		}
		gv := &GroupView{Group: g, Self: g.Hosts[i], node: v}
		for _, pt := range g.Patterns {
			cp, err := v.compile(pt.Text, pt.Pos, gv)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			cp.include, cp.compare = pt.Include, pt.Compare
			if cp.path && cp.include {
				cp.steps = leadingDirs(cp.text)
			}
			gv.pats = append(gv.pats, cp)
		}
		for _, a := range g.Actions {
			var cps []cpattern
			for _, ap := range a.Patterns {
				cp, err := v.compile(ap, a.Pos, gv)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				cps = append(cps, cp)
			}
			gv.actions = append(gv.actions, cps)
		}
		v.Groups = append(v.Groups, gv)
	}
	if len(errs) > 0 {
		return nil, errs.err()
	}
	if len(v.Groups) == 0 {
		return nil, &Error{Msg: fmt.Sprintf("this host (%s) is not a member of any configured group (hosts in %s: %s; set the node name with --node if it differs from the host name)",
			name, c.mainFile(), strings.Join(c.hostNames(), ", "))}
	}
	return v, nil
}

func (c *Config) mainFile() string {
	if len(c.Files) == 0 {
		return "the config"
	}
	return c.Files[0]
}

func (c *Config) hostNames() []string {
	var names []string
	for _, g := range c.Groups {
		for _, h := range g.Hosts {
			if !slices.Contains(names, h.Name) {
				names = append(names, h.Name)
			}
		}
	}
	return names
}

// compile resolves a leading %name% to this node's path. The path is escaped
// so that its bytes match literally; "**" is judged on the text as written.
func (v *NodeView) compile(text string, pos Pos, gv *GroupView) (cpattern, *Error) {
	cp := cpattern{text: text, path: isPathPattern(text), flags: FnmPathname}
	if strings.Contains(text, "**") {
		cp.flags = 0
	}
	if !strings.HasPrefix(text, "%") {
		cp.text = cleanPattern(cp.text)
		return cp, nil
	}
	name, rest := splitPrefix(text)
	p, ok := v.prefixes[name]
	if !ok {
		why := fmt.Sprintf("no \"on\" line in prefix %s matches %s", name, v.Name)
		if v.Config.Prefix(name) == nil {
			why = fmt.Sprintf("there is no prefix block named %s", name)
		}
		return cp, &Error{Pos: pos, Msg: fmt.Sprintf("prefix '%s' is not defined for host '%s' (%s)", name, v.Name, why)}
	}
	if !slices.Contains(gv.used, name) {
		gv.used = append(gv.used, name)
	}
	cp.text = escapeMeta(p) + rest
	if p == "/" && strings.HasPrefix(rest, "/") {
		cp.text = rest
	}
	cp.text = cleanPattern(cp.text)
	return cp, nil
}

// cleanPattern cleans an absolute path pattern as the paths it is matched
// against are cleaned: "include /srv//www;" (a typo, or "$DIR/www" with
// DIR ending in '/') matched nothing, so nothing below it was synced.
func cleanPattern(text string) string {
	if !strings.HasPrefix(text, "/") {
		return text
	}
	return path.Clean(text)
}

// splitPrefix splits "%name%rest"; without a closing '%' all of it is the name.
func splitPrefix(s string) (name, rest string) {
	s = s[1:]
	if i := strings.IndexByte(s, '%'); i >= 0 {
		return s[:i], s[i+1:]
	}
	return s, ""
}

// leadingDirs lists the parts of a pattern before each '/', longest first, as
// csync2's step_into truncates it: "/etc/ha.d/x" -> "/etc/ha.d", "/etc".
func leadingDirs(pat string) []string {
	var steps []string
	for i := len(pat) - 1; i > 0; i-- {
		if pat[i] == '/' {
			steps = append(steps, pat[:i])
		}
	}
	return steps
}

func cleanPath(p string) string {
	if p == "" {
		return p
	}
	return path.Clean(p)
}

// match is csync2's match_pattern_list: the last matching pattern of each
// category decides; paths default to excluded, basenames to included.
func (g *GroupView) match(p string, compare bool) bool {
	base := p[strings.LastIndexByte(p, '/')+1:]
	matchPath, matchBase := false, true
	for i := range g.pats {
		cp := &g.pats[i]
		if cp.compare && !compare {
			continue
		}
		if cp.path {
			if FnMatch(cp.text, p, cp.flags|FnmLeadingDir) {
				matchPath = cp.include
			}
		} else if FnMatch(cp.text, base, 0) {
			matchBase = cp.include
		}
	}
	return matchPath && matchBase
}

// stepInto is csync2's step_into: p lies on the way to a path include.
func (g *GroupView) stepInto(p string, compare bool) bool {
	if p == "/" {
		return true
	}
	for i := range g.pats {
		cp := &g.pats[i]
		if cp.compare && !compare {
			continue
		}
		for _, s := range cp.steps {
			if FnMatch(s, p, cp.flags) {
				return true
			}
		}
	}
	return false
}

// Match reports whether the group syncs path, and for a directory whether a
// walk should enter it: it is synced or lies on the way to an include. A
// directory hidden by a basename exclude is therefore not entered, unless an
// include names something inside it (as csync2 does).
func (g *GroupView) Match(p string, isDir bool) (synced, descend bool) {
	p = cleanPath(p)
	synced = g.match(p, false)
	descend = isDir && (synced || g.stepInto(p, false))
	return synced, descend
}

// MatchCompare is Match with the compare patterns active (compare mode).
func (g *GroupView) MatchCompare(p string, isDir bool) bool {
	return g.match(cleanPath(p), true)
}

// Peers returns every host of the group except this node, in config order.
func (g *GroupView) Peers() []Host {
	var hs []Host
	for _, h := range g.Hosts {
		if h.Name != g.Self.Name {
			hs = append(hs, h)
		}
	}
	return hs
}

// IsSlave reports whether the host called name is a receive-only slave here.
func (g *GroupView) IsSlave(name string) bool {
	name = strings.ToLower(name)
	for _, h := range g.Hosts {
		if h.Name == name {
			return h.Slave
		}
	}
	return false
}

// LeftOf reports whether the host called name is listed before this node in
// the group ("on the left side", which auto left/right decide by).
func (g *GroupView) LeftOf(name string) bool {
	name = strings.ToLower(name)
	for _, h := range g.Hosts {
		switch h.Name {
		case g.Self.Name:
			return false
		case name:
			return true
		}
	}
	return false
}

// Host returns the group's entry for the host called name.
func (g *GroupView) Host(name string) (Host, bool) {
	name = strings.ToLower(name)
	for _, h := range g.Hosts {
		if h.Name == name {
			return h, true
		}
	}
	return Host{}, false
}

// BackupsEnabled follows csync2: a directory is set and generations > 1.
func (g *Group) BackupsEnabled() bool { return g.BackupDir != "" && g.BackupGenerations > 1 }

// WireName turns a local absolute path into the name that travels between
// nodes: "%prefix%/rest" if the path lies under this node's path of a prefix
// the group uses (the longest one wins), else the path itself. prefixed
// reports whether a prefix was applied.
func (g *GroupView) WireName(local string) (name string, prefixed bool) {
	local = cleanPath(local)
	best, bestPath := "", ""
	for _, n := range g.used {
		p := g.node.prefixes[n]
		if under(local, p) && (best == "" || len(p) > len(bestPath)) {
			best, bestPath = n, p
		}
	}
	if best == "" {
		return local, false
	}
	rest := local[len(bestPath):]
	if bestPath == "/" {
		rest = strings.TrimPrefix(local, "/")
		if rest != "" {
			rest = "/" + rest
		}
	}
	return "%" + best + "%" + rest, true
}

func under(p, dir string) bool {
	if dir == "/" {
		return strings.HasPrefix(p, "/")
	}
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// LocalPath maps a wire name back to this node's absolute path. It refuses
// names that are not absolute, contain "..", or use a prefix this node lacks.
func (g *GroupView) LocalPath(wire string) (string, error) {
	rest := wire
	base := ""
	if strings.HasPrefix(wire, "%") {
		var name string
		name, rest = splitPrefix(wire)
		p, ok := g.node.prefixes[name]
		if !ok {
			return "", &Error{Msg: fmt.Sprintf("file name %q: prefix '%s' is not defined for host '%s'", wire, name, g.node.Name)}
		}
		if rest == "" {
			return p, nil
		}
		base = p
	}
	if !strings.HasPrefix(rest, "/") || slices.Contains(strings.Split(rest, "/"), "..") {
		return "", &Error{Msg: fmt.Sprintf("file name %q: expected an absolute path without \"..\"", wire)}
	}
	if base == "" || base == "/" {
		return path.Clean(rest), nil
	}
	return path.Clean(base + rest), nil
}

// ActionsFor returns the actions of the group that apply to path: the group
// must sync the path, and an action matches through its path patterns
// (leading-dir, "**" rule) or, without patterns, for every file.
func (g *GroupView) ActionsFor(p string) []Action {
	p = cleanPath(p)
	if !g.match(p, false) {
		return nil
	}
	var as []Action
	for i, a := range g.Actions {
		ok := len(a.Patterns) == 0
		for _, cp := range g.actions[i] {
			if !ok && FnMatch(cp.text, p, cp.flags|FnmLeadingDir) {
				ok = true
			}
		}
		if ok {
			as = append(as, a)
		}
	}
	return as
}

// roots lists the walk roots of the group's path includes (compare ones only
// if compare is set).
func (g *GroupView) roots(compare bool) []string {
	var rs []string
	for _, cp := range g.pats {
		if cp.path && cp.include && (compare || !cp.compare) && strings.HasPrefix(cp.text, "/") {
			rs = append(rs, literalRoot(cp.text))
		}
	}
	return rs
}

// Roots lists the group's walk roots, without roots inside other roots.
func (g *GroupView) Roots() []string { return pruneRoots(g.roots(false)) }

// literalRoot is the longest leading run of wildcard-free components.
func literalRoot(pat string) string {
	var lit []string
	for _, part := range strings.Split(pat, "/")[1:] {
		if hasMeta(part) {
			break
		}
		lit = append(lit, unescape(part))
	}
	return path.Clean("/" + strings.Join(lit, "/"))
}

// Match is the union over the node's groups.
func (v *NodeView) Match(p string, isDir bool) (synced, descend bool) {
	for _, g := range v.Groups {
		s, d := g.Match(p, isDir)
		synced = synced || s
		descend = descend || d
		if synced && (descend || !isDir) {
			break
		}
	}
	return synced, descend
}

// GroupsFor returns the node's groups that sync path.
func (v *NodeView) GroupsFor(p string) []*GroupView {
	p = cleanPath(p)
	var gs []*GroupView
	for _, g := range v.Groups {
		if g.match(p, false) {
			gs = append(gs, g)
		}
	}
	return gs
}

// Peers returns the names of the peers of every group that syncs path,
// sorted and unique, without this node.
func (v *NodeView) Peers(p string) []string {
	var names []string
	for _, g := range v.GroupsFor(p) {
		for _, h := range g.Peers() {
			names = append(names, h.Name)
		}
	}
	sort.Strings(names)
	return slices.Compact(names)
}

// Roots returns the absolute paths a full scan walks: for each path include
// of the node's groups its wildcard-free leading part, de-duplicated, without
// roots that lie inside other roots, sorted.
func (v *NodeView) Roots() []string {
	var all []string
	for _, g := range v.Groups {
		all = append(all, g.roots(false)...)
	}
	return pruneRoots(all)
}

func pruneRoots(all []string) []string {
	sort.Strings(all)
	var out []string
	for _, r := range all {
		if !slices.ContainsFunc(out, func(k string) bool { return under(r, k) }) {
			out = append(out, r)
		}
	}
	return out
}

// Prefixes returns this node's path for each prefix defined for it.
func (v *NodeView) Prefixes() map[string]string {
	m := make(map[string]string, len(v.prefixes))
	for k, p := range v.prefixes {
		m[k] = p
	}
	return m
}

// Group returns the node's view of the group with that name, or nil.
func (v *NodeView) Group(name string) *GroupView {
	for _, g := range v.Groups {
		if g.Name == name {
			return g
		}
	}
	return nil
}
