package ha

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNotRunning means Pacemaker is not running on this host (or not
// installed): there is no cluster to ask.
var ErrNotRunning = errors.New("pacemaker is not running on this host")

// Lifetime of a node attribute, as crm_attribute -l takes it.
type Lifetime string

const (
	Forever Lifetime = "forever" // permanent, in the CIB's <nodes> section
	Reboot  Lifetime = "reboot"  // transient, gone when the node leaves
)

// EpochAttribute is the permanent node attribute carrying each node's epoch.
const EpochAttribute = "csync-epoch"

// CurrentAttribute is the permanent node attribute saying whether a node's
// data is current: 1 when the last active node's final sync or last cycle
// brought it fully up to date, else 0. A location rule with a finite score
// can prefer current nodes; it must never be -inf (that would block a
// crash failover).
const CurrentAttribute = "csync-current"

// Pacemaker is what ocf-csync asks of the cluster manager.
type Pacemaker interface {
	// Status is the cluster status as crm_mon sees it from this node.
	// It fails with ErrNotRunning when there is no cluster here.
	Status(ctx context.Context) (*ClusterStatus, error)
	// NodeName is this node's name in the cluster (crm_node -n).
	NodeName(ctx context.Context) (string, error)
	// SetNodeAttribute sets attribute name of node ("" = this node).
	SetNodeAttribute(ctx context.Context, node, name, value string, lifetime Lifetime) error
	// GetNodeAttribute reads attribute name of node ("" = this node); ok is
	// false when it is not set.
	GetNodeAttribute(ctx context.Context, node, name string, lifetime Lifetime) (value string, ok bool, err error)
	// NodeAttributes returns the permanent attribute name of every node
	// that has it, by node name.
	NodeAttributes(ctx context.Context, name string) (map[string]string, error)
	// ResourceForIP returns the id of the IPaddr2/IPaddr primitive whose ip
	// parameter is ip, or "" when the CIB has none.
	ResourceForIP(ctx context.Context, ip string) (string, error)
}

// DefaultCLITimeout bounds one Pacemaker command.
const DefaultCLITimeout = 10 * time.Second

// CLI is the Pacemaker adapter that runs the Pacemaker command-line tools
// (crm_mon, crm_node, crm_attribute, cibadmin).
type CLI struct {
	Timeout time.Duration // per command; DefaultCLITimeout when 0
	// Env is added to the commands' environment, e.g. CIB_file=… to work on
	// a CIB file instead of the live cluster.
	Env []string

	mu   sync.Mutex
	name string // cached crm_node -n
}

// NewCLI returns a CLI adapter with the default timeout.
func NewCLI() *CLI { return &CLI{} }

// run runs a Pacemaker tool and returns its stdout. A missing tool or a
// "not connected" exit status is ErrNotRunning.
func (c *CLI) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	t := c.Timeout
	if t <= 0 {
		t = DefaultCLITimeout
	}
	ctx, cancel := context.WithTimeout(ctx, t)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.Env = append(cmd.Env, c.Env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err == nil {
		return out.Bytes(), nil
	}
	line := name + " " + strings.Join(args, " ")
	if errors.Is(err, exec.ErrNotFound) {
		return nil, fmt.Errorf("%s: %w (%s not found; install pacemaker-cli-utils)", line, ErrNotRunning, name)
	}
	if ctx.Err() != nil {
		return out.Bytes(), fmt.Errorf("%s: no answer within %v: %w", line, t, ctx.Err())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == crmNotConnected {
		return out.Bytes(), fmt.Errorf("%s: %w: %s", line, ErrNotRunning, firstLine(errb.String()))
	}
	return out.Bytes(), &CmdError{Cmd: line, Err: err, Stderr: strings.TrimSpace(errb.String())}
}

// CmdError is a failed Pacemaker command.
type CmdError struct {
	Cmd    string
	Err    error
	Stderr string
}

func (e *CmdError) Error() string {
	if e.Stderr == "" {
		return fmt.Sprintf("%s: %v", e.Cmd, e.Err)
	}
	return fmt.Sprintf("%s: %v: %s", e.Cmd, e.Err, firstLine(e.Stderr))
}

func (e *CmdError) Unwrap() error { return e.Err }

// exitCode returns the exit status of a failed command, or -1.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Exited() {
			return ws.ExitStatus()
		}
	}
	return -1
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Status runs crm_mon -1 --output-as=xml. Without a cluster crm_mon exits
// 102 within milliseconds, which becomes ErrNotRunning.
func (c *CLI) Status(ctx context.Context) (*ClusterStatus, error) {
	out, err := c.run(ctx, "crm_mon", "-1", "--output-as=xml")
	if err != nil {
		return nil, fmt.Errorf("cluster status: %w", err)
	}
	return ParseStatus(out)
}

// NodeName runs crm_node -n once and caches the answer.
func (c *CLI) NodeName(ctx context.Context) (string, error) {
	c.mu.Lock()
	name := c.name
	c.mu.Unlock()
	if name != "" {
		return name, nil
	}
	out, err := c.run(ctx, "crm_node", "-n")
	if err != nil {
		return "", err
	}
	name = strings.TrimSpace(string(out))
	if name == "" {
		return "", errors.New("crm_node -n printed no node name")
	}
	c.mu.Lock()
	c.name = name
	c.mu.Unlock()
	return name, nil
}

func (c *CLI) nodeArgs(ctx context.Context, node string) ([]string, error) {
	if node == "" {
		n, err := c.NodeName(ctx)
		if err != nil {
			return nil, err
		}
		node = n
	}
	return []string{"-N", node}, nil
}

