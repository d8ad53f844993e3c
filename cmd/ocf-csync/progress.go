package main

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"ocf-csync/ocf"
	"ocf-csync/syncer/engine"
	"ocf-csync/syncer/scan"
)

func progressFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "progress", Usage: "show a live line per peer even when stderr is not a terminal"},
		&cli.BoolFlag{Name: "no-progress", Usage: "never show live progress lines"},
	}
}

// progressSituation is what decides whether live progress lines appear.
type progressSituation struct {
	on, off  bool // --progress, --no-progress
	tty      bool // stderr is a terminal
	ocf      bool // run by the resource agent or Pacemaker (OCF_ROOT, OCF_RESOURCE_INSTANCE)
	dumbTerm bool // TERM unset or dumb (cron, systemd, emacs shells)
	quiet    bool // -q or --json: nothing but the result
	verbose  bool // -v prints a line per file instead
}

// showProgress: --no-progress wins, then --progress; otherwise only on a
// terminal, and never under OCF, in cron (no TERM), with -q, --json or -v.
func showProgress(s progressSituation) bool {
	switch {
	case s.off:
		return false
	case s.on:
		return true
	}
	return s.tty && !s.ocf && !s.dumbTerm && !s.quiet && !s.verbose
}

func progressSituationOf(env Env, c *cli.Context) progressSituation {
	term := env.getenv("TERM")
	return progressSituation{
		on: c.Bool("progress"), off: c.Bool("no-progress"),
		tty:      ocf.IsTerminal(env.Stderr),
		ocf:      env.getenv("OCF_ROOT") != "" || env.getenv("OCF_RESOURCE_INSTANCE") != "",
		dumbTerm: term == "" || term == "dumb",
		quiet:    verbosity(c) < 0 || c.Bool("json"),
		verbose:  verbosity(c) >= 1,
	}
}

// progressUI draws one live line per peer (or one for a scan) on stderr
// with mpb; it is never started unless showProgress said so.
type progressUI struct {
	p    *mpb.Progress
	mu   sync.Mutex
	bars map[string]*peerBar
	cmp  map[string]*compareBar
}

type compareBar struct {
	bar     *mpb.Bar
	entries atomic.Int64
}

type peerBar struct {
	bar      *mpb.Bar
	byBytes  bool // the bar counts bytes (else entries)
	planned  int
	done     int
	start    time.Time
	lastSize int64
}

// newProgressUI draws on w: in place on a terminal; forced onto anything
// else (--progress), a new line each refresh.
func newProgressUI(w io.Writer) *progressUI {
	return &progressUI{
		p: mpb.New(mpb.WithOutput(w), mpb.WithWidth(24), mpb.WithRefreshRate(150*time.Millisecond),
			mpb.ContainerOptional(mpb.WithAutoRefresh(), !ocf.IsTerminal(w))),
		bars: map[string]*peerBar{},
		cmp:  map[string]*compareBar{},
	}
}

// observe takes the engine's per-peer progress.
func (u *progressUI) observe(ev engine.PeerProgress) {
	u.mu.Lock()
	defer u.mu.Unlock()
	pb := u.bars[ev.Peer]
	if pb == nil {
		if ev.Planned == 0 {
			return // nothing to push to this peer: no line
		}
		pb = &peerBar{byBytes: ev.PlannedBytes > 0, planned: ev.Planned, start: time.Now()}
		total := int64(ev.Planned)
		if pb.byBytes {
			total = ev.PlannedBytes
		}
		name := ev.Peer
		pb.bar = u.p.AddBar(total,
			mpb.PrependDecorators(decor.Name(name, decor.WC{C: decor.DindentRight | decor.DextraSpace})),
			mpb.AppendDecorators(
				decor.Any(func(decor.Statistics) string { return pb.counts(ev.PlannedBytes) }, decor.WCSyncSpace),
				decor.OnComplete(decor.Any(func(st decor.Statistics) string { return pb.rate(st) }, decor.WCSyncSpace), ""),
				decor.OnComplete(decor.AverageETA(decor.ET_STYLE_GO, decor.WCSyncSpace), "done"),
			),
			mpb.BarFillerOnAbort("failed"),
		)
		u.bars[ev.Peer] = pb
	}
	if ev.Finished {
		if ev.Err != nil {
			pb.bar.Abort(false)
			return
		}
		pb.bar.SetTotal(-1, true) // complete, whatever was counted
		return
	}
	pb.done = ev.Done
	if pb.byBytes {
		pb.bar.SetCurrent(ev.DoneBytes)
		pb.lastSize = ev.DoneBytes
	} else {
		pb.bar.SetCurrent(int64(ev.Done))
	}
}

