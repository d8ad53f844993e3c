// Command demo is `make demo`: three namespace nodes with real sshd sync a
// sample tree, show a conflict and its resolution, and print what happened.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"ocf-csync/tests/cluster"
)

const cfgPath = "/etc/ocf-csync/ocf-csync.cfg"

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo failed: %v\n", err)
		os.Exit(1)
	}
}

func say(format string, args ...any) { fmt.Printf("\n== "+format+"\n", args...) }

func run() error {
	if os.Geteuid() != 0 {
		return errors.New("the demo needs root: it creates network namespaces and starts sshd (run: sudo make demo)")
	}
	bin := os.Getenv("OCF_CSYNC_BIN")
	if bin == "" {
		return errors.New("OCF_CSYNC_BIN is not set; run the demo with 'make demo'")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	say("Starting 3 nodes: each is a network namespace with its own sshd, /etc/ocf-csync and /srv/ocf-csync")
	c, err := cluster.Start(ctx, cluster.Options{Nodes: 3, Binary: bin})
	if err != nil {
		return err
	}
	defer func() {
		say("Cleaning up: stopping every sshd by PID and deleting the namespaces")
		if err := c.Close(); err != nil {
			fmt.Println("cleanup:", err)
		}
	}()
	for _, n := range c.Nodes() {
		fmt.Printf("   %s  %s  (sshd pid %d)\n", n.Name, n.Addr, n.PID)
	}

	cfg := fmt.Sprintf(`# The same csync2-syntax config on every node.
group demo {
  host node1 node2 node3;
  key /etc/ocf-csync/demo.key;
  include /srv/ocf-csync;
  exclude *.swp;
  backup-directory /var/lib/ocf-csync/backup;
  backup-generations 3;
}
ssh {
  identity /etc/ocf-csync/id_ed25519;
  known-hosts /etc/ocf-csync/known_hosts;
  remote-command "%s serve";
}
`, bin)
	key := "demo.key.0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRS\n"
	for _, n := range c.Nodes() {
		if err := os.WriteFile(n.Path(cfgPath), []byte(cfg), 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(n.Path("/etc/ocf-csync/demo.key"), []byte(key), 0o600); err != nil {
			return err
		}
	}
	say("Config %s on every node:", cfgPath)
	fmt.Print(indent(cfg))

	n1, n2, n3 := c.Node(1), c.Node(2), c.Node(3)
	say("node1: building a sample tree in /srv/ocf-csync")
	if err := sampleTree(n1); err != nil {
		return err
	}
	fmt.Print(indent(listing(n1)))

	say("node1: ocf-csync sync -v   (check for changes, then push to node2 and node3 over SSH)")
	if _, err := ocf(ctx, n1, "-v", "sync"); err != nil {
		return err
	}
	if err := same(c); err != nil {
		return err
	}

	say("node1: edit www/index.html, delete etc/old.conf, rename www/a.css to www/main.css, change 1 byte of data/big.bin")
	write(n1, "www/index.html", "<h1>Hello again</h1>\n")
	os.Remove(n1.Path("/srv/ocf-csync/etc/old.conf"))
	os.Rename(n1.Path("/srv/ocf-csync/www/a.css"), n1.Path("/srv/ocf-csync/www/main.css"))
	if err := flipByte(n1.Path("/srv/ocf-csync/data/big.bin")); err != nil {
		return err
	}
	if _, err := ocf(ctx, n1, "-v", "sync"); err != nil {
		return err
	}
	fmt.Println("   (big.bin travelled as an rsync delta: compare the data size above with its 8 MiB)")
	if err := same(c); err != nil {
		return err
	}
	say("Each node's view now:")
	for _, n := range c.Nodes() {
		fmt.Printf("   %s:\n%s", n.Name, indent(indent(listing(n))))
	}

	say("Conflict: node1 and node2 both edit etc/app.conf before the next sync")
	write(n1, "etc/app.conf", "workers = 8   # node1's edit\n")
	write(n2, "etc/app.conf", "workers = 2   # node2's edit\n")
	out, err := ocf(ctx, n1, "sync")
	if err == nil {
		return fmt.Errorf("expected a conflict, but sync succeeded:\n%s", out)
	}
	fmt.Printf("   sync exited non-zero, as it should. node2 kept its own version:\n")
	fmt.Printf("     node2 etc/app.conf: %s", read(n2, "etc/app.conf"))
	fmt.Printf("     node3 etc/app.conf: %s", read(n3, "etc/app.conf"))
	say("node1: ocf-csync force /srv/ocf-csync/etc/app.conf, then sync: node1's version wins (node2's is kept as a backup)")
	if _, err := ocf(ctx, n1, "force", "/srv/ocf-csync/etc/app.conf"); err != nil {
		return err
	}
	if _, err := ocf(ctx, n1, "sync"); err != nil {
		return err
	}
	fmt.Printf("     node2 etc/app.conf: %s", read(n2, "etc/app.conf"))
	fmt.Printf("     node2 backup:       %s", readHost(n2.Path("/var/lib/ocf-csync/backup/srv/ocf-csync/etc/app.conf")))
	if err := same(c); err != nil {
		return err
	}

	return failover(ctx, c)
}

// failover tells the HA story without Pacemaker: the cluster IP is an
// address in node1's namespace, and the daemon runs as the resource agent
// runs it. Only the node holding the IP pushes; a clean stop moves the IP
// after a final sync and a handoff; a crash leaves the next node guarded
// until it compared both sides. Under Pacemaker the same happens with the
// IP resource (tests/ha_*.go).
func failover(ctx context.Context, c *cluster.Cluster) error {
	n1, n2 := c.Node(1), c.Node(2)
	vip := strings.TrimSuffix(c.Subnet(), "0/24") + "100"
	cfg := readHost(n1.Path(cfgPath)) + "ha { cluster-ip " + vip + "; }\n"
	for _, n := range c.Nodes() {
		if err := os.WriteFile(n.Path(cfgPath), []byte(cfg), 0o644); err != nil {
			return err
		}
	}
	say("HA: every node's config gets 'ha { cluster-ip %s; }'; the IP goes on node1 (its namespace's eth0)", vip)
	if err := moveIP(ctx, nil, n1, vip); err != nil {
		return err
	}
	d1, log1, err := startDaemon(ctx, n1)
	if err != nil {
		return err
	}
	fmt.Print(indent(indent(log1.String())))
	say("node2 does not hold the IP: its sync is a no-op, and says why")
	if _, err := ocf(ctx, n2, "-v", "sync"); err != nil {
		return err
	}
	say("node1 edits www/news.html; 'ocf-csync sync' there asks the running daemon for a cycle and waits for it")
	write(n1, "www/news.html", "<p>news from node1</p>\n")
	if _, err := ocf(ctx, n1, "sync"); err != nil {
		return err
	}

	say("Switchover: node1 stops (final sync, handoff on every peer), the IP moves, node2 starts")
	write(n1, "www/last-minute.html", "<p>written just before the stop</p>\n")
	start := time.Now()
	d1.Process.Signal(syscall.SIGTERM)
	if err := d1.Wait(); err != nil {
		return fmt.Errorf("node1's daemon did not stop cleanly: %w", err)
	}
	fmt.Printf("   node1's daemon stopped in %v:\n", time.Since(start).Round(time.Millisecond))
	fmt.Print(indent(indent(lines(log1.String(), "final sync", "stopped"))))
	if err := moveIP(ctx, n1, n2, vip); err != nil {
		return err
	}
	d2, log2, err := startDaemon(ctx, n2)
	if err != nil {
		return err
	}
	fmt.Print(indent(indent(lines(log2.String(), "became active"))))
	fmt.Printf("   node3 got the last-minute change: www/last-minute.html = %s", read(c.Node(3), "www/last-minute.html"))

	say("Crash: node2's daemon is killed (kill -9) and www/index.html changes there before anything syncs it")
	d2.Process.Kill()
	d2.Wait()
	write(n2, "www/index.html", "<h1>edited on node2 just before it crashed</h1>\n")
	if err := moveIP(ctx, n2, n1, vip); err != nil {
		return err
	}
	write(n1, "www/after-crash.html", "<p>written on node1 after the takeover</p>\n")
	d1, log1, err = startDaemon(ctx, n1)
	if err != nil {
		return err
	}
	defer func() { d1.Process.Signal(syscall.SIGTERM); d1.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(log1.String(), "failover guard: reconciled") {
		if time.Now().After(deadline) {
			return fmt.Errorf("node1 never reconciled with node2; its log:\n%s", log1.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Print(indent(indent(lines(log1.String(), "became active", "failover guard"))))
	if _, err := ocf(ctx, n1, "status"); err != nil {
		return err
	}
	fmt.Printf("   node2 still has its change: www/index.html = %s", read(n2, "www/index.html"))
	fmt.Printf("   node2 got node1's new file: www/after-crash.html = %s", read(n2, "www/after-crash.html"))
	say("The admin takes node2's stranded change over; the next sync brings the nodes together")
	if _, err := ocf(ctx, n1, "resolve", "--keep-remote", "/srv/ocf-csync/www/index.html"); err != nil {
		return err
	}
	if _, err := ocf(ctx, n1, "sync"); err != nil {
		return err
	}
	return same(c)
}

// moveIP takes vip off from (if any) and puts it on to, as IPaddr2 would.
func moveIP(ctx context.Context, from, to *cluster.Node, vip string) error {
	if from != nil {
		if _, _, err := from.Run(ctx, "ip", "addr", "del", vip+"/24", "dev", "eth0"); err != nil {
			return err
		}
	}
	_, _, err := to.Run(ctx, "ip", "addr", "add", vip+"/24", "dev", "eth0")
	if err == nil {
		fmt.Printf("   %s now holds %s\n", to.Name, vip)
	}
	return err
}

// lines keeps the lines of s that contain any of subs.
func lines(s string, subs ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, sub := range subs {
			if strings.Contains(l, sub) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n") + "\n"
}

const statusFile = "/run/ocf-csync-demo.status"

// daemonStatus reads what the daemon reports (ra.Health); zero if unreadable.
func daemonStatus(n *cluster.Node) (h struct {
	State    string    `json:"state"`
	LastSync time.Time `json:"last_sync"`
}) {
	_ = json.Unmarshal([]byte(readHost(n.Path(statusFile))), &h)
	return h
}

// startDaemon starts `ocf-csync daemon` on n, as the resource agent does,
// and waits for its first cycle; its log goes to the returned buffer.
func startDaemon(ctx context.Context, n *cluster.Node) (*exec.Cmd, *syncBuffer, error) {
	os.Remove(n.Path(statusFile))
	cmd := n.Command(ctx, "ocf-csync", "--config", cfgPath, "--node", n.Name, "daemon",
		"--status-file", statusFile, "--rescan-interval", "600")
	log := &syncBuffer{}
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start the daemon on %s: %w", n.Name, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for daemonStatus(n).LastSync.IsZero() {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			return nil, nil, fmt.Errorf("the daemon on %s did not finish a cycle", n.Name)
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Printf("   %s: ocf-csync daemon running (pid %d)\n", n.Name, cmd.Process.Pid)
	return cmd, log, nil
}

// syncBuffer collects a running process's output.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if l != "" {
			b.WriteString("   " + l)
		}
	}
	return b.String()
}

// ocf runs ocf-csync on a node and prints its output.
func ocf(ctx context.Context, n *cluster.Node, args ...string) (string, error) {
	full := append([]string{"--config", cfgPath, "--node", n.Name}, args...)
	fmt.Printf("   %s$ ocf-csync %s\n", n.Name, strings.Join(args, " "))
	stdout, stderr, err := n.Run(ctx, "ocf-csync", full...)
	out := stdout + stderr
	fmt.Print(indent(indent(out)))
	return out, err
}

func write(n *cluster.Node, rel, content string) {
	p := n.Path("/srv/ocf-csync/" + rel)
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, []byte(content), 0o644)
}

func read(n *cluster.Node, rel string) string { return readHost(n.Path("/srv/ocf-csync/" + rel)) }

func readHost(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Sprintf("(%v)\n", err)
	}
	return string(b)
}

func sampleTree(n *cluster.Node) error {
	write(n, "etc/app.conf", "workers = 4\n")
	write(n, "etc/old.conf", "# obsolete\n")
	write(n, "www/index.html", "<h1>Hello</h1>\n")
	write(n, "www/a.css", "h1 { color: teal }\n")
	write(n, "www/img/logo.svg", "<svg/>\n")
	write(n, "www/notes.swp", "editor swap file: excluded\n")
	root := n.Path("/srv/ocf-csync")
	if err := os.Symlink("index.html", filepath.Join(root, "www/home.html")); err != nil {
		return err
	}
	if err := os.Link(filepath.Join(root, "www/a.css"), filepath.Join(root, "www/a-copy.css")); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Join(root, "etc/app.conf"), 0o640); err != nil {
		return err
	}
	if err := os.Chown(filepath.Join(root, "www/index.html"), 33, 33); err != nil {
		return err
	}
	os.MkdirAll(filepath.Join(root, "data"), 0o755)
	big := make([]byte, 8<<20)
	for i := range big {
		big[i] = byte(i*7 + i/4096)
	}
	return os.WriteFile(filepath.Join(root, "data/big.bin"), big, 0o644)
}

func flipByte(p string) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	b := []byte{0}
	if _, err := f.ReadAt(b, 4<<20); err != nil {
		return err
	}
	b[0] ^= 0xff
	_, err = f.WriteAt(b, 4<<20)
	return err
}

