package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
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

type report struct {
	p        params
	started  time.Time
	elapsed  time.Duration
	genD1    time.Duration
	d2       d2Change
	stateDB  int64
	csync2DB int64
	order    []string
	secs     map[string]*section
}

func (r *report) section(id string) *section {
	if r.secs == nil {
		r.secs = map[string]*section{}
	}
	if s, ok := r.secs[id]; ok {
		return s
	}
	s := &section{id: id}
	r.secs[id] = s
	r.order = append(r.order, id)
	return s
}

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

var titles = map[string]string{
	"D1":          "D1: initial push of the small-file tree",
	"D1-nochange": "D1 no change: check and push when nothing changed (median of the rounds)",
	"D2":          "D2: 1% modified, 0.1% deleted, 0.1% created",
	"floor":       "Physical floor (median of the rounds)",
	"B0":          "Big file: initial push (set-up for D3, no budget)",
	"D3":          "D3: big file, 1 byte changed in the middle",
	"D4":          "D4: big file, 4 KiB inserted at 10%",
}

// tableRow formats one sample.
func tableRow(s sample) string {
	if s.err != nil {
		return fmt.Sprintf("| %s | **FAIL** | – | – | – | – | – | – | – |", s.tool)
	}
	recvCPU := "–"
	if s.serverCPU > 0 || s.helperCPU > 0 || s.serverRSS > 0 {
		recvCPU = fmt.Sprintf("%s (%s)", secs(s.serverCPU), secs(s.helperCPU))
	}
	return fmt.Sprintf("| %s | PASS | %s | %s | %s | %s | %s | %s | %s |",
		s.tool, secs(s.wall), secs(s.clientCPU), recvCPU, bytesIEC(s.sent), bytesIEC(s.recv), mib(s.clientRSS), mib(s.serverRSS))
}

const tableHead = "| tool | result | wall s | sender CPU s | receiver CPU s (helper alone) | sent | received | sender peak RSS MiB | receiver peak RSS MiB |\n|---|---|---|---|---|---|---|---|---|"

// get returns the sample of tool in a section (median for repeated ones).
func (r *report) get(sec, tool string) (sample, bool) {
	s, ok := r.secs[sec]
	if !ok {
		return sample{}, false
	}
	return median(s.samples, tool)
}

// budget is one line of the DESIGN.md §11 check.
type budget struct {
	what, measured string
	pass           bool
}

func (r *report) budgets() []budget {
	var out []budget
	ratio := func(what, secA, toolA, secB, toolB string, max float64, wire bool) {
		a, okA := r.get(secA, toolA)
		b, okB := r.get(secB, toolB)
		if !okA || !okB || a.err != nil || b.err != nil {
			out = append(out, budget{what, "not measured: a run failed", false})
			return
		}
		va, vb := a.wall.Seconds(), b.wall.Seconds()
		unit := "s"
		if wire {
			va, vb, unit = float64(a.sent+a.recv), float64(b.sent+b.recv), " B"
		}
		q := va / vb
		out = append(out, budget{what, fmt.Sprintf("%.3g%s / %.3g%s = %.2f×", va, unit, vb, unit, q), q <= max})
	}
	faster := func(what, sec, tool, secSlow, toolSlow string, min float64) {
		a, okA := r.get(sec, tool)
		b, okB := r.get(secSlow, toolSlow)
		if !okA || !okB || a.err != nil || b.err != nil {
			out = append(out, budget{what, "not measured: a run failed", false})
			return
		}
		q := b.wall.Seconds() / a.wall.Seconds()
		out = append(out, budget{what, fmt.Sprintf("%.3gs vs %.3gs = %.1f× faster", a.wall.Seconds(), b.wall.Seconds(), q), q >= min})
	}
	ratio("no-change check ≤ 1.5× `find -printf` (ocf-csync sync)", "D1-nochange", "ocf-csync sync", "D1-nochange", "find -printf (stat walk)", 1.5, false)
	faster("no-change check ≥ 5× faster than `csync2 -cr` (ocf-csync sync)", "D1-nochange", "ocf-csync sync", "D1-nochange", "csync2 -cr", 5)
	ratio("D1 initial ≤ 1.0× rsync", "D1", toolOCF, "D1", toolRsync, 1.0, false)
	faster("D1 initial ≥ 20× faster than csync2", "D1", toolOCF, "D1", toolCsync2, 20)
	ratio("D2 ≤ 1.0× rsync", "D2", toolOCF, "D2", toolRsync, 1.0, false)
	ratio("D3 wire bytes ≤ 2× rsync", "D3", toolOCF, "D3", toolRsync, 2.0, true)
	ratio("D3 wall ≤ 1.5× rsync", "D3", toolOCF, "D3", toolRsync, 1.5, false)
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
	out = append(out, budget{fmt.Sprintf("peak RSS ≤ 64 MiB at %dk files (either side)", r.p.files/1000),
		fmt.Sprintf("%.1f MiB", float64(peak)/1024), okRSS && peak <= 64<<10})
	return out
}