// counts is "12/40 files 3.1 MiB/10.0 MiB".
func (pb *peerBar) counts(plannedBytes int64) string {
	s := fmt.Sprintf("%d/%d files", pb.done, pb.planned)
	if pb.byBytes {
		s += fmt.Sprintf(" %s/%s", humanBytes(pb.lastSize), humanBytes(plannedBytes))
	}
	return s
}

// rate is bytes (or files) per second since the peer's line appeared.
func (pb *peerBar) rate(st decor.Statistics) string {
	secs := time.Since(pb.start).Seconds()
	if secs <= 0 {
		return ""
	}
	if pb.byBytes {
		return humanBytes(int64(float64(st.Current)/secs)) + "/s"
	}
	return fmt.Sprintf("%.0f files/s", float64(st.Current)/secs)
}

// scanLine shows a running scan (check): entries seen and bytes hashed;
// its total is unknown until the end.
func (u *progressUI) scanLine(t *scan.Tally) (stop func()) {
	start := time.Now()
	bar := u.p.New(0, mpb.SpinnerStyle(), mpb.PrependDecorators(decor.Name("check", decor.WC{C: decor.DindentRight | decor.DextraSpace})),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
			secs := max(time.Since(start).Seconds(), 0.001)
			return fmt.Sprintf("%d entries, %d files hashed (%s, %s/s)", t.Scanned.Load(), t.Hashed.Load(),
				humanBytes(t.HashedBytes.Load()), humanBytes(int64(float64(t.HashedBytes.Load())/secs)))
		})))
	return func() { bar.SetTotal(-1, true) }
}

// observeCompare takes the engine's per-peer comparison progress: the
// total is unknown, so the line counts entries.
func (u *progressUI) observeCompare(ev engine.CompareProgress) {
	u.mu.Lock()
	defer u.mu.Unlock()
	cb := u.cmp[ev.Peer]
	if cb == nil {
		cb = &compareBar{}
		start := time.Now()
		cb.bar = u.p.New(0, mpb.SpinnerStyle(),
			mpb.PrependDecorators(decor.Name(ev.Peer, decor.WC{C: decor.DindentRight | decor.DextraSpace})),
			mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
				n := cb.entries.Load()
				return fmt.Sprintf("%d entries compared (%.0f/s)", n, float64(n)/max(time.Since(start).Seconds(), 0.001))
			})),
			mpb.BarFillerOnAbort("failed"))
		u.cmp[ev.Peer] = cb
	}
	switch {
	case ev.Finished && ev.Err != nil:
		cb.bar.Abort(false)
	case ev.Finished:
		cb.bar.SetTotal(-1, true)
	default:
		cb.entries.Store(int64(ev.Entries))
	}
}

// wait ends the drawing: every line in its final state.
func (u *progressUI) wait() {
	u.mu.Lock()
	for _, pb := range u.bars {
		if !pb.bar.Completed() && !pb.bar.Aborted() {
			pb.bar.Abort(false)
		}
	}
	for _, cb := range u.cmp {
		if !cb.bar.Completed() && !cb.bar.Aborted() {
			cb.bar.Abort(false)
		}
	}
	u.mu.Unlock()
	u.p.Wait()
}