func checkLifetime(l Lifetime) error {
	if l != Forever && l != Reboot {
		return fmt.Errorf("node attribute lifetime %q: want %q or %q", l, Forever, Reboot)
	}
	return nil
}

// SetNodeAttribute runs crm_attribute -N node -n name -v value -l lifetime.
func (c *CLI) SetNodeAttribute(ctx context.Context, node, name, value string, lifetime Lifetime) error {
	if err := checkLifetime(lifetime); err != nil {
		return err
	}
	args, err := c.nodeArgs(ctx, node)
	if err != nil {
		return fmt.Errorf("set node attribute %s: %w", name, err)
	}
	args = append(args, "-n", name, "-v", value, "-l", string(lifetime))
	if _, err := c.run(ctx, "crm_attribute", args...); err != nil {
		return fmt.Errorf("set node attribute %s=%s: %w", name, value, err)
	}
	return nil
}

// crmNoSuchObject is CRM_EX_NOSUCH, crm_attribute's answer for an unset
// attribute.
const crmNoSuchObject = 105

// GetNodeAttribute runs crm_attribute -N node -n name -G -q -l lifetime.
func (c *CLI) GetNodeAttribute(ctx context.Context, node, name string, lifetime Lifetime) (string, bool, error) {
	if err := checkLifetime(lifetime); err != nil {
		return "", false, err
	}
	args, err := c.nodeArgs(ctx, node)
	if err != nil {
		return "", false, fmt.Errorf("get node attribute %s: %w", name, err)
	}
	args = append(args, "-n", name, "-G", "-q", "-l", string(lifetime))
	out, err := c.run(ctx, "crm_attribute", args...)
	if err != nil {
		if exitCode(err) == crmNoSuchObject {
			return "", false, nil
		}
		return "", false, fmt.Errorf("get node attribute %s: %w", name, err)
	}
	return strings.TrimSpace(string(out)), true, nil
}

// NodeAttributes reads the <nodes> section of the CIB (cibadmin -Q -o
// nodes) and returns attribute name of every node that has it.
func (c *CLI) NodeAttributes(ctx context.Context, name string) (map[string]string, error) {
	out, err := c.run(ctx, "cibadmin", "-Q", "-o", "nodes")
	if err != nil {
		return nil, fmt.Errorf("read node attributes: %w", err)
	}
	return parseNodeAttributes(out, name)
}

type xmlNodes struct {
	Node []struct {
		ID    string `xml:"id,attr"`
		Uname string `xml:"uname,attr"`
		Attrs []struct {
			NV []struct {
				Name  string `xml:"name,attr"`
				Value string `xml:"value,attr"`
			} `xml:"nvpair"`
		} `xml:"instance_attributes"`
	} `xml:"node"`
}

// parseNodeAttributes decodes a CIB <nodes> section.
func parseNodeAttributes(data []byte, name string) (map[string]string, error) {
	var x xmlNodes
	if err := xml.Unmarshal(data, &x); err != nil {
		return nil, fmt.Errorf("parse CIB nodes section: %w", err)
	}
	m := map[string]string{}
	for _, n := range x.Node {
		node := n.Uname
		if node == "" {
			node = n.ID
		}
		for _, a := range n.Attrs {
			for _, nv := range a.NV {
				if nv.Name == name {
					m[node] = nv.Value
				}
			}
		}
	}
	return m, nil
}

// ResourceForIP finds the primitive whose "ip" parameter is ip with
// cibadmin -Q -o resources.
func (c *CLI) ResourceForIP(ctx context.Context, ip string) (string, error) {
	out, err := c.run(ctx, "cibadmin", "-Q", "-o", "resources")
	if err != nil {
		return "", fmt.Errorf("find the resource of IP %s: %w", ip, err)
	}
	return parseResourceForIP(out, ip)
}

// xmlPrimitive matches <primitive> anywhere below <resources>.
type xmlPrimitive struct {
	ID    string `xml:"id,attr"`
	Attrs []struct {
		NV []struct {
			Name  string `xml:"name,attr"`
			Value string `xml:"value,attr"`
		} `xml:"nvpair"`
	} `xml:"instance_attributes"`
}

func parseResourceForIP(data []byte, ip string) (string, error) {
	want := bareIP(ip)
	d := xml.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := d.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return "", nil
			}
			return "", fmt.Errorf("parse CIB resources section: %w", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok || se.Name.Local != "primitive" {
			continue
		}
		var p xmlPrimitive
		if err := d.DecodeElement(&p, &se); err != nil {
			return "", fmt.Errorf("parse CIB resources section: %w", err)
		}
		for _, a := range p.Attrs {
			for _, nv := range a.NV {
				if nv.Name == "ip" && bareIP(nv.Value) == want {
					return p.ID, nil
				}
			}
		}
	}
}

// Transient node attributes the daemon keeps current (crm_mon -A).
const (
	PendingAttribute   = "csync-pending"
	ConflictsAttribute = "csync-conflicts"
)

// PublishCounts sets csync-pending and csync-conflicts of this node as
// transient (reboot) attributes.
func PublishCounts(ctx context.Context, pcmk Pacemaker, pending, conflicts int) error {
	var errs []error
	for _, a := range []struct {
		name string
		v    int
	}{{PendingAttribute, pending}, {ConflictsAttribute, conflicts}} {
		errs = append(errs, pcmk.SetNodeAttribute(ctx, "", a.name, strconv.Itoa(a.v), Reboot))
	}
	return errors.Join(errs...)
}