func (r *report) write(path string) error {
	var w strings.Builder
	p := r.p
	mode := "full"
	if p.quick {
		mode = "QUICK (10k files, 128 MiB: not the budget's scale)"
	}
	fmt.Fprintf(&w, "# Benchmarks\n\nWritten by `make bench` (tests/bench) from the run of %s, %s mode, which took %v.\n\n",
		r.started.UTC().Format("2006-01-02 15:04 MST"), mode, r.elapsed.Round(time.Second))
	fmt.Fprintf(&w, "- Machine: %s.\n- Software: %s.\n", machine(), versions())
	fmt.Fprintf(&w, "- Topology: two network-namespace nodes (tests/cluster) on a bridge of veths, each with its own OpenSSH sshd; node1 pushes to node2. Both sides share the same 2 cores.\n")
	fmt.Fprintf(&w, "- Data: D1 = %d files of %d B–%d KiB (uniform, random bytes) in %d directories (%v to generate); D2 = D1 with %d files modified by one byte (new mtime), %d deleted and %d created; big file = %s of random bytes, D3 flips its middle byte, D4 then inserts 4 KiB at 10%%. A fixed seed makes every run generate the same bytes and mtimes.\n",
		p.files, minSize, maxSize>>10, p.dirs, r.genD1.Round(time.Millisecond), r.d2.modified, r.d2.deleted, r.d2.created, bytesIEC(uint64(p.bigSize)))
	w.WriteString(`- The three tools read the same source tree on node1 and write to separate targets on node2 (rsync: /srv/ocf-csync/rsync/SET, csync2: /srv/ocf-csync/csync2/SET through a csync2 ` + "`prefix`" + `, ocf-csync: the source path, as it keeps paths identical). Each data set runs every tool once, in an order that rotates from one data set to the next; ` + "`sync(2)`" + ` runs before every measurement so no tool pays for another's writeback.
- After every run the target is compared with a manifest of the source (relative path, type, permissions, size, sha256, mtime in ns, for every file and directory including the root). A difference marks the row FAIL and no figure is given for it.

How each figure is taken:

- **wall**: from starting the sender's command on node1 to its exit (includes ssh connection set-up).
- **sender CPU, sender peak RSS**: ` + "`/usr/bin/time -f %e:%U:%S:%M`" + ` around the sender's command on node1 (user+sys of it and its reaped children; ru_maxrss of the largest process): for rsync this includes its ssh child (the encryption); ocf-csync does SSH in process; csync2 uses plain TCP (` + "`nossl * *;`" + `). The commands below are shown without this wrapper.
- **receiver CPU**: for rsync and ocf-csync, the growth of node2's sshd ` + "`cutime+cstime`" + ` (/proc/PID/stat) over the run, i.e. every process the SSH session ran, sshd's decryption included; in brackets the helper alone (` + "`rsync --server`" + ` or ` + "`ocf-csync serve`" + `) from ` + "`/usr/bin/time`" + ` that wraps it (` + "`--rsync-path`" + `, ` + "`remote-command`" + `). For csync2: a fresh one-connection daemon ` + "`csync2 -N node2 -iii`" + ` per run under ` + "`/usr/bin/time`" + `. 10 ms resolution.
- **receiver peak RSS**: ru_maxrss of the helper from ` + "`/usr/bin/time`" + ` (the largest process of its tree) or of the csync2 daemon.
- **sent/received**: node1's eth0 veth tx/rx byte counters (` + "`ip -s link`" + `), i.e. everything on the wire, TCP/IP headers included.

`)

	fmt.Fprintf(&w, "## Budget (DESIGN.md §11)\n\n| budget | measured | result |\n|---|---|---|\n")
	for _, b := range r.budgets() {
		res := "PASS"
		if !b.pass {
			res = "**FAIL**"
		}
		fmt.Fprintf(&w, "| %s | %s | %s |\n", b.what, b.measured, res)
	}
	w.WriteString("\nNot measured by `make bench`: live change to 2 peers (p50/p99), RSS at 1 M files, final sync on stop.\n\n")

	for _, id := range r.order {
		sec := r.secs[id]
		fmt.Fprintf(&w, "## %s\n\n%s\n", titles[id], tableHead)
		if id == "D1-nochange" || id == "floor" {
			seen := map[string]bool{}
			for _, s := range sec.samples {
				if seen[s.tool] {
					continue
				}
				seen[s.tool] = true
				m, _ := median(sec.samples, s.tool)
				w.WriteString(tableRow(m) + "\n")
			}
		} else {
			for _, s := range sec.samples {
				w.WriteString(tableRow(s) + "\n")
			}
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
		if o, ok := r.get(id, toolOCF); ok && id != "D1-nochange" && id != "floor" {
			var parts []string
			for _, other := range []string{toolRsync, toolCsync2} {
				x, ok := r.get(id, other)
				if !ok || x.err != nil || o.err != nil {
					parts = append(parts, fmt.Sprintf("ocf-csync/%s: n/a (a run failed)", other))
					continue
				}
				parts = append(parts, fmt.Sprintf("ocf-csync/%s wall %.2f×, wire %.2f×, sender+receiver CPU %.2f×", other,
					o.wall.Seconds()/x.wall.Seconds(), float64(o.sent+o.recv)/float64(max(1, x.sent+x.recv)),
					(o.clientCPU+o.serverCPU).Seconds()/max(0.001, (x.clientCPU+x.serverCPU).Seconds())))
			}
			fmt.Fprintf(&w, "Ratios: %s.\n\n", strings.Join(parts, "; "))
		}
		for _, s := range sec.samples {
			if s.err != nil {
				fmt.Fprintf(&w, "- %s FAIL: %s\n", s.tool, strings.ReplaceAll(s.err.Error(), "\n", " "))
			}
		}
		for _, n := range sec.notes {
			fmt.Fprintf(&w, "- %s\n", n)
		}
		w.WriteString("\nCommands (on node1):\n\n```\n")
		seen := map[string]bool{}
		for _, c := range sec.commands {
			if !seen[c] {
				seen[c] = true
				w.WriteString(c + "\n")
			}
		}
		w.WriteString("```\n\n")
	}
	fmt.Fprintf(&w, "State on disk on node1 after the run: ocf-csync badger DB %s; csync2 sqlite DB %s.\n", bytesIEC(uint64(r.stateDB)), bytesIEC(uint64(r.csync2DB)))
	fmt.Fprintf(&w, "\nThe csync2 daemon on node2 for each run: `CSYNC2_SYSTEM_DIR=%s csync2 -N node2 -D %s -iii`. Its config (the same on both nodes):\n\n```\n%s```\n", csync2Dir, csync2DB, csync2Config())
	// The analysis is written by hand from the profiles; it is kept next to
	// the code and copied in, so the figures above stay generated.
	if b, err := os.ReadFile(analysisFile); err == nil {
		fmt.Fprintf(&w, "\n%s", b)
	}
	return os.WriteFile(path, []byte(w.String()), 0o644)
}
