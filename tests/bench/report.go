package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// analysisFile is appended to the report (relative to the repo root, where
// make runs the benchmark).
const analysisFile = "tests/bench/analysis.md"

// section is one table of the report.
type section struct {
	id       string
	samples  []sample
	commands []string
	notes    []string
}

func (s *section) command(c string) {
	if !slices.Contains(s.commands, c) {
		s.commands = append(s.commands, c)
	}
}

func (s *section) note(n string) {
	if !slices.Contains(s.notes, n) {
		s.notes = append(s.notes, n)
	}
}

type report struct {
	p             params
	started       time.Time
	elapsed       time.Duration
	load, loadEnd string
	genD1         time.Duration
	d2            d2Change
	stateDB       int64
	csync2DB      int64
	fanChanged    int
	fanOpens      map[string]float64 // data-file opens per changed file
	scaleDB       map[int]int64
	order         []string
	secs          map[string]*section
	titles        map[string]string
	extraBudgets  []budget
}

func newReport(p params, started time.Time) *report {
	r := &report{p: p, started: started, fanOpens: map[string]float64{}, scaleDB: map[int]int64{},
		secs: map[string]*section{}, titles: map[string]string{}}
	for k, v := range defaultTitles {
		r.titles[k] = v
	}
	return r
}

func (r *report) section(id string) *section {
	if s, ok := r.secs[id]; ok {
		return s
	}
	s := &section{id: id}
	r.secs[id] = s
	r.order = append(r.order, id)
	return s
}

// setTitle names a section's heading.
func (r *report) setTitle(id, title string) { r.titles[id] = title }

// addBudget adds a row (an extra part's) to the budget table and chart.
func (r *report) addBudget(b budget) { r.extraBudgets = append(r.extraBudgets, b) }

