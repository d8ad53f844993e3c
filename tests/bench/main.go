// Command bench is `make bench`: ocf-csync, rsync and csync2 push the same
// data sets between namespace nodes in one run, every result is checked
// against a manifest of the source, and the figures go to BENCHMARKS.md
// (with a chart of every budget row, BENCHMARKS.png).
//
// Every data set runs ocf-csync and rsync -reps times (3), alternating which
// goes first; a budget ratio is the median of the per-round ratios, with
// their min–max. csync2 runs once per data set (its rows are slow).
//
// QUICK=1 (or -quick) runs a 10k-file, 128 MiB version in under 2 minutes
// (csync2 on D1 only, one fan-out round of 500 files, live samples for at
// most 20 s) and writes its report to the temp dir instead of
// BENCHMARKS.md. The
// scale trees (1 M empty files, and 3.6 M outside QUICK) are generated once
// and kept in /var/tmp/ocf-csync-bench, as generating them takes longer
// than the rest of a QUICK run.
//
// For profiling (not for the report): -profile DIR (or $BENCH_PROFILE)
// writes a CPU profile of every ocf-csync client and helper; BENCH_ONLY=
// small,big,live,fan,scale,extra (any subset) runs only those parts;
// BENCH_OCF_ENV="K=V …" adds environment variables to ocf-csync on both
// sides (e.g. GOMEMLIMIT); BENCH_TOOLS=rsync,ocf-csync limits the tools;
// BENCH_REPS=N overrides the rounds; -strace DIR (or $BENCH_STRACE) keeps
// `strace -f -c` counts of both sides of ocf-csync and rsync.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"ocf-csync/tests/cluster"
)

// In-node paths. node1 is the sender; the three tools share its source
// trees and write to separate targets on node2.
const (
	smallSrc  = "/srv/ocf-csync/small" // D1, D2
	bigSrc    = "/srv/ocf-csync/big"   // D3, D4
	bigName   = "file.bin"
	csync2Dir = "/etc/ocf-csync/csync2"     // CSYNC2_SYSTEM_DIR: config, key
	csync2DB  = "/var/lib/ocf-csync/csync2" // csync2 -D
	csync2Tmp = "/var/lib/ocf-csync/csync2tmp"
	benchKey  = "/etc/ocf-csync/bench.key"
	profRun   = "/run/prof" // where ocf-csync writes CPU profiles in a node
)

// nodes: node1 sends; node2 receives the data sets, node2 and node3 the
// live changes; fan-out goes to node2 (1 peer) and node3…node10 (8 peers).
const nodes = 10

const (
	toolRsync  = "rsync"
	toolCsync2 = "csync2"
	toolOCF    = "ocf-csync"
)

// target is where tool's copy of a set ("small" or "big") lives on node2.
func target(tool, set string) string {
	switch tool {
	case toolRsync:
		return "/srv/ocf-csync/rsync/" + set
	case toolCsync2:
		return "/srv/ocf-csync/csync2/" + set
	}
	return "/srv/ocf-csync/" + set // ocf-csync keeps paths identical
}

func source(set string) string {
	if set == "big" {
		return bigSrc
	}
	return smallSrc
}

type params struct {
	quick       bool
	files       int
	dirs        int
	bigSize     int64
	timeout     time.Duration
	reps        int
	liveSamples int
	liveCap     time.Duration // QUICK: stop sampling after this long
	fanFiles    int
	fanReps     int
	scale       []int // file counts of the no-change scale checks
	out         string
	profileDir  string
	straceDir   string
	only        map[string]bool
}

// part reports whether a part of the benchmark runs (BENCH_ONLY).
func (p params) part(name string) bool { return len(p.only) == 0 || p.only[name] }