// listing prints one line per entry: type, mode, owner, size, short hash.
func listing(n *cluster.Node) string {
	root := n.Path("/srv/ocf-csync")
	var lines []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return nil
		}
		st := fi.Sys().(*syscall.Stat_t)
		desc := fmt.Sprintf("%-11s %4d:%-4d", fi.Mode().String(), st.Uid, st.Gid)
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			t, _ := os.Readlink(p)
			desc += " -> " + t
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			desc += fmt.Sprintf(" %8d sha256:%.12x", len(b), sha256.Sum256(b))
		}
		lines = append(lines, fmt.Sprintf("%-22s %s", rel, desc))
		return nil
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

// same proves the trees identical by a manifest of every entry (type, mode,
// owner, size, mtime in ns, content hash, link target).
func same(c *cluster.Cluster) error {
	var first string
	var sums []string
	for _, n := range c.Nodes() {
		m := manifest(n.Path("/srv/ocf-csync"))
		sum := fmt.Sprintf("%.16x", sha256.Sum256([]byte(m)))
		sums = append(sums, n.Name+" "+sum)
		if first == "" {
			first = m
		} else if m != first {
			return fmt.Errorf("trees differ between node1 and %s:\n%s", n.Name, firstDiff(first, m))
		}
	}
	fmt.Printf("   manifests (type, mode, owner, size, mtime ns, sha256, link target of every entry): %s\n", strings.Join(sums, ", "))
	fmt.Println("   => the trees are IDENTICAL on all three nodes (excluded *.swp files stay local)")
	return nil
}

func manifest(root string) string {
	var lines []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		if strings.HasSuffix(rel, ".swp") {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return nil
		}
		st := fi.Sys().(*syscall.Stat_t)
		line := fmt.Sprintf("%q %v %d:%d %d", rel, fi.Mode(), st.Uid, st.Gid, st.Mtim.Nano())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			t, _ := os.Readlink(p)
			line += " -> " + t
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			line += fmt.Sprintf(" %d %x nlink=%d", len(b), sha256.Sum256(b), st.Nlink)
		}
		lines = append(lines, line)
		return nil
	})
	return strings.Join(lines, "\n")
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("  node1: %s\n  other: %s", x, y)
		}
	}
	return "(no line differs)"
}
