package ra

import (
	"io"
	"strings"
)

// actionDef is one <action> of the meta-data.
type actionDef struct {
	name, timeout, interval, depth string
}

// metaActions are the advertised actions with their default timeouts. No
// reload or reload-agent: parameters are read at start only, so a change
// must restart the daemon (Pacemaker does that when reload is absent).
var metaActions = []actionDef{
	{name: "start", timeout: "60s"},
	{name: "stop", timeout: "300s"},
	{name: "monitor", timeout: "30s", interval: "30s", depth: "0"},
	{name: "status", timeout: "30s"},
	{name: "notify", timeout: "30s"},
	{name: "validate-all", timeout: "30s"},
	{name: "meta-data", timeout: "5s"},
}

const agentLongdesc = `ocf-csync keeps directories identical on the nodes of an HA cluster, the way csync2 does
(groups, hosts, include/exclude patterns, conflicts, deletions, actions, backups), but only the
active node, the one holding the cluster IP, pushes. This agent starts the ocf-csync daemon, which
rescans and pushes rsync-style deltas over SSH. stop runs a final sync within the stop timeout and
records a clean handoff on each peer it reached, so that the next active node knows it holds
everything; after an unclean failover the failover policy guards the former active node's
changes. Put it in a group after the cluster IP resource.`

// WriteMetaData writes the OCF meta-data XML. It is valid against both the
// OCF 1.0 DTD that ocf-tester uses (hence the DOCTYPE, the element order and
// no 1.1-only attributes or types) and OCF 1.1's ra-api.rng.
func WriteMetaData(w io.Writer, agent string) error {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0"?>` + "\n")
	b.WriteString(`<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">` + "\n")
	b.WriteString(`<resource-agent name="` + esc(agent) + `" version="` + esc(Version) + `">` + "\n")
	b.WriteString("<version>1.1</version>\n")
	b.WriteString(`<longdesc lang="en">` + "\n" + esc(agentLongdesc) + "\n</longdesc>\n")
	b.WriteString(`<shortdesc lang="en">keeps directories in sync from the active node (csync2-compatible)</shortdesc>` + "\n")
	b.WriteString("<parameters>\n")
	for _, p := range paramDefs {
		req := "0"
		if p.required {
			req = "1"
		}
		b.WriteString(`<parameter name="` + esc(p.name) + `" required="` + req + `">` + "\n")
		b.WriteString(`<longdesc lang="en">` + esc(p.long) + "</longdesc>\n")
		b.WriteString(`<shortdesc lang="en">` + esc(p.short) + "</shortdesc>\n")
		b.WriteString(`<content type="` + p.typ + `" default="` + esc(p.def) + `"/>` + "\n")
		b.WriteString("</parameter>\n")
	}
	b.WriteString("</parameters>\n<actions>\n")
	for _, a := range metaActions {
		b.WriteString(`<action name="` + a.name + `" timeout="` + a.timeout + `"`)
		if a.interval != "" {
			b.WriteString(` interval="` + a.interval + `"`)
		}
		if a.depth != "" {
			b.WriteString(` depth="` + a.depth + `"`)
		}
		b.WriteString("/>\n")
	}
	b.WriteString("</actions>\n</resource-agent>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// Version is the agent version in the meta-data; cmd may set it.
var Version = "0.1.0"

// esc escapes XML text and attribute values, keeping newlines readable.
var esc = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace
