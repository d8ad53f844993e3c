package pcmk

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"ocf-csync/tests/netns"
)

// subdir names a private in-node directory's source under the node dir:
// "/var/lib/pacemaker" → "var-lib-pacemaker".
func subdir(inNode string) string {
	return strings.ReplaceAll(strings.Trim(inNode, "/"), "/", "-")
}

// makeFiles creates every node's base dir: the bind sources with the
// ownership Pacemaker expects, corosync.conf and the seeded CIB.
func (c *Cluster) makeFiles(ctx context.Context) error {
	uid, gid, err := haclusterIDs()
	if err != nil {
		return err
	}
	conf := c.corosyncConf()
	for _, n := range c.nodes {
		type dir struct {
			path  string
			mode  os.FileMode
			owned bool // hacluster:haclient
		}
		dirs := []dir{
			{"etc-corosync", 0o755, false},
			{"var-lib-pacemaker", 0o755, false},
			{"var-lib-pacemaker/cib", 0o750, true},
			{"var-lib-pacemaker/pengine", 0o750, true},
			{"var-lib-pacemaker/blackbox", 0o750, true},
			{"var-lib-pacemaker/cores", 0o750, true},
			{"var-lib-corosync", 0o755, false},
			{"var-log-pacemaker", 0o770, true},
			{"var-log-corosync", 0o755, false},
		}
		for _, d := range c.privDirs() {
			dirs = append(dirs, dir{"priv/" + subdir(d), 0o755, false})
		}
		for _, d := range dirs {
			p := filepath.Join(n.Dir, d.path)
			if err := os.MkdirAll(p, d.mode); err != nil {
				return fmt.Errorf("create node dir: %w", err)
			}
			if err := os.Chmod(p, d.mode); err != nil {
				return fmt.Errorf("create node dir: %w", err)
			}
			if d.owned {
				if err := os.Chown(p, uid, gid); err != nil {
					return fmt.Errorf("create node dir: %w", err)
				}
			}
		}
		if err := os.WriteFile(filepath.Join(n.Dir, "etc-corosync", "corosync.conf"), []byte(conf), 0o644); err != nil {
			return fmt.Errorf("write corosync.conf of %s: %w", n.Name, err)
		}
		if err := c.seedCIB(ctx, filepath.Join(n.Dir, "var-lib-pacemaker", "cib", "cib.xml"), uid, gid); err != nil {
			return fmt.Errorf("seed CIB of %s: %w", n.Name, err)
		}
	}
	return nil
}

func haclusterIDs() (uid, gid int, err error) {
	u, err := user.Lookup("hacluster")
	if err != nil {
		return 0, 0, fmt.Errorf("look up user hacluster (install pacemaker): %w", err)
	}
	g, err := user.LookupGroup("haclient")
	if err != nil {
		return 0, 0, fmt.Errorf("look up group haclient (install pacemaker): %w", err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(g.Gid)
	return uid, gid, nil
}

// corosyncConf is the same for every node: knet over the bridge, no crypto.
func (c *Cluster) corosyncConf() string {
	var b strings.Builder
	fmt.Fprintf(&b, `totem {
	version: 2
	cluster_name: pcmk%s
	transport: knet
	crypto_cipher: none
	crypto_hash: none
	token: %d
}
nodelist {
`, c.tag, c.opts.Token.Milliseconds())
	for _, n := range c.nodes {
		fmt.Fprintf(&b, "\tnode {\n\t\tname: %s\n\t\tnodeid: %d\n\t\tring0_addr: %s\n\t}\n", n.Name, n.Index, n.Addr)
	}
	b.WriteString("}\nquorum {\n\tprovider: corosync_votequorum\n")
	if len(c.nodes) == 2 {
		// Without it a 2-node cluster loses quorum with either node.
		b.WriteString("\ttwo_node: 1\n")
	}
	b.WriteString(`}
logging {
	to_logfile: yes
	logfile: /var/log/corosync/corosync.log
	to_stderr: no
	to_syslog: no
	timestamp: on
}
`)
	return b.String()
}

// seedCIB writes an empty CIB with the cluster options set, so that the
// controller does not sit out the default 20 s dc-deadtime.
func (c *Cluster) seedCIB(ctx context.Context, path string, uid, gid int) error {
	out, err := netns.Run(ctx, "cibadmin", "--empty")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
		return err
	}
	props := map[string]string{"dc-deadtime": "2s", "stonith-enabled": "false"}
	for k, v := range c.opts.CIBProperties {
		props[k] = v
	}
	for k, v := range props {
		cmd := exec.CommandContext(ctx, "crm_attribute", "--type", "crm_config", "-n", k, "-v", v)
		cmd.Env = append(os.Environ(), "CIB_file="+path)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("crm_attribute -n %s -v %s on %s: %w: %s", k, v, path, err, strings.TrimSpace(string(out)))
		}
	}
	return os.Chown(path, uid, gid)
}

// makeNetwork creates the hub netns with bridge br0 and per node a netns
// whose eth0 is a veth into the bridge (see netns.Network).
func (c *Cluster) makeNetwork(ctx context.Context) error {
	if err := c.net.CreateHub(ctx); err != nil {
		return err
	}
	for _, n := range c.nodes {
		if err := c.net.AddNode(ctx, n.Name, n.Netns, fmt.Sprintf("n%d", n.Index), n.Addr); err != nil {
			return err
		}
	}
	return nil
}

// SetLink takes the node's bridge port down (the node is cut off from all
// others) or up again. Processes are untouched.
func (n *Node) SetLink(up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	if _, err := netns.Run(context.Background(), "ip", "-n", n.c.net.Hub, "link", "set", fmt.Sprintf("n%d", n.Index), state); err != nil {
		return fmt.Errorf("set link of %s %s: %w", n.Name, state, err)
	}
	return nil
}

var (
	tagRe   = regexp.MustCompile(`^[0-9a-f]{5}$`)
	netnsRe = regexp.MustCompile(`^pm([0-9a-f]{5})(hub|n[0-9]+)$`)
)

// sweep removes what clusters of dead test processes left behind: the
// processes in their namespaces (by PID), the namespaces and their dirs. A
// cluster whose dir is still locked by its owner is never touched. The
// caller holds the mutex.
func sweep(log io.Writer) error {
	dirs, _ := filepath.Glob(filepath.Join(dirBase, dirPrefix+"*"))
	stale := map[string]bool{}
	live := map[string]bool{}
	for _, dir := range dirs {
		tag := strings.TrimPrefix(filepath.Base(dir), dirPrefix)
		if !tagRe.MatchString(tag) {
			continue
		}
		f, err := os.OpenFile(filepath.Join(dir, "alive"), os.O_RDWR, 0)
		if err == nil {
			if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
				f.Close()
				live[tag] = true
				continue
			}
			defer f.Close()
		} else if !os.IsNotExist(err) {
			live[tag] = true
			continue
		}
		stale[tag] = true
	}
	ents, _ := os.ReadDir(netnsDir)
	var errs []string
	for _, e := range ents {
		m := netnsRe.FindStringSubmatch(e.Name())
		if m == nil || live[m[1]] {
			continue
		}
		if _, err := os.Stat(filepath.Join(dirBase, dirPrefix+m[1])); os.IsNotExist(err) {
			stale[m[1]] = true
		}
		if !stale[m[1]] {
			continue
		}
		fmt.Fprintf(log, "pcmk: sweeping stale network namespace %s\n", e.Name())
		if err := netns.SweepNetns(e.Name()); err != nil {
			errs = append(errs, err.Error())
		}
	}
	for tag := range stale {
		dir := filepath.Join(dirBase, dirPrefix+tag)
		if _, err := os.Stat(dir); err == nil {
			fmt.Fprintf(log, "pcmk: sweeping stale dir %s\n", dir)
			if err := os.RemoveAll(dir); err != nil {
				errs = append(errs, err.Error())
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("sweep: %s", strings.Join(errs, "; "))
	}
	return nil
}
