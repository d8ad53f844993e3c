package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"ocf-csync/tests/cluster"
)

// Fan-out: one source tree pushed by ocf-csync to 1 peer (node2, config
// fan1) and to 8 peers (node3…node10, config fan8). The two configs have
// their own state on node1, so each push is what a node with that many
// peers would do.
const fanSrc = "/srv/ocf-csync/fan"

const (
	fan1 = "1 peer"
	fan8 = "8 peers"
)

func (b *bench) fanPeers(kind string) []*cluster.Node {
	if kind == fan1 {
		return []*cluster.Node{b.r.c.Node(2)}
	}
	return b.r.c.Nodes()[2:10]
}

func fanCfg(kind string) string {
	if kind == fan1 {
		return "fan1"
	}
	return "fan8"
}

// fanJob is ocf-csync's push of the fan-out tree with a config.
func (b *bench) fanJob(kind string) job {
	cfg := fanCfg(kind)
	return job{tool: kind, args: []string{"ocf-csync", "--config", "/etc/ocf-csync/" + cfg + ".cfg", "--node", "node1", "sync"},
		env: ocfEnv(), receiver: viaSSH, timeout: b.p.timeout, peers: b.fanPeers(kind)}
}

func (b *bench) fanOut(ctx context.Context) error {
	p := b.p
	dirs := max(1, p.fanFiles/100)
	root := b.r.n1.Path(fanSrc)
	logf("fan-out: generating %d files in %d directories", p.fanFiles, dirs)
	if err := genD1(root, p.fanFiles, dirs); err != nil {
		return err
	}
	for _, kind := range []string{fan1, fan8} {
		cfg := fanCfg(kind)
		hosts := []string{"node1"}
		for _, n := range b.fanPeers(kind) {
			hosts = append(hosts, n.Name)
		}
		text := b.ocfConfigHosts("fan", fanSrc, "", hosts, true)
		for _, n := range append([]*cluster.Node{b.r.n1}, b.fanPeers(kind)...) {
			if err := os.WriteFile(n.Path("/etc/ocf-csync/"+cfg+".cfg"), []byte(text), 0o600); err != nil {
				return err
			}
		}
	}
	reset := func(kind string) error {
		for _, n := range b.fanPeers(kind) {
			if err := setAside(n, fanSrc, "/var/lib/ocf-csync/"+fanCfg(kind)); err != nil {
				return err
			}
		}
		return setAside(b.r.n1, "/var/lib/ocf-csync/"+fanCfg(kind))
	}
	run := func(id string, round int, kind string) error {
		src, err := manifest(root)
		if err != nil {
			return err
		}
		j := b.fanJob(kind)
		logf("%s round %d: %s", id, round+1, kind)
		s := b.r.measure(ctx, j)
		s.round = round
		if s.err == nil {
			for _, n := range b.fanPeers(kind) {
				if _, err := verify(src, n.Path(fanSrc), false); err != nil {
					s.err = fmt.Errorf("wrong result on %s: %w", n.Name, err)
					break
				}
			}
		}
		if s.err != nil {
			logf("%s: %s FAIL: %v", id, kind, s.err)
		} else {
			logf("%s: %s %.2fs, sender CPU %.2fs", id, kind, s.wall.Seconds(), s.clientCPU.Seconds())
		}
		sec := b.rep.section(id)
		sec.samples = append(sec.samples, s)
		sec.command(cmdLine(j))
		return nil
	}
	order := func(round int) []string {
		if round%2 == 1 {
			return []string{fan8, fan1}
		}
		return []string{fan1, fan8}
	}
	for round := range p.fanReps {
		for _, kind := range []string{fan1, fan8} {
			if err := reset(kind); err != nil {
				return err
			}
		}
		for _, kind := range order(round) {
			if err := run("fan-initial", round, kind); err != nil {
				return err
			}
		}
	}
	for round := range p.fanReps {
		n, err := fanChange(root, p.fanFiles, dirs, round)
		if err != nil {
			return err
		}
		b.rep.fanChanged = n
		for _, kind := range order(round) {
			if err := run("fan-change", round, kind); err != nil {
				return err
			}
		}
	}
	// One more change, pushed under strace: how often the sender opens a
	// data file, per changed file, with 1 and with 8 peers.
	n, err := fanChange(root, p.fanFiles, dirs, p.fanReps)
	if err != nil {
		return err
	}
	for _, kind := range []string{fan1, fan8} {
		opens, err := b.fanOpens(ctx, kind)
		if err != nil {
			return err
		}
		b.rep.fanOpens[kind] = float64(opens) / float64(n)
		logf("fan-out: %s: %d opens of data files for %d changed files", kind, opens, n)
	}
	return nil
}

// fanChange modifies 1% of the fan-out files (one byte, new mtime); round
// picks them.
func fanChange(root string, files, dirs, round int) (int, error) {
	r := rand.New(stream(6, uint64(round)))
	n := max(1, files/100)
	mtime := baseTime.Add(72*time.Hour + time.Duration(round)*time.Hour)
	for _, i := range r.Perm(files)[:n] {
		p := filepath.Join(root, smallPath(i, dirs))
		data, err := os.ReadFile(p)
		if err != nil {
			return 0, fmt.Errorf("fan-out change: %w", err)
		}
		data[r.IntN(len(data))] ^= 0xff
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return 0, fmt.Errorf("fan-out change: %w", err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			return 0, fmt.Errorf("fan-out change: %w", err)
		}
	}
	return n, nil
}

// dataOpen matches a successful open of a generated data file in strace's
// output, by name (the sender may open it relative to a directory fd).
var dataOpen = regexp.MustCompile(`openat\([^"]*"[^"]*f\d{6}\.dat", O_RDONLY.*\) = \d+`)

// fanOpens pushes the current change under strace -f and counts the
// sender's successful opens of data files, scan included.
func (b *bench) fanOpens(ctx context.Context, kind string) (int, error) {
	out := "/run/fan-" + strings.ReplaceAll(kind, " ", "") + ".strace"
	j := b.fanJob(kind)
	args := append([]string{"strace", "-f", "-qq", "-e", "trace=openat", "-o", out}, j.args...)
	cmd := b.r.n1.Command(ctx, args[0], args[1:]...)
	cmd.Env = append(cmd.Env, j.env...)
	if o, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("fan-out under strace (%s): %w: %s", kind, err, lastLines(string(o), 6))
	}
	f, err := os.Open(b.r.n1.Path(out))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	defer os.Remove(b.r.n1.Path(out))
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if dataOpen.MatchString(sc.Text()) {
			n++
		}
	}
	return n, sc.Err()
}

// peerTimes parses ocf-csync sync's per-peer lines ("node3: ok: …, 1.23s")
// and returns the sum of the per-peer push durations.
func peerTimes(output string) (sum time.Duration, peers int) {
	for _, l := range strings.Split(output, "\n") {
		if !strings.HasPrefix(l, "node") || !strings.HasSuffix(l, "s") {
			continue
		}
		i := strings.LastIndex(l, " ")
		v, err := strconv.ParseFloat(strings.TrimSuffix(l[i+1:], "s"), 64)
		if err != nil {
			continue
		}
		sum += time.Duration(v * float64(time.Second))
		peers++
	}
	return sum, peers
}