func main() {
	var p params
	flag.BoolVar(&p.quick, "quick", os.Getenv("QUICK") != "" && os.Getenv("QUICK") != "0", "10k files and a 128 MiB file (default from $QUICK)")
	flag.StringVar(&p.out, "out", "", "report file (default BENCHMARKS.md, or $TMPDIR/BENCHMARKS.quick.md with -quick); the chart goes next to it as .png")
	flag.StringVar(&p.profileDir, "profile", os.Getenv("BENCH_PROFILE"), "write ocf-csync CPU profiles (client and serve) of every run to this `DIR` (default $BENCH_PROFILE)")
	flag.StringVar(&p.straceDir, "strace", os.Getenv("BENCH_STRACE"), "run both sides of ocf-csync and rsync under `strace -f -c` and keep the counts in this `DIR` (default $BENCH_STRACE; not for timing)")
	flag.Parse()
	p.files, p.dirs, p.bigSize, p.timeout, p.reps = 100_000, 1_000, 1<<30, 15*time.Minute, 3
	p.liveSamples, p.fanFiles, p.scale = 100, 20_000, []int{1_000_000, 3_600_000}
	if p.quick {
		p.files, p.dirs, p.bigSize, p.timeout = 10_000, 100, 128<<20, 90*time.Second
		p.fanFiles, p.fanReps, p.liveCap, p.scale = 500, 1, 20*time.Second, []int{1_000_000}
	}
	if n, err := strconv.Atoi(os.Getenv("BENCH_REPS")); err == nil && n > 0 {
		p.reps = n
	}
	if p.fanReps == 0 {
		p.fanReps = p.reps
	}
	if only := os.Getenv("BENCH_ONLY"); only != "" {
		p.only = map[string]bool{}
		for _, s := range strings.Split(only, ",") {
			p.only[strings.TrimSpace(s)] = true
		}
	}
	if p.out == "" {
		p.out = "BENCHMARKS.md"
		if p.quick {
			p.out = filepath.Join(os.TempDir(), "BENCHMARKS.quick.md")
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, p); err != nil {
		fmt.Fprintf(os.Stderr, "\nbench failed: %v\n", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func run(ctx context.Context, p params) error {
	if os.Geteuid() != 0 {
		return errors.New("the benchmark needs root: it creates network namespaces and starts sshd (run: sudo make bench)")
	}
	bin := os.Getenv("OCF_CSYNC_BIN")
	if bin == "" {
		return errors.New("OCF_CSYNC_BIN is not set; run it with 'make bench'")
	}
	for _, t := range []string{"rsync", "csync2", "ssh", "find", "cat", "strace"} {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Errorf("%s not found on PATH (make deps installs it)", t)
		}
	}
	if _, err := os.Stat("/usr/bin/time"); err != nil {
		return errors.New("/usr/bin/time not found (install the Debian package time)")
	}
	started := time.Now()
	logf("starting %d nodes", nodes)
	c, err := cluster.Start(ctx, cluster.Options{Nodes: nodes, Binary: bin})
	if err != nil {
		return err
	}
	defer func() {
		if err := c.Close(); err != nil {
			logf("cleanup: %v", err)
		}
	}()
	r := &runner{c: c, n1: c.Node(1), n2: c.Node(2)}
	b := &bench{p: p, r: r, bin: c.Binary(), rep: newReport(p, started)}
	b.rep.load = loadAvg()
	if err := b.setup(); err != nil {
		return err
	}
	if err := b.all(ctx); err != nil {
		return err
	}
	b.rep.elapsed = time.Since(started)
	b.rep.loadEnd = loadAvg()
	if err := b.rep.write(p.out); err != nil {
		return err
	}
	logf("wrote %s and %s", p.out, chartPath(p.out))
	return nil
}

// loadAvg is /proc/loadavg's first three fields, for the report.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// bench drives the data sets and collects the report.
type bench struct {
	p   params
	r   *runner
	bin string
	rep *report
	src map[string]map[string]entry // set -> source manifest
	d2  d2State
	// serveWrap is put before the helper's remote command while a config
	// is written (strace).
	serveWrap string
}

// setup writes the configs of both tools on both nodes and the directories.
func (b *bench) setup() error {
	key := "bench.key.0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP\n"
	for _, n := range b.r.c.Nodes() {
		for _, d := range []string{smallSrc, bigSrc, csync2Dir, csync2DB, csync2Tmp, profRun,
			target(toolRsync, "small"), target(toolRsync, "big"), target(toolCsync2, "small"), target(toolCsync2, "big")} {
			if err := os.MkdirAll(n.Path(d), 0o755); err != nil {
				return fmt.Errorf("setup %s: %w", n.Name, err)
			}
		}
		files := map[string]string{
			benchKey:                   key,
			csync2Dir + "/csync2.key":  key,
			csync2Dir + "/csync2.cfg":  csync2Config(),
			"/etc/ocf-csync/small.cfg": b.ocfConfig("small", source("small"), ""),
			"/etc/ocf-csync/big.cfg":   b.ocfConfig("big", source("big"), ""),
		}
		for p, data := range files {
			if err := os.WriteFile(n.Path(p), []byte(data), 0o600); err != nil {
				return fmt.Errorf("setup %s: %w", n.Name, err)
			}
		}
	}
	b.src = map[string]map[string]entry{}
	return nil
}

// csync2Config maps each set to the sender's source and, through a prefix,
// to csync2's own target on node2.
func csync2Config() string {
	var s strings.Builder
	// tempdir keeps csync2's temp files out of the shared source tree.
	s.WriteString("nossl * *;\ntempdir " + csync2Tmp + ";\n")
	for _, set := range []string{"small", "big"} {
		fmt.Fprintf(&s, "prefix %s {\n  on node1: %s;\n  on node2: %s;\n}\n", set, source(set), target(toolCsync2, set))
		fmt.Fprintf(&s, "group %s {\n  host node1 node2;\n  key %s/csync2.key;\n  include %%%s%%;\n}\n", set, csync2Dir, set)
	}
	return s.String()
}

// ocfConfig is ocf-csync's config for one group between node1 and node2.
// The helper runs under /usr/bin/time for its peak RSS, and writes a CPU
// profile when prof is set.
func (b *bench) ocfConfig(group, include, prof string) string {
	return b.ocfConfigHosts(group, include, prof, []string{"node1", "node2"}, true)
}

// ocfConfigHosts is ocfConfig for any hosts; timed wraps the helper in
// /usr/bin/time (one helper per node at a time, as it writes one file).
func (b *bench) ocfConfigHosts(group, include, prof string, hosts []string, timed bool) string {
	env := ""
	if prof != "" {
		env = "env OCF_CSYNC_CPUPROFILE=" + prof + " "
	}
	if extra := os.Getenv("BENCH_OCF_ENV"); extra != "" {
		env = "env " + extra + " " + strings.TrimPrefix(env, "env ")
	}
	wrap := ""
	if timed {
		wrap = fmt.Sprintf("/usr/bin/time -o %s -f %s ", timeFile, timeFormat)
	}
	return fmt.Sprintf(`group %s {
  host %s;
  key %s;
  include %s;
}
ssh {
  identity %s;
  known-hosts %s;
  remote-command "%s%s%s%s serve";
}
`, group, strings.Join(hosts, " "), benchKey, include, cluster.ClientKey, cluster.KnownHosts, b.serveWrap, wrap, env, b.bin)
}

func sshCmd() string {
	return "ssh -i " + cluster.ClientKey + " -o UserKnownHostsFile=" + cluster.KnownHosts + " -o BatchMode=yes"
}

// rsyncArgs is the rsync command for a set; delta adds --no-whole-file.
func rsyncArgs(set string, delta bool) []string {
	a := []string{"rsync", "-a", "--delete"}
	if delta {
		a = append(a, "--no-whole-file")
	}
	return append(a, "-e", sshCmd(),
		"--rsync-path", "/usr/bin/time -o "+timeFile+" -f "+timeFormat+" rsync",
		source(set)+"/", "node2:"+target(toolRsync, set)+"/")
}

func csync2Args(set string, mode ...string) []string {
	return append([]string{"csync2", "-N", "node1", "-D", csync2DB, "-G", set}, mode...)
}

func ocfArgs(set string, cmd ...string) []string {
	return append([]string{"ocf-csync", "--config", "/etc/ocf-csync/" + set + ".cfg", "--node", "node1"}, cmd...)
}

// toolJob is the push of one set by one tool.
func (b *bench) toolJob(tool, set string, delta bool) job {
	j := job{tool: tool, timeout: b.p.timeout, receiver: viaSSH}
	switch tool {
	case toolRsync:
		j.args = rsyncArgs(set, delta)
	case toolCsync2:
		j.args = csync2Args(set, "-x")
		j.env = []string{"CSYNC2_SYSTEM_DIR=" + csync2Dir}
		j.receiver = viaCsync2
	case toolOCF:
		j.args = ocfArgs(set, "sync")
		j.env = ocfEnv()
	}
	return j
}

// ocfEnv is BENCH_OCF_ENV as a job environment.
func ocfEnv() []string {
	if extra := os.Getenv("BENCH_OCF_ENV"); extra != "" {
		return strings.Fields(extra)
	}
	return nil
}

// profiled points the ocf-csync client and helper at profile files named
// after label when profiling is on, and with -strace wraps both sides of
// ocf-csync and rsync in `strace -f -c` (syscall counts by name).
func (b *bench) profiled(j job, set, label string) (job, func()) {
	isOCF, isRsync := strings.HasPrefix(j.tool, toolOCF), j.tool == toolRsync
	prof := b.p.profileDir != "" && isOCF
	trace := b.p.straceDir != "" && (isOCF || isRsync)
	if !prof && !trace {
		return j, func() {}
	}
	tag := label + "-" + strings.ReplaceAll(j.tool, " ", "_")
	type fetchFile struct {
		n         *cluster.Node
		path, dir string
	}
	var fetch []fetchFile
	serveProf, serveWrap := "", ""
	if prof {
		client, serve := profRun+"/"+tag+"-client.prof", profRun+"/"+tag+"-serve.prof"
		j.env = append(j.env, "OCF_CSYNC_CPUPROFILE="+client)
		serveProf = serve
		fetch = append(fetch, fetchFile{b.r.n1, client, b.p.profileDir}, fetchFile{b.r.n2, serve, b.p.profileDir})
	}
	if trace {
		sender, receiver := profRun+"/"+tag+"-sender.strace", profRun+"/"+tag+"-receiver.strace"
		// BENCH_STRACE_WALL=1 counts wall time in each syscall (-w), which
		// shows where a side waits; the default counts system CPU time.
		flags := []string{"-f", "-c"}
		if os.Getenv("BENCH_STRACE_WALL") != "" {
			flags = append(flags, "-w")
		}
		j.args = append(append(append([]string{"strace"}, flags...), "-o", sender), j.args...)
		serveWrap = "strace " + strings.Join(flags, " ") + " -o " + receiver + " "
		if isRsync {
			i := slices.Index(j.args, "--rsync-path")
			j.args[i+1] = serveWrap + j.args[i+1]
		}
		fetch = append(fetch, fetchFile{b.r.n1, sender, b.p.straceDir}, fetchFile{b.r.n2, receiver, b.p.straceDir})
	}
	cfg := "/etc/ocf-csync/" + set + ".cfg"
	if isOCF {
		b.serveWrap = serveWrap
		for _, n := range b.r.c.Nodes()[:2] {
			os.WriteFile(n.Path(cfg), []byte(b.ocfConfig(set, source(set), serveProf)), 0o600)
		}
		b.serveWrap = ""
	}
	return j, func() {
		if isOCF {
			for _, n := range b.r.c.Nodes()[:2] {
				os.WriteFile(n.Path(cfg), []byte(b.ocfConfig(set, source(set), "")), 0o600)
			}
		}
		for _, f := range fetch {
			os.MkdirAll(f.dir, 0o755)
			if data, err := os.ReadFile(f.n.Path(f.path)); err == nil {
				os.WriteFile(filepath.Join(f.dir, filepath.Base(f.path)), data, 0o644)
			}
		}
	}
}

// tools lists the tools of a round: ocf-csync and rsync alternate which
// goes first; csync2 (if wanted) runs in round 0 only, in a position that
// rotates with the data set.
func (b *bench) tools(round int, withCsync2 bool, setIndex int) []string {
	pair := []string{toolRsync, toolOCF}
	if round%2 == 1 {
		pair = []string{toolOCF, toolRsync}
	}
	out := pair
	if withCsync2 && round == 0 {
		k := setIndex % 3
		out = slices.Insert(slices.Clone(pair), k, toolCsync2)
	}
	if only := os.Getenv("BENCH_TOOLS"); only != "" {
		out = slices.DeleteFunc(out, func(t string) bool { return !slices.Contains(strings.Split(only, ","), t) })
	}
	return out
}

// Targets are set aside between rounds, never deleted while the bench
// measures (setAside). This machine's ext4 has no journal, and ext4
// without a journal does not reuse an inode deleted in the last 60 s (360 s
// while its inode-table block is dirty, which creating files in it makes
// it): every file created meanwhile first scans past the recently deleted
// inodes, one buffer lookup each (RECENTCY_MIN and RECENTCY_DIRTY in
// fs/ext4/ialloc.c). perf of a loop creating 100k files 35 s after deleting
// 100k others: recently_deleted() 71% of the run, 2.7x the time of the same
// loop on a fresh tree. The set-aside trees go with the cluster's files
// when the bench ends.

// pushRounds runs a push data set reps times. Before round r, prepare(r)
// changes the source (nil: nothing); before every round after the first,
// reset (nil: none) puts every tool's target back.
func (b *bench) pushRounds(ctx context.Context, id, set string, delta bool, setIndex int,
	prepare func(round int) error, reset func() error) error {
	sec := b.rep.section(id)
	for round := range b.p.reps {
		if round > 0 && reset != nil {
			if err := reset(); err != nil {
				return err
			}
		}
		if prepare != nil {
			if err := prepare(round); err != nil {
				return err
			}
		}
		src, err := manifest(b.r.n1.Path(source(set)))
		if err != nil {
			return err
		}
		b.src[set] = src
		for _, tool := range b.tools(round, !b.p.quick || id == "D1", setIndex) {
			if err := ctx.Err(); err != nil {
				return err
			}
			j, done := b.profiled(b.toolJob(tool, set, delta), set, fmt.Sprintf("%s-%d", id, round))
			logf("%s round %d: %s", id, round+1, strings.Join(j.args, " "))
			s := b.r.measure(ctx, j)
			s.round = round
			done()
			if s.err == nil {
				dt, err := verify(src, b.r.n2.Path(target(tool, set)), tool == toolCsync2)
				if err != nil {
					s.err = fmt.Errorf("wrong result: %w", err)
				}
				if dt > 0 {
					sec.note(fmt.Sprintf("%s left %d of %d directory mtimes different from the source (csync2 does not keep directory mtimes; counted as a known csync2 limitation, not a failure; files are exact).", tool, dt, countDirs(src)))
				}
			}
			if err := sourceUnchanged(src, b.r.n1.Path(source(set))); err != nil {
				s.err = fmt.Errorf("%s: %w", tool, err)
				logf("%s: %v; taking a new source manifest", id, s.err)
				if src, err = manifest(b.r.n1.Path(source(set))); err != nil {
					return err
				}
				b.src[set] = src
			}
			if s.err != nil {
				logf("%s: %s FAIL: %v", id, tool, s.err)
			} else {
				logf("%s: %s %.2fs, %s on the wire", id, tool, s.wall.Seconds(), bytesIEC(s.sent+s.recv))
			}
			sec.samples = append(sec.samples, s)
			sec.command(cmdLine(j))
		}
	}
	return nil
}

// cmdLine shows a job as a shell command.
func cmdLine(j job) string {
	var parts []string
	for _, e := range j.env {
		if !strings.HasPrefix(e, "OCF_CSYNC_CPUPROFILE=") {
			parts = append(parts, e)
		}
	}
	if len(j.args) == 3 && j.args[0] == "sh" && j.args[1] == "-c" {
		return strings.Join(append(parts, j.args[2]), " ")
	}
	for _, a := range j.args {
		if strings.ContainsAny(a, " %") {
			a = "'" + a + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// localJob is a command without a receiver (a no-change check or a floor
// measurement); callers repeat it and the report takes the median.
func (b *bench) localJob(tool string, args ...string) job {
	return job{tool: tool, args: args, receiver: viaNone, timeout: b.p.timeout}
}

func (b *bench) all(ctx context.Context) error {
	parts := []struct {
		name string
		run  func(context.Context) error
	}{
		{"small", b.smallSets},
		{"big", b.bigSets},
		{"fan", b.fanOut},
		{"live", b.live},
		{"scale", b.scaleChecks},
	}
	for _, part := range parts {
		if !b.p.part(part.name) {
			continue
		}
		if err := part.run(ctx); err != nil {
			return err
		}
	}
	return nil
}

// setAside moves in-node paths out of the way on a node (to a directory
// the cluster's cleanup removes at the end), so the next round starts from
// nothing without a deletion the next file creations would pay for (see
// above pushRounds).
func setAside(n *cluster.Node, paths ...string) error {
	aside := filepath.Join(n.Dir, "bench-aside") // the node's own files: same file system, removed with the cluster
	if err := os.MkdirAll(aside, 0o700); err != nil {
		return err
	}
	for _, p := range paths {
		asideSeq++
		err := os.Rename(n.Path(p), filepath.Join(aside, fmt.Sprintf("%d-%s", asideSeq, filepath.Base(p))))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("reset %s on %s: %w", p, n.Name, err)
		}
	}
	return nil
}

var asideSeq int

// rmNode removes in-node paths on a node (a state db: a few files).
func rmNode(n *cluster.Node, paths ...string) error {
	for _, p := range paths {
		if err := os.RemoveAll(n.Path(p)); err != nil {
			return fmt.Errorf("reset %s on %s: %w", p, n.Name, err)
		}
	}
	return nil
}

// smallSets runs D1 (every round from an empty target), D1 no-change and
// D2 (a new change set every round).
func (b *bench) smallSets(ctx context.Context) error {
	p := b.p
	small := b.r.n1.Path(smallSrc)
	logf("generating D1: %d files in %d directories", p.files, p.dirs)
	t0 := time.Now()
	if err := genD1(small, p.files, p.dirs); err != nil {
		return err
	}
	b.rep.genD1 = time.Since(t0)

	reset := func() error {
		if err := setAside(b.r.n2, target(toolRsync, "small")); err != nil {
			return err
		}
		// A first push: nothing on the peer, no state on either side.
		if err := setAside(b.r.n2, target(toolOCF, "small"), "/var/lib/ocf-csync/small"); err != nil {
			return err
		}
		if err := setAside(b.r.n1, "/var/lib/ocf-csync/small"); err != nil {
			return err
		}
		return os.MkdirAll(b.r.n2.Path(target(toolRsync, "small")), 0o755)
	}
	if err := b.pushRounds(ctx, "D1", "small", false, 0, nil, reset); err != nil {
		return err
	}
	// Extras (the SFTP row) run on the D1 tree, before anything changes it.
	for _, x := range extras {
		if !b.p.part("extra") {
			break
		}
		logf("extra: %s", x.name)
		if err := x.run(ctx, b); err != nil {
			return fmt.Errorf("%s: %w", x.name, err)
		}
	}

	// No change: nothing was touched since the pushes.
	logf("D1 no-change: %d rounds", p.reps)
	nc := b.rep.section("D1-nochange")
	jobs := []job{
		b.localJob("find -printf (stat walk)", "find", smallSrc, "-printf", `%s\n`),
		b.localJob("ocf-csync check", ocfArgs("small", "check")...),
		b.localJob("ocf-csync sync", ocfArgs("small", "sync")...),
		b.localJob("csync2 -cr", csync2Args("small", "-cr", smallSrc)...),
		b.localJob("rsync (no change)", rsyncArgs("small", false)...),
	}
	jobs[3].env = []string{"CSYNC2_SYSTEM_DIR=" + csync2Dir}
	jobs[2].receiver, jobs[4].receiver = viaSSH, viaSSH
	jobs[2].mayNotConnect = true // nothing to push may mean no connection
	jobs[1].env, jobs[2].env = ocfEnv(), ocfEnv()
	for rep := range p.reps {
		for i, j := range jobs {
			j, done := b.profiled(j, "small", fmt.Sprintf("nochange-%s-%d", j.args[len(j.args)-1], rep))
			if i == 0 {
				j = findJob(j, smallSrc)
			}
			s := b.r.measure(ctx, j)
			s.round = rep
			done()
			if s.err != nil {
				logf("no-change: %s FAIL: %v", j.tool, s.err)
			}
			nc.samples = append(nc.samples, s)
			nc.command(cmdLine(j))
		}
	}
	for _, j := range jobs {
		if j.tool == "ocf-csync sync" || j.tool == "rsync (no change)" {
			if _, err := verify(b.src["small"], b.r.n2.Path(target(map[string]string{"ocf-csync sync": toolOCF, "rsync (no change)": toolRsync}[j.tool], "small")), false); err != nil {
				nc.note(fmt.Sprintf("%s left a wrong target: %v", j.tool, err))
			}
		}
	}

	b.d2 = newD2State(p.files)
	prepare := func(round int) error {
		logf("generating D2 round %d", round+1)
		ch, err := b.d2.apply(small, p.files, p.dirs, round)
		b.rep.d2 = ch
		return err
	}
	return b.pushRounds(ctx, "D2", "small", true, 1, prepare, nil)
}

// bigSets runs the physical floor, the big file's first push, D3 and D4.
func (b *bench) bigSets(ctx context.Context) error {
	p := b.p
	big := filepath.Join(b.r.n1.Path(bigSrc), bigName)
	logf("generating the %s file", bytesIEC(uint64(p.bigSize)))
	if err := genBig(big, p.bigSize); err != nil {
		return err
	}
	if err := b.floor(ctx); err != nil {
		return err
	}
	// The first push is a set-up for D3: one round is enough.
	reps := b.p.reps
	b.p.reps = 1
	err := b.pushRounds(ctx, "B0", "big", false, 2, nil, nil)
	b.p.reps = reps
	if err != nil {
		return err
	}
	if err := b.pushRounds(ctx, "D3", "big", true, 0, func(round int) error { return flipMiddle(big, round) }, nil); err != nil {
		return err
	}
	if err := b.pushRounds(ctx, "D4", "big", true, 1, func(round int) error { return insertAt10(big, round) }, nil); err != nil {
		return err
	}
	b.rep.stateDB = dirSize(b.r.n1.Path("/var/lib/ocf-csync/small"))
	b.rep.csync2DB = dirSize(b.r.n1.Path(csync2DB))
	return nil
}

// findJob sends find's output straight to /dev/null, as the shell would.
func findJob(j job, root string) job {
	j.args = []string{"sh", "-c", "find " + root + " -printf '%s\\n' >/dev/null"}
	return j
}

// floor measures the physical limits: stat walk, reading the big file, and
// raw ssh throughput over the veth.
func (b *bench) floor(ctx context.Context) error {
	sec := b.rep.section("floor")
	bigIn := bigSrc + "/" + bigName
	jobs := []job{
		b.localJob("find -printf (stat walk, D2 tree)", "sh", "-c", "find "+smallSrc+" -printf '%s\\n' >/dev/null"),
		b.localJob("cat big file >/dev/null", "sh", "-c", "cat "+bigIn+" >/dev/null"),
		b.localJob("ssh node2 'cat >/dev/null' <big file", "sh", "-c", sshCmd()+" node2 'cat >/dev/null' <"+bigIn),
	}
	jobs[2].receiver = viaSSH
	jobs[2].args[2] = sshCmd() + " node2 '/usr/bin/time -o " + timeFile + " -f " + timeFormat + " cat >/dev/null' <" + bigIn
	// File creation is this VM's bottleneck for small files: one local copy
	// of a tenth of the tree (one top directory) shows its cost per file.
	cp := b.localJob(fmt.Sprintf("cp -a of %d files (a tenth of D2), local", b.p.files/10), "sh", "-c",
		"rm -rf /srv/ocf-csync/cpfloor && sync && cp -a "+smallSrc+"/a00 /srv/ocf-csync/cpfloor")
	if _, err := os.Stat(b.r.n1.Path(smallSrc + "/a00")); err == nil {
		logf("floor: %s", cp.tool)
		s := b.r.measure(ctx, cp)
		if s.err != nil {
			return fmt.Errorf("physical floor: %w", s.err)
		}
		sec.samples = append(sec.samples, s)
		sec.command(cmdLine(cp))
		if err := setAside(b.r.n1, "/srv/ocf-csync/cpfloor"); err != nil {
			return err
		}
	}
	for rep := range b.p.reps {
		for _, j := range jobs {
			logf("floor: %s", j.tool)
			s := b.r.measure(ctx, j)
			if s.err != nil {
				return fmt.Errorf("physical floor: %w", s.err)
			}
			s.round = rep
			sec.samples = append(sec.samples, s)
			sec.command(cmdLine(j))
		}
	}
	return nil
}

func dirSize(p string) int64 {
	var n int64
	filepath.Walk(p, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// median returns the sample with the median wall time among those of tool
// (a failed one if any failed).
func median(ss []sample, tool string) (sample, bool) {
	m := samplesOf(ss, tool)
	if len(m) == 0 {
		return sample{}, false
	}
	for _, s := range m {
		if s.err != nil {
			return s, true
		}
	}
	sort.Slice(m, func(i, j int) bool { return m[i].wall < m[j].wall })
	return m[len(m)/2], true
}

func samplesOf(ss []sample, tool string) []sample {
	var m []sample
	for _, s := range ss {
		if s.tool == tool {
			m = append(m, s)
		}
	}
	return m
}

func countDirs(m map[string]entry) int {
	n := 0
	for _, e := range m {
		if e.typ == fs.ModeDir {
			n++
		}
	}
	return n
}

// extraPart is an optional part of the benchmark that another file of this
// package registers from its init function, e.g. the SFTP row:
//
//	func init() { registerExtra("sftp", runSFTP) }
//
// run gets the bench: b.r.measure(ctx, job) measures a command on node1
// (job.peers picks the receivers), b.rep.section(id) with
// b.rep.setTitle(id, title) adds a table, and b.rep.addBudget(budget{…})
// adds a row to the budget table and the chart. Extras run right after D1,
// on the D1 tree (node1:/srv/ocf-csync/small, which they must not change),
// as part of the small sets; BENCH_ONLY=small leaves them out unless extra
// is listed too.
type extraPart struct {
	name string
	run  func(ctx context.Context, b *bench) error
}

var extras []extraPart

func registerExtra(name string, run func(context.Context, *bench) error) {
	extras = append(extras, extraPart{name, run})
}