func bytesIEC(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func secs(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

func mib(kib int64) string {
	if kib == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f", float64(kib)/1024)
}

// cmdOut is the first line a command prints, or "?".
func cmdOut(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return "?"
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

func machine() string {
	var u unix.Utsname
	unix.Uname(&u)
	mem, model := "?", "?"
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "MemTotal:") {
				var kb int64
				fmt.Sscanf(strings.TrimPrefix(sc.Text(), "MemTotal:"), "%d", &kb)
				mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				model = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	return fmt.Sprintf("nproc %d (%s), memory %s, kernel %s %s",
		runtime.NumCPU(), model, mem, unix.ByteSliceToString(u.Sysname[:]), unix.ByteSliceToString(u.Release[:]))
}

func versions() string {
	commit := cmdOut("git", "rev-parse", "--short", "HEAD")
	if out, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(out))) > 0 {
		commit += " (work tree with uncommitted changes)"
	}
	return fmt.Sprintf("ocf-csync at commit %s, built with %s; %s; csync2 %s; %s",
		commit, runtime.Version(), cmdOut("rsync", "--version"),
		cmdOut("dpkg-query", "-W", "-f=${Version}", "csync2"), cmdOut("ssh", "-V"))
}

var defaultTitles = map[string]string{
	"D1":          "D1: initial push of the small-file tree (every round from an empty target and empty state)",
	"D1-nochange": "D1 no change: check and push when nothing changed",
	"D2":          "D2: 1% modified, 0.1% deleted, 0.1% created (a new change set every round)",
	"floor":       "Physical floor",
	"B0":          "Big file: initial push (set-up for D3, one round, no budget)",
	"D3":          "D3: big file, 1 byte changed in the middle (every round flips it again)",
	"D4":          "D4: big file, 4 KiB inserted at 10% (every round inserts another 4 KiB)",
	"fan-initial": "Fan-out: initial push of the fan-out tree to 1 peer and to 8 peers",
	"fan-change":  "Fan-out: 1% of the fan-out tree changed, pushed to 1 peer and to 8 peers",
	"live":        "Live change of one small file to 2 peers (daemon, watch on)",
	"stop":        "Final sync on stop, nothing pending (SIGTERM to exit)",
}

// stat is a median with its range.
type stat struct {
	med, lo, hi float64
	n           int
}

func stats(v []float64) stat {
	if len(v) == 0 {
		return stat{}
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return stat{med: m, lo: s[0], hi: s[len(s)-1], n: len(s)}
}

func (s stat) String() string {
	if s.n <= 1 {
		return fmt.Sprintf("%.2f×", s.med)
	}
	return fmt.Sprintf("%.2f× (%.2f–%.2f, %d rounds)", s.med, s.lo, s.hi, s.n)
}

func wallOf(s sample) float64 { return s.wall.Seconds() }
func wireOf(s sample) float64 { return float64(s.sent + s.recv) }
func cpuOf(s sample) float64  { return (s.clientCPU + s.serverCPU).Seconds() }

// ratio pairs the samples of toolA and toolB by round and returns the
// statistics of f(a)/f(b). A failed sample of either makes it fail.
func (r *report) ratio(sec, toolA, toolB string, f func(sample) float64) (stat, error) {
	s, ok := r.secs[sec]
	if !ok {
		return stat{}, fmt.Errorf("not measured")
	}
	byRound := map[int]sample{}
	for _, x := range samplesOf(s.samples, toolB) {
		if x.err != nil {
			return stat{}, fmt.Errorf("a %s run failed", toolB)
		}
		byRound[x.round] = x
	}
	var v []float64
	for _, a := range samplesOf(s.samples, toolA) {
		if a.err != nil {
			return stat{}, fmt.Errorf("a %s run failed", toolA)
		}
		if b, ok := byRound[a.round]; ok && f(b) > 0 {
			v = append(v, f(a)/f(b))
		}
	}
	if len(v) == 0 {
		return stat{}, fmt.Errorf("not measured")
	}
	return stats(v), nil
}

// values returns f over every sample of tool, or an error if one failed.
func (r *report) values(sec, tool string, f func(sample) float64) ([]float64, error) {
	s, ok := r.secs[sec]
	if !ok {
		return nil, fmt.Errorf("not measured")
	}
	var v []float64
	for _, x := range samplesOf(s.samples, tool) {
		if x.err != nil {
			return nil, fmt.Errorf("a %s run failed: %v", tool, x.err)
		}
		v = append(v, f(x))
	}
	if len(v) == 0 {
		return nil, fmt.Errorf("not measured")
	}
	return v, nil
}

// budget is one line of the DESIGN.md §11 check. frac is the measured
// value as a fraction of the budget (below 1 passes), lo–hi its range.
type budget struct {
	what, measured string
	pass           bool
	label          string // short, for the chart
	frac, lo, hi   float64
	measuredOK     bool
}

func failed(what, label string, err error) budget {
	return budget{what: what, label: label, measured: "not measured: " + err.Error()}
}

func (r *report) budgets() []budget {
	var out []budget
	ratio := func(what, label, sec, a, b string, limit float64, f func(sample) float64) {
		st, err := r.ratio(sec, a, b, f)
		if err != nil {
			if r.secs[sec] != nil {
				out = append(out, failed(what, label, err))
			}
			return
		}
		out = append(out, budget{what: what, label: label, measured: st.String(), pass: st.med <= limit,
			frac: st.med / limit, lo: st.lo / limit, hi: st.hi / limit, measuredOK: true})
	}
	faster := func(what, label, sec, tool, slowTool string, limit float64) {
		fast, err := r.values(sec, tool, wallOf)
		if err == nil {
			var slow []float64
			if slow, err = r.values(sec, slowTool, wallOf); err == nil {
				f, s := stats(fast), stats(slow)
				q := s.med / f.med
				out = append(out, budget{what: what, label: label, pass: q >= limit, measuredOK: true,
					measured: fmt.Sprintf("%.3gs (median) vs %.3gs = %.1f× faster", f.med, s.med, q),
					frac:     limit / q, lo: limit / (s.med / f.lo), hi: limit / (s.med / f.hi)})
				return
			}
		}
		if r.secs[sec] != nil {
			out = append(out, failed(what, label, err))
		}
	}
	nc := "D1-nochange"
	ratio(fmt.Sprintf("no-change check ≤ 1.5× `find -printf` (ocf-csync sync, %dk files)", r.p.files/1000), "no-change/find", nc, "ocf-csync sync", "find -printf (stat walk)", 1.5, wallOf)
	faster("no-change check ≥ 5× faster than `csync2 -cr`", "no-change vs csync2", nc, "ocf-csync sync", "csync2 -cr", 5)
	ratio("D1 initial ≤ 1.0× rsync (wall)", "D1/rsync", "D1", toolOCF, toolRsync, 1.0, wallOf)
	faster("D1 initial ≥ 20× faster than csync2", "D1 vs csync2", "D1", toolOCF, toolCsync2, 20)
	ratio("D2 ≤ 1.0× rsync (wall)", "D2/rsync", "D2", toolOCF, toolRsync, 1.0, wallOf)
	ratio("D3 wire bytes ≤ 2× rsync", "D3 wire", "D3", toolOCF, toolRsync, 2.0, wireOf)
	ratio("D3 wall ≤ 1.5× rsync", "D3/rsync", "D3", toolOCF, toolRsync, 1.5, wallOf)
	ratio("D4 wire bytes ≤ 2× rsync", "D4 wire", "D4", toolOCF, toolRsync, 2.0, wireOf)
	ratio("D4 wall ≤ 1.5× rsync", "D4/rsync", "D4", toolOCF, toolRsync, 1.5, wallOf)

	if r.secs["D1"] != nil {
		var peak int64
		okRSS := true
		for _, sec := range []string{"D1", "D2", "D1-nochange"} {
			if r.secs[sec] == nil {
				continue
			}
			for _, s := range r.secs[sec].samples {
				if strings.HasPrefix(s.tool, toolOCF) {
					okRSS = okRSS && s.err == nil
					peak = max(peak, s.clientRSS, s.serverRSS)
				}
			}
		}
		lim := int64(64 << 10)
		out = append(out, budget{what: fmt.Sprintf("peak RSS ≤ 64 MiB at %dk files (either side, every D1/D2/no-change run)", r.p.files/1000),
			label: fmt.Sprintf("RSS %dk", r.p.files/1000), measured: fmt.Sprintf("%.1f MiB", float64(peak)/1024),
			pass: okRSS && peak <= lim, measuredOK: okRSS, frac: float64(peak) / float64(lim), lo: float64(peak) / float64(lim), hi: float64(peak) / float64(lim)})
	}

	for _, files := range r.p.scale {
		sec := fmt.Sprintf("scale-scale%d", files)
		if r.secs[sec] == nil {
			continue
		}
		n := scaleName(files)
		ratio(fmt.Sprintf("no-change check ≤ 1.5× `find -printf` at %s files", n), "no-change/find "+n, sec, "ocf-csync check", "find -printf (stat walk)", 1.5, wallOf)
		lim := scaleBudget(files)
		var peak int64
		ok := true
		for _, s := range r.secs[sec].samples {
			if strings.HasPrefix(s.tool, toolOCF) {
				ok = ok && s.err == nil
				peak = max(peak, s.clientRSS)
			}
		}
		f := float64(peak) / float64(lim)
		out = append(out, budget{what: fmt.Sprintf("peak RSS ≤ %d MiB at %s files (first and no-change checks)", lim>>10, n),
			label: "RSS " + n, measured: fmt.Sprintf("%.1f MiB", float64(peak)/1024), pass: ok && peak <= lim, measuredOK: ok, frac: f, lo: f, hi: f})
	}

	if s := r.secs["live"]; s != nil {
		var lat []float64
		fails := 0
		for _, x := range s.samples {
			if x.err != nil {
				fails++
				continue
			}
			lat = append(lat, x.wall.Seconds()*1000)
		}
		if len(lat) == 0 {
			out = append(out, failed("live change to 2 peers: p50 < 100 ms", "live p50", fmt.Errorf("no sample arrived")))
		} else {
			sort.Float64s(lat)
			p50, p99 := pct(lat, 50), pct(lat, 99)
			out = append(out,
				budget{what: fmt.Sprintf("live change to 2 peers: p50 < 100 ms (%d samples)", len(s.samples)), label: "live p50",
					measured: fmt.Sprintf("p50 %.0f ms (min %.0f ms)", p50, lat[0]), pass: p50 < 100 && fails == 0, measuredOK: true,
					frac: p50 / 100, lo: lat[0] / 100, hi: p50 / 100},
				budget{what: fmt.Sprintf("live change to 2 peers: p99 < 500 ms (%d samples)", len(s.samples)), label: "live p99",
					measured: fmt.Sprintf("p99 %.0f ms, max %.0f ms, %d of %d did not arrive within %v", p99, lat[len(lat)-1], fails, len(s.samples), liveWait),
					pass:     p99 < 500 && fails == 0, measuredOK: true, frac: p99 / 500, lo: p99 / 500, hi: lat[len(lat)-1] / 500})
		}
	}
	if v, err := r.values("stop", "final sync on stop", wallOf); r.secs["stop"] != nil {
		if err != nil {
			out = append(out, failed("final sync on stop, nothing pending < 1 s", "stop", err))
		} else {
			st := stats(v)
			out = append(out, budget{what: "final sync on stop, nothing pending < 1 s", label: "stop",
				measured: fmt.Sprintf("%.3fs (median; %.3f–%.3f, %d rounds)", st.med, st.lo, st.hi, st.n), pass: st.med < 1, measuredOK: true,
				frac: st.med, lo: st.lo, hi: st.hi})
		}
	}

	if r.secs["fan-change"] != nil {
		o1, o8 := r.fanOpens[fan1], r.fanOpens[fan8]
		if o1 > 0 {
			q := o8 / o1
			out = append(out, budget{what: "fan-out: each changed file read once per cycle (sender's data-file opens per changed file, 8 peers ÷ 1 peer, ≤ 1.05)",
				label: "fan-out reads", measured: fmt.Sprintf("%.2f ÷ %.2f = %.2f×", o8, o1, q), pass: q <= 1.05, measuredOK: true,
				frac: q / 1.05, lo: q / 1.05, hi: q / 1.05})
		}
		var conc []float64
		for _, x := range samplesOf(r.secs["fan-change"].samples, fan8) {
			if sum, n := peerTimes(x.output); n == 8 && x.err == nil {
				conc = append(conc, sum.Seconds()/x.wall.Seconds())
			}
		}
		if len(conc) > 0 {
			st := stats(conc)
			out = append(out, budget{what: "fan-out: peers served concurrently (8 peers, 1% changed: sum of the per-peer push times ÷ wall, ≥ 4)",
				label: "fan-out overlap", measured: fmt.Sprintf("%.1f (%.1f–%.1f)", st.med, st.lo, st.hi), pass: st.med >= 4, measuredOK: true,
				frac: 4 / st.med, lo: 4 / st.hi, hi: 4 / st.lo})
		}
	}
	return append(out, r.extraBudgets...)
}

// pct is the p-th percentile of sorted v (nearest rank).
func pct(v []float64, p float64) float64 {
	i := int(math.Ceil(p/100*float64(len(v)))) - 1
	return v[max(0, min(i, len(v)-1))]
}

const tableHead = "| tool | result | wall s (median) | every round, wall s | sender CPU s | receiver CPU s (helper alone) | sent | received | sender peak RSS MiB | receiver peak RSS MiB |\n|---|---|---|---|---|---|---|---|---|---|"

// tableRow formats the median sample of a tool with every round's wall.
func tableRow(ss []sample, tool string) string {
	m, _ := median(ss, tool)
	var walls []string
	for _, s := range samplesOf(ss, tool) {
		w := fmt.Sprintf("%.2f", s.wall.Seconds())
		if s.err != nil {
			w = "FAIL"
		}
		walls = append(walls, w)
	}
	if m.err != nil {
		return fmt.Sprintf("| %s | **FAIL** | – | %s | – | – | – | – | – | – |", tool, strings.Join(walls, ", "))
	}
	recvCPU := "–"
	if m.serverCPU > 0 || m.helperCPU > 0 || m.serverRSS > 0 {
		recvCPU = fmt.Sprintf("%s (%s)", secs(m.serverCPU), secs(m.helperCPU))
	}
	return fmt.Sprintf("| %s | PASS | %s | %s | %s | %s | %s | %s | %s | %s |",
		tool, secs(m.wall), strings.Join(walls, ", "), secs(m.clientCPU), recvCPU, bytesIEC(m.sent), bytesIEC(m.recv), mib(m.clientRSS), mib(m.serverRSS))
}

// toolsIn lists the tools of a section in first-seen order.
func toolsIn(sec *section) []string {
	var out []string
	for _, s := range sec.samples {
		if !slices.Contains(out, s.tool) {
			out = append(out, s.tool)
		}
	}
	return out
}

func (r *report) write(path string) error {
	var w strings.Builder
	p := r.p
	mode := "full"
	if p.quick {
		mode = "QUICK (10k files, 128 MiB, csync2 on D1 only, one 500-file fan-out round, live samples for 20 s, 1 M scale: not the budget's scale)"
	}
	fmt.Fprintf(&w, "# Benchmarks\n\nWritten by `make bench` (tests/bench) from the run of %s, %s mode, which took %v. Load average (1, 5, 15 min) at the start: %s; at the end: %s.\n\n",
		r.started.UTC().Format("2006-01-02 15:04 MST"), mode, r.elapsed.Round(time.Second), r.load, r.loadEnd)
	fmt.Fprintf(&w, "- Machine: %s.\n- Software: %s.\n", machine(), versions())
	fmt.Fprintf(&w, "- Topology: %d network-namespace nodes (tests/cluster) on a bridge of veths, each with its own OpenSSH sshd; node1 pushes to node2 (data sets), to node2 and node3 (live changes), to node2 (fan-out, 1 peer) and to node3…node10 (fan-out, 8 peers). Every node shares the same %d cores.\n", nodes, runtime.NumCPU())
	fmt.Fprintf(&w, "- Data: D1 = %d files of %d B–%d KiB (uniform, random bytes) in %d directories (%v to generate); each D2 round modifies %d files by one byte (new mtime), deletes %d and creates %d; big file = %s of random bytes, each D3 round flips its middle byte, each D4 round inserts 4 KiB at 10%%; fan-out tree = %d such small files, %d of them changed per round. A fixed seed makes every run generate the same bytes and mtimes.\n",
		p.files, minSize, maxSize>>10, p.dirs, r.genD1.Round(time.Millisecond), r.d2.modified, r.d2.deleted, r.d2.created, bytesIEC(uint64(p.bigSize)), p.fanFiles, r.fanChanged)
	fmt.Fprintf(&w, "- Rounds: every data set runs ocf-csync and rsync %d times, alternating which goes first; csync2 runs once per data set (round 1). A ratio is the median of the per-round ratios (ocf-csync and rsync of the same round), with the min–max over the rounds; a table row shows the median round and every round's wall time.\n", p.reps)
	w.WriteString(`- The three tools read the same source tree on node1 and write to separate targets on node2 (rsync: /srv/ocf-csync/rsync/SET, csync2: /srv/ocf-csync/csync2/SET through a csync2 ` + "`prefix`" + `, ocf-csync: the source path, as it keeps paths identical). ` + "`sync(2)`" + ` runs before every measurement so no tool pays for another's writeback. Between rounds the targets (and ocf-csync's state databases) are moved aside, not deleted, until the bench ends: this machine's ext4 has no journal, and such an ext4 will not reuse an inode deleted in the last 60–360 s, so every file created in that time first scans past the deleted ones (see the analysis below); a round right after deleting the previous round's 100k files would measure that, not the tool.
- After every push the target is compared with a manifest of the source (relative path, type, permissions, size, sha256, mtime in ns, for every file and directory including the root). A difference marks the row FAIL and no figure is given for it.

How each figure is taken:

- **wall**: from starting the sender's command on node1 to its exit (includes ssh connection set-up).
- **sender CPU, sender peak RSS**: ` + "`/usr/bin/time -f %e:%U:%S:%M`" + ` around the sender's command on node1 (user+sys of it and its reaped children; ru_maxrss of the largest process): for rsync this includes its ssh child (the encryption); ocf-csync does SSH in process; csync2 uses plain TCP (` + "`nossl * *;`" + `). The commands below are shown without this wrapper.
- **receiver CPU**: for rsync and ocf-csync, the growth of the receiving nodes' sshd ` + "`cutime+cstime`" + ` (/proc/PID/stat) over the run, i.e. every process the SSH sessions ran, sshd's decryption included; in brackets the helper alone (` + "`rsync --server`" + ` or ` + "`ocf-csync serve`" + `) from ` + "`/usr/bin/time`" + ` that wraps it (` + "`--rsync-path`" + `, ` + "`remote-command`" + `). For csync2: a fresh one-connection daemon ` + "`csync2 -N node2 -iii`" + ` per run under ` + "`/usr/bin/time`" + `. 10 ms resolution.
- **receiver peak RSS**: ru_maxrss of the helper from ` + "`/usr/bin/time`" + ` (the largest process of its tree) or of the csync2 daemon.
- **sent/received**: node1's eth0 veth tx/rx byte counters (` + "`ip -s link`" + `), i.e. everything on the wire, TCP/IP headers included.
- **live latency**: from writing the file on node1 (the daemon sees it through inotify) until both peers hold the new content, seen through inotify on the peers' directories (polled every 100 ms as a backup).
- **scale**: ` + "`ocf-csync check`" + ` alone (no peer) on node1, first with an empty state database, then unchanged; ` + "`find -printf`" + ` alternates with it.

`)

	budgets := r.budgets()
	chart := chartPath(path)
	if err := writeChart(chart, budgets); err != nil {
		fmt.Fprintf(&w, "(chart not written: %v)\n\n", err)
	} else {
		fmt.Fprintf(&w, "![Every budget row as a fraction of its budget; below 1 passes](%s)\n\n", filepath.Base(chart))
	}
	fmt.Fprintf(&w, "## Budget (DESIGN.md §11)\n\n| budget | measured | result |\n|---|---|---|\n")
	for _, b := range budgets {
		res := "PASS"
		if !b.pass {
			res = "**FAIL**"
		}
		fmt.Fprintf(&w, "| %s | %s | %s |\n", b.what, b.measured, res)
	}
	w.WriteString("\n")

	for _, id := range r.order {
		sec := r.secs[id]
		switch id {
		case "live":
			r.writeLive(&w, sec)
			continue
		case "stop":
			r.writeStop(&w, sec)
			continue
		}
		fmt.Fprintf(&w, "## %s\n\n%s\n", r.titles[id], tableHead)
		for _, tool := range toolsIn(sec) {
			w.WriteString(tableRow(sec.samples, tool) + "\n")
		}
		w.WriteString("\n")
		if id == "floor" {
			if s, ok := median(sec.samples, "ssh node2 'cat >/dev/null' <big file"); ok && s.err == nil {
				fmt.Fprintf(&w, "Raw ssh throughput over the veth: %.0f MB/s (%s in %.2fs, OpenSSH default cipher).\n", float64(p.bigSize)/s.wall.Seconds()/1e6, bytesIEC(uint64(p.bigSize)), s.wall.Seconds())
			}
			if s, ok := median(sec.samples, "cat big file >/dev/null"); ok && s.err == nil {
				fmt.Fprintf(&w, "Reading the big file from the page cache: %.0f MB/s.\n", float64(p.bigSize)/s.wall.Seconds()/1e6)
			}
			w.WriteString("\n")
		}
		if slices.Contains([]string{"D1", "D2", "B0", "D3", "D4"}, id) {
			var parts []string
			for _, other := range []string{toolRsync, toolCsync2} {
				if len(samplesOf(sec.samples, other)) == 0 {
					continue
				}
				wall, err1 := r.ratio(id, toolOCF, other, wallOf)
				wire, err2 := r.ratio(id, toolOCF, other, wireOf)
				cpu, err3 := r.ratio(id, toolOCF, other, cpuOf)
				if err1 != nil || err2 != nil || err3 != nil {
					parts = append(parts, fmt.Sprintf("ocf-csync/%s: n/a (a run failed)", other))
					continue
				}
				parts = append(parts, fmt.Sprintf("ocf-csync/%s wall %s, wire %s, sender+receiver CPU %s", other, wall, wire, cpu))
			}
			if len(parts) > 0 {
				fmt.Fprintf(&w, "Ratios (paired by round): %s.\n\n", strings.Join(parts, "; "))
			}
		}
		if strings.HasPrefix(id, "fan-") {
			wall, err1 := r.ratio(id, fan8, fan1, wallOf)
			cpu, err2 := r.ratio(id, fan8, fan1, func(s sample) float64 { return s.clientCPU.Seconds() })
			if err1 == nil && err2 == nil {
				fmt.Fprintf(&w, "8 peers ÷ 1 peer (paired by round): wall %s, sender CPU %s.\n\n", wall, cpu)
			}
			if id == "fan-change" {
				fmt.Fprintf(&w, "Sender's opens of data files per changed file (one more change, pushed under `strace -f -e trace=openat`, scan included): 1 peer %.2f, 8 peers %.2f.\n\n", r.fanOpens[fan1], r.fanOpens[fan8])
			}
		}
		r.writeNotes(&w, sec)
	}
	fmt.Fprintf(&w, "State on disk on node1 after the run: ocf-csync badger DB %s (D1/D2); csync2 sqlite DB %s.", bytesIEC(uint64(r.stateDB)), bytesIEC(uint64(r.csync2DB)))
	for _, files := range r.p.scale {
		if n, ok := r.scaleDB[files]; ok {
			fmt.Fprintf(&w, " ocf-csync badger DB at %s files: %s.", scaleName(files), bytesIEC(uint64(n)))
		}
	}
	fmt.Fprintf(&w, "\n\nThe csync2 daemon on node2 for each run: `CSYNC2_SYSTEM_DIR=%s csync2 -N node2 -D %s -iii`. Its config (the same on both nodes):\n\n```\n%s```\n", csync2Dir, csync2DB, csync2Config())
	// The analysis is written by hand from the profiles; it is kept next to
	// the code and copied in, so the figures above stay generated.
	if b, err := os.ReadFile(analysisFile); err == nil {
		fmt.Fprintf(&w, "\n%s", b)
	}
	return os.WriteFile(path, []byte(w.String()), 0o644)
}

func (r *report) writeNotes(w *strings.Builder, sec *section) {
	for _, s := range sec.samples {
		if s.err != nil {
			fmt.Fprintf(w, "- %s (round %d) FAIL: %s\n", s.tool, s.round+1, strings.ReplaceAll(s.err.Error(), "\n", " "))
		}
	}
	for _, n := range sec.notes {
		fmt.Fprintf(w, "- %s\n", n)
	}
	if len(sec.commands) > 0 {
		w.WriteString("\nCommands (on node1):\n\n```\n")
		for _, c := range sec.commands {
			w.WriteString(c + "\n")
		}
		w.WriteString("```\n")
	}
	w.WriteString("\n")
}

func (r *report) writeLive(w *strings.Builder, sec *section) {
	fmt.Fprintf(w, "## %s\n\n", r.titles["live"])
	var lat []float64
	for _, s := range sec.samples {
		if s.err == nil {
			lat = append(lat, s.wall.Seconds()*1000)
		}
	}
	if len(lat) > 0 {
		sort.Float64s(lat)
		fmt.Fprintf(w, "| samples | arrived | min ms | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|---|---|\n| %d | %d | %.1f | %.1f | %.1f | %.1f | %.1f |\n\n",
			len(sec.samples), len(lat), lat[0], pct(lat, 50), pct(lat, 90), pct(lat, 99), lat[len(lat)-1])
	}
	fmt.Fprintf(w, "One write of %s on node1 every round, %v after the previous change arrived on both peers.\n\n", liveFile, liveGap)
	r.writeNotes(w, sec)
}

func (r *report) writeStop(w *strings.Builder, sec *section) {
	fmt.Fprintf(w, "## %s\n\n| round | SIGTERM to exit s |\n|---|---|\n", r.titles["stop"])
	for _, s := range sec.samples {
		v := secs(s.wall)
		if s.err != nil {
			v = "**FAIL**"
		}
		fmt.Fprintf(w, "| %d | %s |\n", s.round+1, v)
	}
	w.WriteString("\nThe daemon was started, finished its first cycle (nothing pending), and got SIGTERM: the time is its final sync (every peer is contacted and gets the handoff record) and exit.\n\n")
	r.writeNotes(w, sec)
}
