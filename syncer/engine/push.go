package engine

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"ocf-csync/syncer/config"
	"ocf-csync/syncer/delta"
	"ocf-csync/syncer/proto"
	"ocf-csync/syncer/scan"
	"ocf-csync/syncer/state"
)

// Channel is a byte stream to `ocf-csync serve` on a peer.
type Channel interface {
	io.Reader
	io.Writer
	CloseWrite() error // end of the helper's stdin
	Wait() error       // the helper's exit status
	Close() error
	Counters() (sent, received int64)
}

// Connector opens a Channel to a peer.
type Connector func(ctx context.Context, peer config.Host) (Channel, error)

// Options drive a push.
type Options struct {
	View      *config.NodeView
	Store     *state.Store
	Connect   Connector
	Peers     []string // only these peers (csync2 -P); empty = all
	Groups    []string // only these groups (csync2 -G); empty = all
	Paths     []string // only these paths (csync2 -u file...); empty = all
	Recursive bool
	DryRun    bool // nothing is written anywhere: not on peers, not in the DB
	Log       *slog.Logger
	Progress  io.Writer // per-file lines (-v); nil = none
	// Handoff, when set (the final sync of a stopping active node), is
	// written on every peer this run brings fully up to date; every peer
	// is contacted, even one with nothing pending.
	Handoff *state.Handoff
	// Mark, when set (the first cycle of a newly active node), is sent to
	// every peer as an unclean handoff record: "this node is active at this
	// epoch". A later takeover finds in it which node to guard against.
	Mark *state.Handoff
	// Blocked peers (failover guard) get nothing; the value says why.
	Blocked map[string]string
	// Refusals are the scan's refused include roots (scan.Result.Refused):
	// the groups they belong to push nothing this cycle. Scanned says a
	// scan ran; without one (update) the recorded root refusals still hold.
	Refusals []state.Refusal
	Scanned  bool
	// AllowMassDelete (sync --allow-mass-delete, this run only) pushes
	// deletions beyond the safety block's max-delete and max-delete-count.
	AllowMassDelete bool
	// SFTP opens sessions to the config's SFTP targets (ssh sftp-hosts);
	// nil dials them with the config's ssh settings.
	SFTP SFTPDialer
	// reads shares small files between the peers of this push (set by
	// Push when it serves more than one).
	reads *readCache
	// Pool, when set, carries the pushes over sessions kept open between
	// runs (the daemon); nil opens one per peer and run with Connect.
	Pool *Pool
	// Observe, when set, hears each peer's progress: once when its plan is
	// made, after every item the peer settled, and when it is done. It is
	// called from the peer's goroutine and must be quick.
	Observe func(PeerProgress)
}

// PeerProgress is how far the push to one peer is: entries and bytes of
// regular files settled (applied, equal, refused or failed) of those planned.
type PeerProgress struct {
	Peer                    string
	Planned, Done           int
	PlannedBytes, DoneBytes int64
	Finished                bool  // the last call for this peer; Done* are not set in it
	Err                     error // with Finished: why the peer was not synced
}

// PeerResult is what happened with one peer.
type PeerResult struct {
	Peer                           string
	Planned, Updated, Same         int
	Deleted, Conflicts, Refused    int
	Failed, Skipped                int
	SkippedPaths                   []string // local changes not pushed: this node is a slave in their group
	AutoResolved                   int      // conflicts the local side won under auto (or as master): re-sent forced
	PeerWins                       int      // conflicts (counted in Conflicts) the peer's version wins under auto
	DataBytes, WireSent, WireRecvd int64
	Duration                       time.Duration
	Err                            error
	Problems                       []string
	Blocked                        string // why the failover guard skipped this peer
	HandedOff                      bool   // the handoff record was written on the peer (an SFTP target: the final sync left nothing pending)
	Held                           int    // entries of refused groups: not sent, still pending

	changed      []*item         // reached the peer with a content, type or deletion change
	deletedBy    map[string]int  // deletions the peer applied, per group
	okGroups     map[string]bool // groups the peer applied something of
	rootRefusals []state.Refusal // the peer's include roots that refused our changes
}

// Result is the outcome of a push.
type Result struct {
	Peers []PeerResult
	// do-local and do-local-only actions run on this node after the push.
	LocalActionsRun    int
	LocalActionsFailed []string
	// Refusals is what this cycle held back (include roots, mass deletions,
	// receivers' roots); Fresh are those not recorded by the cycle before,
	// to notify about once.
	Refusals []state.Refusal `json:"refusals"`
	Fresh    []state.Refusal `json:"-"`
}

// Err summarizes what did not sync, or nil. Refusals come first, as a
// *RefusedError.
func (r Result) Err() error {
	var errs []error
	if len(r.Refusals) > 0 {
		errs = append(errs, &RefusedError{Refusals: r.Refusals})
	}
	for _, p := range r.Peers {
		if p.Err != nil {
			errs = append(errs, fmt.Errorf("peer %s: %w", p.Peer, p.Err))
		}
		if n := p.Conflicts - p.PeerWins; n > 0 {
			errs = append(errs, fmt.Errorf("peer %s: %d conflict(s): nothing was written for them; see 'ocf-csync conflicts', then 'ocf-csync force PATH' on the side that should win", p.Peer, n))
		}
		if p.PeerWins > 0 {
			errs = append(errs, fmt.Errorf("peer %s: %d conflict(s) where the peer's version wins under the group's auto policy: ours stays dirty and is replaced when %s pushes (see 'ocf-csync conflicts')", p.Peer, p.PeerWins, p.Peer))
		}
		if n := p.Refused + p.Failed; n > 0 {
			errs = append(errs, fmt.Errorf("peer %s: %d file(s) refused or failed: %s", p.Peer, n, strings.Join(firstN(p.Problems, 5), "; ")))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errors.Join(errs...)
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("and %d more", len(s)-n))
	}
	return s
}

// InPeers reports whether a run limited to only (sync --peers; empty: every
// peer) pushes to peer. Host names compare case-insensitively.
func InPeers(only []string, peer string) bool {
	return len(only) == 0 || slices.ContainsFunc(only, func(o string) bool { return strings.EqualFold(o, peer) })
}

// Push sends every dirty entry to its peer, peers concurrently.
func Push(ctx context.Context, o Options) (Result, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	peers, err := o.Store.DirtyPeers()
	if err != nil {
		return Result{}, fmt.Errorf("list peers with pending changes: %w", err)
	}
	if o.Handoff != nil || o.Mark != nil {
		peers = unionPeers(peers, o.View)
	}
	peers = slices.DeleteFunc(peers, func(p string) bool { return !InPeers(o.Peers, p) })
	var groups map[string]bool
	if len(o.Groups) > 0 {
		groups = map[string]bool{}
		for _, g := range o.Groups {
			groups[g] = true
		}
	}
	if !o.DryRun {
		// What reaches a peer must be recorded here, or the next run
		// sends it again and cannot tell a conflict from its own change.
		if err := o.Store.Writable(); err != nil {
			return Result{}, err
		}
		if _, _, err := RunLeftoverActions(o.Store, o.Log, o.View.Name); err != nil {
			o.Log.Error("run leftover actions", "error", err)
		}
	}
	res := Result{Peers: make([]PeerResult, len(peers))}
	sf := &safety{o: &o, skip: map[string]bool{}}
	if err := sf.rootRefusals(); err != nil {
		return Result{}, err
	}
	// Plan every peer first: the mass-delete threshold looks at all of them.
	plans := make([]*plan, len(peers))
	var wg sync.WaitGroup
	for i, peer := range peers {
		if _, ok := o.Blocked[peer]; ok {
			continue
		}
		wg.Go(func() {
			p, err := buildPlan(o.Store, o.View, peer, groups, o.Paths, o.Recursive)
			if err != nil {
				res.Peers[i] = PeerResult{Peer: peer, Err: err}
				return
			}
			plans[i] = p
		})
	}
	wg.Wait()
	now := time.Now()
	if err := sf.massDelete(slices.DeleteFunc(slices.Clone(plans), func(p *plan) bool { return p == nil }), now); err != nil {
		return Result{}, err
	}
	if n := countSessions(o.View, peers, plans, o.Blocked); n > 1 && !o.DryRun {
		o.reads = newReadCache(n)
	}
	var outMu sync.Mutex
	for i, peer := range peers {
		if why, ok := o.Blocked[peer]; ok {
			n, _ := o.Store.DirtyCount(peer)
			res.Peers[i] = PeerResult{Peer: peer, Planned: n, Blocked: why}
			continue
		}
		if plans[i] == nil {
			continue // planning failed: res.Peers[i] holds the error
		}
		sf.exclude(plans[i])
		wg.Go(func() {
			if isSFTPTarget(o.View, peer) {
				res.Peers[i] = pushSFTP(ctx, &o, plans[i], &outMu)
				return
			}
			res.Peers[i] = pushPeer(ctx, &o, plans[i], &outMu)
		})
	}
	wg.Wait()
	sort.Slice(res.Peers, func(i, j int) bool { return res.Peers[i].Peer < res.Peers[j].Peer })
	if !o.DryRun {
		res.LocalActionsRun, res.LocalActionsFailed = runLocalActions(&o, res.Peers)
	}
	if err := sf.peerRefusals(res.Peers); err != nil {
		return res, err
	}
	res.Refusals = sf.refusals
	fresh, err := sf.record(res.Peers, now)
	if err != nil {
		o.Log.Error("record refusals", "err", err)
	}
	res.Fresh = fresh
	return res, nil
}

// countSessions counts the peers this push streams files to itself
// (planned, not blocked, not SFTP targets).
func countSessions(view *config.NodeView, peers []string, plans []*plan, blocked map[string]string) int {
	n := 0
	for i, peer := range peers {
		if _, ok := blocked[peer]; !ok && plans[i] != nil && plans[i].creates > 0 && !isSFTPTarget(view, peer) {
			n++
		}
	}
	return n
}

// runLocalActions runs the do-local and do-local-only actions of the files
// that reached at least one peer, once per (command, logfile).
func runLocalActions(o *Options, peers []PeerResult) (int, []string) {
	var q actionQueue
	for _, p := range peers {
		for _, it := range p.changed {
			q.add(it.group, it.path, true)
		}
	}
	if q.empty() {
		return 0, nil
	}
	queued, err := q.persist(o.Store)
	if err != nil {
		o.Log.Error("queue local actions", "error", err)
	}
	return runQueued(o.Store, o.Log, o.View.Name, queued)
}

func hostOf(view *config.NodeView, name string) (config.Host, bool) {
	for _, g := range view.Groups {
		for _, h := range g.Peers() {
			if h.Name == name {
				return h, true
			}
		}
	}
	return config.Host{}, false
}

// window bounds operations in flight per peer, so memory stays flat.
const window = 4096

type pend struct {
	it       *item
	op       proto.OpKind
	sent     state.FileRecord // what we asked the peer to have
	isDelete bool
	handoff  bool
	marker   bool // an "I am active" record, not the final handoff
}

type event struct {
	seq    uint64
	resend *item // a conflict this node won: send it again, forced
	retry  bool
	have   bool
	sig    *delta.Stream // the signature, as it arrives
	basis  proto.Record
}

type sender struct {
	o     *Options
	peer  string
	c     *proto.Conn
	recv  func() (proto.Message, error) // c.Recv, or the pooled session's reader
	heard atomic.Bool                   // the peer answered something
	log   *slog.Logger
	outMu *sync.Mutex

	mu          sync.Mutex
	pending     map[uint64]*pend
	sigWait     map[uint64]*sigWait
	sigReserved int64 // bytes of signature the requests in sigWait may bring
	events      []event
	outstanding int
	readErr     error
	batchDone   bool
	notify      chan struct{}

	seq         uint64
	batch       *state.Batch
	sinceCommit int
	res         PeerResult
	progress    PeerProgress
	links       map[[2]uint64]string // (dev, ino) → wire name sent in this run
	retries     map[uint64]*item     // items the peer asked to get whole, by old seq
	handedOff   bool
	handoffDone bool
	// groups whose include root the peer refused: the rest stays here
	refusedGroups map[string]bool
	conflicts     map[string]bool // recorded conflicts with the peer (lazy)
	inodes        map[[2]uint64][]string
	open          scan.Opener // the sender's dir-fd walk, cached per run
	small         []byte      // reused read buffer for small files
	dw            *dataWriter // reused frame buffer for large files
}

// partnerOnPeer finds another name of it's inode that the peer already has
// with this content, so the peer can link instead of holding a copy.
func (s *sender) partnerOnPeer(it *item) string {
	if s.inodes == nil {
		s.inodes = map[[2]uint64][]string{}
		for _, root := range s.o.View.Roots() {
			_ = s.o.Store.WalkFiles(root, func(p string, r *state.FileRecord) error {
				if r.Kind == state.KindReg && r.Nlink > 1 {
					k := [2]uint64{r.Dev, r.Ino}
					s.inodes[k] = append(s.inodes[k], p)
				}
				return nil
			})
		}
	}
	for _, p := range s.inodes[[2]uint64{it.cur.Dev, it.cur.Ino}] {
		if p == it.path {
			continue
		}
		base, ok, err := s.o.Store.GetBase(s.peer, p)
		if err != nil || !ok || !base.SameContent(&it.cur) {
			continue
		}
		if g := groupFor(s.o.View, p, s.peer); g == it.group {
			w, _ := g.WireName(p)
			return w
		}
	}
	return ""
}

func pushPeer(ctx context.Context, o *Options, p *plan, outMu *sync.Mutex) (res PeerResult) {
	start := time.Now()
	peer := p.peer
	res.Peer = peer
	defer func() { res.Duration = time.Since(start) }()
	log := o.Log.With("peer", peer)
	if p.settle(o, log, &res) != nil {
		return res
	}
	if o.Observe != nil {
		o.Observe(PeerProgress{Peer: peer, Planned: p.len(), PlannedBytes: p.bytes})
		defer func() {
			o.Observe(PeerProgress{Peer: peer, Planned: p.len(), PlannedBytes: p.bytes, Finished: true, Err: res.Err})
		}()
	}
	if p.len() == 0 && o.Handoff == nil && o.Mark == nil {
		return res
	}
	host, ok := hostOf(o.View, peer)
	if !ok {
		res.Err = fmt.Errorf("peer %s is not a host of any group of this node", peer)
		return res
	}
	if o.Pool == nil || o.DryRun {
		return pushOnce(ctx, o, p, res, outMu, log, host, nil)
	}
	for {
		ps, err := o.Pool.get(ctx, host, p.groupNames)
		if err != nil {
			res.Err = err
			return res
		}
		out := pushOnce(ctx, o, p, res, outMu, log, host, ps)
		if !errors.Is(out.Err, errStaleSession) {
			return out
		}
		// A session reused from the pool broke before the peer answered
		// anything of this push (its serve had just ended): once more on
		// a new one. Nothing was applied unacknowledged that a repeat
		// would not find equal.
		log.Info("open session to peer had ended; pushing over a new one", "err", out.Err)
	}
}

// errStaleSession wraps the failure of a push on a reused pooled session
// that the peer never answered.
var errStaleSession = errors.New("pooled session had ended")

// pushOnce runs the push of plan p to its peer over a new session, or over
// ps, a session from the pool (left open for the next push if all went
// well, unless the pool serves a single run: see Pool.ForOneRun).
func pushOnce(ctx context.Context, o *Options, p *plan, res PeerResult, outMu *sync.Mutex, log *slog.Logger, host config.Host, ps *pooled) PeerResult {
	peer := p.peer
	var ch Channel
	var c *proto.Conn
	if ps != nil {
		ch, c = ps.ch, ps.c
	} else {
		var err error
		if ch, err = o.Connect(ctx, host); err != nil {
			res.Err = err
			return res
		}
		defer ch.Close()
	}
	stop := context.AfterFunc(ctx, func() { ch.Close() })
	defer stop()
	sent0, recvd0 := ch.Counters()

	var recv func() (proto.Message, error)
	var done chan struct{}
	if ps != nil {
		done = make(chan struct{})
		recv = ps.recvUntil(done)
	} else {
		keys := map[string][]byte{}
		groups := p.groupNames
		if len(groups) == 0 { // nothing pending: offer every group shared with peer
			groups = sharedGroups(o.View, peer)
		}
		for _, g := range groups {
			k, err := proto.ReadKeyFile(g.Key)
			if err != nil {
				res.Err = fmt.Errorf("group %s: %w", g.Name, err)
				return res
			}
			keys[g.Name] = k
		}
		c = proto.NewConn(ch, ch)
		flags := proto.FlagFastSig
		if o.DryRun {
			flags |= proto.FlagDryRun
		}
		if _, err := proto.ClientHandshake(c, o.View.Name, keys, flags); err != nil {
			res.Err = withRemoteStderr(err, ch)
			return res
		}
		recv = c.Recv
	}
	s := &sender{o: o, peer: peer, c: c, recv: recv, log: log, outMu: outMu, pending: map[uint64]*pend{},
		sigWait: map[uint64]*sigWait{}, notify: make(chan struct{}, 1), links: map[[2]uint64]string{}}
	s.res = res
	s.progress = PeerProgress{Peer: peer, Planned: p.len(), PlannedBytes: p.bytes}
	if !o.DryRun {
		s.batch = o.Store.NewBatch()
	}
	readerDone := make(chan struct{})
	go func() { defer close(readerDone); s.read() }()
	var err error
	if o.Mark != nil && !o.DryRun {
		seq := s.nextSeq()
		s.track(seq, &pend{handoff: true, marker: true})
		m := o.Mark
		err = c.Send(proto.Handoff{Seq: seq, Epoch: m.Epoch, From: m.From, UpToNs: m.UpToNs})
	}
	if err == nil {
		err = s.run(p)
	}
	if err == nil && o.Handoff != nil {
		err = s.handoff()
	}
	keep := false
	switch {
	case err != nil:
		ch.Close()
	case ps != nil && ps.persistent() && !o.Pool.oneRun:
		keep = true // no Bye: the session waits for the next push
	default:
		_ = c.Send(proto.Bye{})
		err = c.Flush()
		_ = ch.CloseWrite()
		if werr := ch.Wait(); werr != nil && err == nil {
			err = fmt.Errorf("remote helper: %w", werr)
		}
	}
	if done != nil {
		close(done)
	}
	<-readerDone
	s.open.Close()
	s.mu.Lock()
	if s.batch != nil {
		if cerr := s.batch.CommitDurable(); cerr != nil && err == nil {
			err = fmt.Errorf("record synced state: %w", cerr)
		}
	}
	out := s.res
	s.mu.Unlock()
	heard := s.heard.Load()
	sent, recvd := ch.Counters()
	out.WireSent, out.WireRecvd = sent-sent0, recvd-recvd0
	if ps != nil {
		if keep && err == nil {
			o.Pool.put(ps)
		} else {
			ps.close()
		}
	}
	if err != nil {
		out.Err = withRemoteStderr(err, ch)
		if ps != nil && ps.reused && !heard && ctx.Err() == nil {
			out.Err = fmt.Errorf("%w: %w", errStaleSession, out.Err)
		}
	}
	return out
}

// withRemoteStderr adds what the helper printed, which usually says why.
func withRemoteStderr(err error, ch Channel) error {
	if s, ok := ch.(interface{ Stderr() string }); ok {
		if t := strings.TrimSpace(s.Stderr()); t != "" {
			return fmt.Errorf("%w (remote said: %s)", err, lastLines(t, 3))
		}
	}
	return err
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

func (s *sender) signal() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

func (s *sender) nextSeq() uint64 { s.seq++; return s.seq }

// run is the writer: it streams the plan, then settles retries and deltas.
func (s *sender) run(p *plan) error {
	for _, it := range p.deletes {
		if err := s.sendOp(it, proto.OpDelete); err != nil {
			return err
		}
	}
	if err := p.eachCreate(s.sendItem); err != nil {
		return err
	}
	// Directory metadata goes after every delta was sent, so writing a
	// child never changes a directory mtime after it was set.
	if err := s.waitIdle(); err != nil {
		return err
	}
	for _, it := range p.dirs {
		if err := s.sendOp(it, proto.OpDirMeta); err != nil {
			return err
		}
	}
	for {
		if err := s.waitIdle(); err != nil {
			return err
		}
		seq := s.nextSeq()
		s.mu.Lock()
		s.batchDone = false
		s.mu.Unlock()
		if err := s.c.Send(proto.EndBatch{Seq: seq}); err != nil {
			return err
		}
		if err := s.c.Flush(); err != nil {
			return err
		}
		for {
			s.mu.Lock()
			done := s.batchDone && s.outstanding == 0
			more := len(s.events) > 0
			s.mu.Unlock()
			if done && !more {
				return nil
			}
			if s.batchDoneNow() {
				// Retries or re-sends after the batch: their acks come
				// with the next EndBatch, so another round.
				break
			}
			if err := s.waitEvent(); err != nil {
				return err
			}
		}
	}
}

func (s *sender) batchDoneNow() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.batchDone
}

// waitIdle waits until every signature was answered and every retry resent.
func (s *sender) waitIdle() error {
	for {
		s.mu.Lock()
		idle := len(s.sigWait) == 0 && len(s.events) == 0
		s.mu.Unlock()
		if idle {
			return nil
		}
		if err := s.waitEvent(); err != nil {
			return err
		}
	}
}

// waitEvent blocks until the reader reports something, handling queued events.
func (s *sender) waitEvent() error {
	if err := s.c.Flush(); err != nil {
		return err
	}
	<-s.notify
	return s.drainEvents()
}

func (s *sender) drainEvents() error {
	for {
		s.mu.Lock()
		if s.readErr != nil {
			err := s.readErr
			s.mu.Unlock()
			return err
		}
		if len(s.events) == 0 {
			s.mu.Unlock()
			return nil
		}
		ev := s.events[0]
		s.events = s.events[1:]
		var it *item
		if ev.resend != nil {
			s.mu.Unlock()
			var err error
			if ev.resend.exists {
				err = s.sendItem(ev.resend)
			} else {
				err = s.sendOp(ev.resend, proto.OpDelete)
			}
			if err != nil {
				return err
			}
			continue
		}
		var reserved int64
		if ev.retry {
			it = s.pendingItem(ev.seq)
		} else {
			if w := s.sigWait[ev.seq]; w != nil {
				it, reserved = w.it, w.reserved
				delete(s.sigWait, ev.seq)
			}
		}
		s.mu.Unlock()
		if it == nil {
			if ev.sig != nil {
				ev.sig.Close()
			}
			continue
		}
		var err error
		switch {
		case ev.retry:
			err = s.sendFile(it, nil, 0)
		case ev.have && delta.UseDelta(it.cur.Size, ev.basis.Size):
			err = s.sendFile(it, ev.sig, ev.basis.Size)
		default:
			if ev.sig != nil {
				ev.sig.Close()
			}
			err = s.sendFile(it, nil, 0)
		}
		// The signature's bytes are in no buffer any more: the budget
		// takes the next request's.
		s.mu.Lock()
		s.sigReserved -= reserved
		s.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// sigWait is a signature this sender asked for. Only those are accepted,
// once each, and at most reserved bytes of one are buffered.
type sigWait struct {
	it       *item
	answered bool
	maxBasis int64 // a larger basis is not worth a delta: its signature is dropped
	reserved int64 // delta.MaxSignatureSize(maxBasis)
}

// sigBudget bounds the signature bytes all outstanding requests may bring
// at once, whatever the receiver sends.
const sigBudget = 64 << 20

// sigBasisCap is the largest basis whose signature is kept for a file of
// size bytes: against a much larger one a delta saves little.
func sigBasisCap(size int64) int64 { return 2*size + delta.WholeFileThreshold }

// reserveSig waits until n more bytes of signatures fit the budget; one
// request alone always fits.
func (s *sender) reserveSig(n int64) error {
	return s.waitUntil(func() bool {
		if s.sigReserved == 0 || s.sigReserved+n <= sigBudget {
			s.sigReserved += n
			return true
		}
		return false
	})
}

// retried items are kept aside by the reader under their old seq.
func (s *sender) pendingItem(seq uint64) *item {
	if p, ok := s.retries[seq]; ok {
		delete(s.retries, seq)
		return p
	}
	return nil
}

// acquire waits for room in the window.
func (s *sender) acquire() error {
	return s.waitUntil(func() bool {
		if s.outstanding < window {
			s.outstanding++
			return true
		}
		return false
	})
}

// waitUntil handles events until take (called with s.mu held) succeeds.
func (s *sender) waitUntil(take func() bool) error {
	for {
		s.mu.Lock()
		if s.readErr != nil {
			err := s.readErr
			s.mu.Unlock()
			return err
		}
		if take() {
			s.mu.Unlock()
			return nil
		}
		s.mu.Unlock()
		if err := s.waitEvent(); err != nil {
			return err
		}
	}
}

func (s *sender) track(seq uint64, p *pend) {
	s.mu.Lock()
	s.pending[seq] = p
	s.mu.Unlock()
}

func (s *sender) sendOp(it *item, kind proto.OpKind) error {
	if s.heldBack(it) {
		return nil
	}
	if err := s.acquire(); err != nil {
		return err
	}
	seq := s.nextSeq()
	op := proto.Op{Seq: seq, Group: it.group.Name, Kind: kind, Path: []byte(it.wire),
		HasBase: it.hasBase, Forced: it.forced}
	if it.hasBase {
		op.Base = proto.RecordFrom(it.base)
	}
	if kind != proto.OpDelete {
		op.New = proto.RecordFrom(it.cur)
	}
	s.track(seq, &pend{it: it, op: kind, sent: it.cur, isDelete: kind == proto.OpDelete})
	return s.c.Send(op)
}

func (s *sender) sendItem(it *item) error {
	if s.heldBack(it) {
		return nil
	}
	switch it.cur.Kind {
	case state.KindDir:
		return s.sendOp(it, proto.OpMkdir)
	case state.KindSymlink:
		return s.sendOp(it, proto.OpSymlink)
	case state.KindFifo, state.KindChr, state.KindBlk, state.KindSock:
		return s.sendOp(it, proto.OpSpecial)
	case state.KindReg:
	default:
		return nil
	}
	if it.cur.Nlink > 1 {
		key := [2]uint64{it.cur.Dev, it.cur.Ino}
		if first, ok := s.links[key]; ok && first != it.wire {
			if err := s.acquire(); err != nil {
				return err
			}
			seq := s.nextSeq()
			op := proto.Op{Seq: seq, Group: it.group.Name, Kind: proto.OpHardlink, Path: []byte(it.wire),
				HasBase: it.hasBase, New: proto.RecordFrom(it.cur), LinkTo: []byte(first), Forced: it.forced}
			if it.hasBase {
				op.Base = proto.RecordFrom(it.base)
			}
			s.track(seq, &pend{it: it, op: proto.OpHardlink, sent: it.cur})
			return s.c.Send(op)
		}
		if partner := s.partnerOnPeer(it); partner != "" {
			s.links[key] = partner
			return s.sendItem(it)
		}
		s.links[key] = it.wire
	}
	if it.hasBase && it.base.SameContent(&it.cur) {
		return s.sendOp(it, proto.OpMeta)
	}
	if s.o.DryRun {
		return s.sendOp(it, proto.OpFile)
	}
	if it.cur.Size >= delta.WholeFileThreshold {
		if err := s.acquire(); err != nil {
			return err
		}
		w := &sigWait{it: it, maxBasis: sigBasisCap(it.cur.Size)}
		w.reserved = delta.MaxSignatureSize(w.maxBasis)
		if err := s.reserveSig(w.reserved); err != nil {
			return err
		}
		seq := s.nextSeq()
		s.mu.Lock()
		s.sigWait[seq] = w
		s.mu.Unlock()
		if err := s.c.Send(proto.SigRequest{Seq: seq, Group: it.group.Name, Path: []byte(it.wire), BasisHint: proto.RecordFrom(it.base)}); err != nil {
			return err
		}
		return s.c.Flush() // let the peer start on the signature now
	}
	if err := s.acquire(); err != nil {
		return err
	}
	return s.sendFile(it, nil, 0)
}

// sendFile sends a regular file whole, or as a delta against the signature
// arriving on st (of a basis of basisSize bytes), matched as it comes. The
// window slot taken for the signature request (if any) carries over.
//
// The file is opened through directory fds walked from "/" without
// following symlinks, and must still be the inode the scan recorded (device,
// inode, size): a local user who owns a directory inside an include cannot
// swap in a symlink or another file between the check and the push and
// have root read it for them. A mismatch skips the file; it stays dirty.
func (s *sender) sendFile(it *item, st *delta.Stream, basisSize int64) error {
	if st != nil {
		defer st.Close()
	}
	if s.heldBack(it) {
		s.mu.Lock()
		s.outstanding-- // the slot taken for it
		s.mu.Unlock()
		return nil
	}
	if st == nil && it.cur.Size < delta.WholeFileThreshold {
		return s.sendSmall(it)
	}
	f, problem := s.openChecked(it)
	if f == nil {
		s.settleLocal(it, problem)
		return nil
	}
	defer f.Close()
	var sig *delta.Signature
	if st != nil {
		// The header decides between a delta and the whole file, before
		// the op goes out.
		var err error
		if sig, err = delta.ReadSignatureStream(st, basisSize); err != nil {
			s.log.Warn("bad signature from peer; sending whole file", "path", it.path, "error", err)
			st.Close() // the rest of it is dropped as it comes
		}
	}
	seq := s.nextSeq()
	newRec := it.cur
	content := proto.ContentWhole
	if sig != nil {
		content = proto.ContentDelta
	}
	op := proto.Op{Seq: seq, Group: it.group.Name, Kind: proto.OpFile, Path: []byte(it.wire),
		HasBase: it.hasBase, New: proto.RecordFrom(newRec), Content: content, Forced: it.forced}
	if it.hasBase {
		op.Base = proto.RecordFrom(it.base)
	}
	s.track(seq, &pend{it: it, op: proto.OpFile, sent: newRec})
	if err := s.c.Send(op); err != nil {
		return err
	}
	var sum [32]byte
	if s.dw == nil {
		s.dw = &dataWriter{c: s.c, buf: make([]byte, 0, proto.MaxData)}
	}
	dw := s.dw
	dw.seq, dw.n = seq, 0
	// A resend (the peer found the sum wrong) hashes what it sends.
	var src io.Reader = f
	h := sha256.New()
	if it.resend {
		src = io.TeeReader(f, h)
	}
	var err error
	if sig != nil {
		err = delta.WriteDelta(sig, src, dw)
	} else {
		_, err = io.Copy(dw, src)
	}
	if err == nil {
		err = dw.flush()
	}
	if err != nil {
		return fmt.Errorf("send %s: %w", it.path, err)
	}
	// The scan hashed this content already; if the file is unchanged
	// since (same stat), that hash is the content's. If it changed while
	// it was sent, the zero sum makes the peer ask for it again, whole.
	if it.resend {
		h.Sum(sum[:0])
	} else if now, err := statFile(f); err == nil && !now.StatChanged(&it.cur) && it.cur.Hash != (state.Hash{}) {
		sum = it.cur.Hash
	}
	s.mu.Lock()
	s.res.DataBytes += dw.n
	s.mu.Unlock()
	return s.c.Send(proto.DataEnd{Seq: seq, SHA256: sum})
}

// openChecked opens it for reading, or says why it is not sent.
func (s *sender) openChecked(it *item) (*os.File, string) {
	f, now, err := s.open.Open(it.path)
	if err != nil {
		return nil, notSent(err)
	}
	if problem := changedSinceCheck(it, &now); problem != "" {
		f.Close()
		return nil, problem
	}
	return f, ""
}

func notSent(err error) string {
	return fmt.Sprintf("%v: not sent (it stays dirty; the next check looks again)", err)
}

// changedSinceCheck says why the file opened for it (now) is not the one
// the last check recorded, or "".
func changedSinceCheck(it *item, now *state.FileRecord) string {
	if now.Dev != it.cur.Dev || now.Ino != it.cur.Ino || now.Size != it.cur.Size {
		return fmt.Sprintf("%s is not the file the last check recorded (device, inode or size changed since): not sent (it stays dirty; the next check looks again)", it.path)
	}
	return ""
}

// sendSmall sends a file below the delta threshold whole, in one frame.
// When several peers get it in this push, its content comes from the
// push's read cache: read and hashed once for all of them.
func (s *sender) sendSmall(it *item) error {
	var body []byte
	var sum state.Hash
	var problem string
	if c := s.o.reads; c != nil && !it.resend {
		body, sum, problem = c.get(it, func() ([]byte, state.Hash, string) { return s.readSmall(it, nil) })
	} else {
		// One reused buffer: a new buffer per file made the garbage
		// collector the sender's main cost.
		if s.small == nil {
			s.small = make([]byte, delta.WholeFileThreshold+1)
		}
		body, sum, problem = s.readSmall(it, s.small)
	}
	if problem != "" {
		s.settleLocal(it, problem)
		return nil
	}
	seq := s.nextSeq()
	newRec := it.cur
	newRec.Hash, newRec.Size = sum, int64(len(body))
	op := proto.Op{Seq: seq, Group: it.group.Name, Kind: proto.OpFile, Path: []byte(it.wire),
		HasBase: it.hasBase, New: proto.RecordFrom(newRec), Content: proto.ContentWhole, Forced: it.forced}
	if it.hasBase {
		op.Base = proto.RecordFrom(it.base)
	}
	s.track(seq, &pend{it: it, op: proto.OpFile, sent: newRec})
	if err := s.c.Send(op); err != nil {
		return err
	}
	if len(body) > 0 {
		if err := s.c.Send(proto.Data{Seq: seq, Bytes: body}); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.res.DataBytes += int64(len(body))
	s.mu.Unlock()
	return s.c.Send(proto.DataEnd{Seq: seq, SHA256: sum})
}

// readSmall reads a small file into buf (nil: a buffer of its own) and
// hashes what it read, or says why it is not sent.
func (s *sender) readSmall(it *item, buf []byte) ([]byte, state.Hash, string) {
	fd, now, err := s.open.OpenFd(it.path)
	if err != nil {
		return nil, state.Hash{}, notSent(err)
	}
	defer unix.Close(fd)
	if problem := changedSinceCheck(it, &now); problem != "" {
		return nil, state.Hash{}, problem
	}
	if buf == nil {
		buf = make([]byte, it.cur.Size+1) // one more: a file that grew reads past its recorded size
	}
	n, err := scan.ReadFd(fd, buf)
	if err != nil {
		return nil, state.Hash{}, fmt.Sprintf("read %s: %v", it.path, err)
	}
	return buf[:n], sha256.Sum256(buf[:n]), ""
}

// statFile describes an open file the way the scanner records it.
func statFile(f *os.File) (state.FileRecord, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return state.FileRecord{}, err
	}
	return scan.FromStat(&st), nil
}

// settleLocal gives back a window slot for an item that could not be sent.
func (s *sender) settleLocal(it *item, problem string) {
	s.mu.Lock()
	s.outstanding--
	s.res.Failed++
	s.res.Problems = append(s.res.Problems, problem)
	s.settled(it, false)
	s.mu.Unlock()
	s.log.Warn("cannot send", "path", it.path, "problem", problem)
}

// dataWriter cuts a stream into Data frames.
type dataWriter struct {
	c   *proto.Conn
	seq uint64
	buf []byte
	n   int64
}

func (d *dataWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		if d.buf == nil {
			d.buf = make([]byte, 0, proto.MaxData)
		}
		k := min(len(p), proto.MaxData-len(d.buf))
		d.buf = append(d.buf, p[:k]...)
		p = p[k:]
		if len(d.buf) == proto.MaxData {
			if err := d.flush(); err != nil {
				return 0, err
			}
		}
	}
	return total, nil
}

// Flush sends what is buffered now: a streamed delta's commands reach the
// receiver while the rest is matched.
func (d *dataWriter) Flush() error {
	if err := d.flush(); err != nil {
		return err
	}
	return d.c.Flush()
}

func (d *dataWriter) flush() error {
	if len(d.buf) == 0 {
		return nil
	}
	d.n += int64(len(d.buf))
	err := d.c.Send(proto.Data{Seq: d.seq, Bytes: d.buf})
	d.buf = d.buf[:0]
	return err
}

// read is the reader goroutine: acknowledgements, signatures, batch ends.
func (s *sender) read() {
	var sig struct {
		seq    uint64
		open   bool  // between a Sig with Have and its DataEnd
		limit  int64 // most bytes a signature of the announced basis has
		n      int64
		basis  proto.Record
		stream *delta.Stream // where it goes (nil: read and drop it, whole file)
	}
	fail := func(err error) {
		s.mu.Lock()
		if s.readErr == nil {
			s.readErr = err
		}
		s.mu.Unlock()
		if sig.open && sig.stream != nil {
			sig.stream.End(err) // the delta being made against it fails
		}
		s.signal()
	}
	for {
		m, err := s.recv()
		if errors.Is(err, errPushDone) {
			return // the push is over; the session stays open
		}
		if _, refused := m.(*proto.Error); err == nil && !refused {
			s.heard.Store(true) // an Error may be a pooled session's serve quitting
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the remote helper closed the connection")
			}
			fail(err)
			return
		}
		switch m := m.(type) {
		case *proto.Ack:
			s.onAck(m)
		case *proto.Sig:
			s.mu.Lock()
			w := s.sigWait[m.Seq]
			ok := w != nil && !w.answered && !sig.open
			if ok {
				w.answered = true
			}
			s.mu.Unlock()
			if !ok {
				fail(fmt.Errorf("protocol: peer %s sent a signature for seq %d that was not asked for (or twice)", s.peer, m.Seq))
				return
			}
			if !m.Have {
				s.pushEvent(event{seq: m.Seq})
				continue
			}
			sig.seq, sig.open, sig.basis, sig.n = m.Seq, true, m.Basis, 0
			sig.limit = delta.MaxSignatureSize(m.Basis.Size)
			sig.stream = nil
			if m.Basis.Size <= w.maxBasis {
				// The writer matches against it while it arrives.
				sig.stream = delta.NewStream()
				s.pushEvent(event{seq: m.Seq, have: true, sig: sig.stream, basis: m.Basis})
			} else {
				s.pushEvent(event{seq: m.Seq}) // the whole file goes
			}
		case *proto.Data:
			if !sig.open || m.Seq != sig.seq {
				fail(fmt.Errorf("protocol: unexpected data for seq %d", m.Seq))
				return
			}
			sig.n += int64(len(m.Bytes))
			if sig.n > sig.limit {
				fail(fmt.Errorf("protocol: peer %s sent a signature of more than %d bytes for a basis of %d bytes", s.peer, sig.limit, sig.basis.Size))
				return
			}
			if sig.stream != nil {
				sig.stream.Feed(m.Bytes)
			}
		case *proto.DataEnd:
			if !sig.open || m.Seq != sig.seq {
				fail(fmt.Errorf("protocol: unexpected end of data for seq %d", m.Seq))
				return
			}
			sig.open = false
			if sig.stream != nil {
				sig.stream.End(nil)
				sig.stream = nil
			}
		case *proto.BatchDone:
			s.mu.Lock()
			s.batchDone = true
			if len(m.ActionErrors) > 0 {
				s.res.Problems = append(s.res.Problems, m.ActionErrors...)
			}
			s.mu.Unlock()
			s.signal()
		case *proto.Error:
			fail(fmt.Errorf("peer %s refused the session: %s", s.peer, m.Message))
			return
		default:
			fail(fmt.Errorf("protocol: unexpected %s from receiver", m.Type()))
			return
		}
	}
}

func (s *sender) pushEvent(ev event) {
	s.mu.Lock()
	s.events = append(s.events, ev)
	s.mu.Unlock()
	s.signal()
}

const commitEvery = 2000

func (s *sender) onAck(a *proto.Ack) {
	s.mu.Lock()
	defer s.signal()
	defer s.mu.Unlock()
	p, ok := s.pending[a.Seq]
	if ok && p.marker {
		delete(s.pending, a.Seq)
		return
	}
	if ok && p.handoff {
		delete(s.pending, a.Seq)
		s.handedOff = a.Status == proto.AckOK
		if !s.handedOff {
			s.res.Problems = append(s.res.Problems, "handoff not recorded: "+a.Message)
		}
		s.res.HandedOff = s.handedOff
		s.handoffDone = true
		return
	}
	if !ok {
		if s.readErr == nil {
			s.readErr = fmt.Errorf("protocol: ack for unknown seq %d", a.Seq)
		}
		return
	}
	delete(s.pending, a.Seq)
	it := p.it
	word := a.Status.String()
	switch a.Status {
	case proto.AckOK, proto.AckSame:
		s.outstanding--
		if s.res.okGroups == nil {
			s.res.okGroups = map[string]bool{}
		}
		s.res.okGroups[it.group.Name] = true
		if a.Status == proto.AckSame {
			s.res.Same++
		} else if p.isDelete {
			s.res.Deleted++
			if s.res.deletedBy == nil {
				s.res.deletedBy = map[string]int{}
			}
			s.res.deletedBy[it.group.Name]++
		} else {
			s.res.Updated++
		}
		if p.op != proto.OpMeta && p.op != proto.OpDirMeta && hasLocalActions(it.group) {
			s.res.changed = append(s.res.changed, it)
		}
		if s.batch != nil {
			if p.isDelete {
				s.batch.DeleteBase(s.peer, it.path)
			} else {
				agreed := p.sent
				if a.HasCurrent {
					agreed = a.Current.FileRecord()
				}
				s.batch.PutBase(s.peer, it.path, &agreed)
			}
			s.batch.ClearDirty(s.peer, it.path)
			if it.forced || s.hasConflict(it.path) {
				// Both sides agree again, whoever made them agree.
				_ = s.o.Store.DeleteConflict(it.path, s.peer)
			}
			s.sinceCommit++
			if s.sinceCommit >= commitEvery {
				// Not durable here: a crash loses at most these bases, and
				// their files stay dirty and go again as "already equal".
				// The end of the run commits durably.
				if err := s.batch.Commit(); err != nil {
					s.readErr = fmt.Errorf("record synced state: %w", err)
				}
				s.batch = s.o.Store.NewBatch()
				s.sinceCommit = 0
			}
		}
	case proto.AckRetry:
		// Keep the slot: the item goes again, whole.
		if s.retries == nil {
			s.retries = map[uint64]*item{}
		}
		it.resend = true
		s.retries[a.Seq] = it
		s.events = append(s.events, event{seq: a.Seq, retry: true})
		word = "retry"
	case proto.AckConflict:
		s.outstanding--
		winner, why := Unresolved, ""
		if !it.forced {
			remote := Side{Exists: a.HasCurrent}
			if a.HasCurrent {
				remote.Rec = a.Current.FileRecord()
			}
			winner, why = Decide(it.group, s.peer, Side{Exists: it.exists, Rec: it.cur}, remote)
		}
		if winner == LocalWins {
			s.log.Info("conflict resolved: the local version wins", "path", it.path, "why", why)
			word = "won"
			s.res.AutoResolved++
			if !s.o.DryRun {
				it.forced = true
				s.events = append(s.events, event{seq: a.Seq, resend: it})
			}
			break
		}
		s.res.Conflicts++
		reason := a.Message
		if winner == PeerWins {
			s.res.PeerWins++
			word = "lost"
			reason = fmt.Sprintf("%s; %s: the version on %s wins and replaces this one when %s pushes", a.Message, why, s.peer, s.peer)
			s.log.Info("conflict: the peer's version wins; it arrives when the peer pushes", "path", it.path, "why", why)
		} else if why != "" && why != "auto none" {
			reason = fmt.Sprintf("%s; not resolved automatically: %s", a.Message, why)
		}
		if !s.o.DryRun {
			c := state.Conflict{Path: it.path, Peer: s.peer, Group: it.group.Name, Local: it.cur,
				RemoteExists: a.HasCurrent, DetectedNs: time.Now().UnixNano(), Reason: reason}
			if a.HasCurrent {
				c.Remote = a.Current.FileRecord()
			}
			if err := s.o.Store.PutConflict(c); err != nil {
				s.log.Error("record conflict", "path", it.path, "error", err)
			}
		}
	default:
		s.outstanding--
		if a.Status == proto.AckRefused {
			s.res.Refused++
			if root, why, ok := parsePeerRoot(a.Message); ok {
				s.peerRootRefused(it, root, why)
				break
			}
		} else {
			s.res.Failed++
		}
		s.res.Problems = append(s.res.Problems, fmt.Sprintf("%s: %s", it.path, a.Message))
		s.log.Warn("peer did not apply", "path", it.path, "status", a.Status.String(), "reason", a.Message)
	}
	if a.Status != proto.AckRetry && word != "won" {
		s.settled(it, p.isDelete)
	}
	if s.o.Progress != nil {
		s.outMu.Lock()
		fmt.Fprintf(s.o.Progress, "%-8s %-6s %s %s\n", word, p.op, s.peer, DisplayPath(it.path))
		s.outMu.Unlock()
	}
}

// peerRootRefused records (with s.mu held) that the peer refused an op
// because its include root changed file system: one refusal per root, and
// nothing more of the group goes to this peer in this run.
func (s *sender) peerRootRefused(it *item, root, why string) {
	if s.refusedGroups == nil {
		s.refusedGroups = map[string]bool{}
	}
	s.refusedGroups[it.group.Name] = true
	for i := range s.res.rootRefusals {
		if r := &s.res.rootRefusals[i]; r.Path == root {
			r.Count++
			if !slices.Contains(r.Groups, it.group.Name) {
				r.Groups = append(r.Groups, it.group.Name)
			}
			return
		}
	}
	s.res.rootRefusals = append(s.res.rootRefusals, state.Refusal{Kind: state.RefusedPeerRoot, Path: root,
		Groups: []string{it.group.Name}, Peer: s.peer, Reason: why, Override: scan.AcceptRootCommand(root), Count: 1})
	s.log.Warn("peer refused: its include root changed file system", "root", root, "reason", why)
}

// heldBack reports whether it belongs to a group the peer refused in this
// run; it is then counted as refused and not sent (it stays pending).
func (s *sender) heldBack(it *item) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.refusedGroups[it.group.Name] {
		return false
	}
	s.res.Refused++
	return true
}

// settled counts an item for Observe (under s.mu).
func (s *sender) settled(it *item, isDelete bool) {
	if s.o.Observe == nil {
		return
	}
	s.progress.Done++
	if !isDelete && it.cur.Kind == state.KindReg {
		s.progress.DoneBytes += it.cur.Size
	}
	s.o.Observe(s.progress)
}

// hasConflict reports whether a conflict with the peer is recorded for
// path; the set is read once per session.
func (s *sender) hasConflict(path string) bool {
	if s.conflicts == nil {
		s.conflicts = map[string]bool{}
		_ = s.o.Store.Conflicts(func(c state.Conflict) error {
			if c.Peer == s.peer {
				s.conflicts[c.Path] = true
			}
			return nil
		})
	}
	return s.conflicts[path]
}

// AllPeers lists every peer this node pushes to, sorted.
func AllPeers(view *config.NodeView) []string { return unionPeers(nil, view) }

// unionPeers adds every peer of the node's groups to peers.
func unionPeers(peers []string, view *config.NodeView) []string {
	seen := map[string]bool{}
	for _, p := range peers {
		seen[p] = true
	}
	for _, g := range view.Groups {
		if g.IsSlave(view.Name) {
			continue
		}
		for _, h := range g.Peers() {
			if !seen[h.Name] {
				seen[h.Name] = true
				peers = append(peers, h.Name)
			}
		}
	}
	sort.Strings(peers)
	return peers
}

// handoff writes the handoff record on the peer once everything planned
// reached it and is recorded durably here.
func (s *sender) handoff() error {
	s.mu.Lock()
	r := s.res
	clean := r.Conflicts == 0 && r.Refused == 0 && r.Failed == 0 && r.Err == nil
	var err error
	if s.batch != nil {
		err = s.batch.CommitDurable()
		s.batch = s.o.Store.NewBatch()
	}
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("record synced state: %w", err)
	}
	if !clean {
		s.log.Warn("final sync incomplete: no handoff written", "peer", s.peer)
		return nil
	}
	if n, err := s.o.Store.DirtyCount(s.peer); err != nil || n > 0 {
		s.log.Warn("final sync left changes pending: no handoff written", "peer", s.peer, "pending", n)
		return nil
	}
	seq := s.nextSeq()
	s.track(seq, &pend{handoff: true})
	h := s.o.Handoff
	if err := s.c.Send(proto.Handoff{Seq: seq, Epoch: h.Epoch, From: h.From, Clean: h.Clean, UpToNs: h.UpToNs}); err != nil {
		return err
	}
	for {
		s.mu.Lock()
		done := s.handoffDone
		s.mu.Unlock()
		if done {
			return nil
		}
		if err := s.waitEvent(); err != nil {
			return err
		}
	}
}

// hasLocalActions reports whether g has do-local actions, the only reason
// to remember the changed items of a run.
func hasLocalActions(g *config.GroupView) bool {
	for _, a := range g.Actions {
		if a.DoLocal || a.DoLocalOnly {
			return true
		}
	}
	return false
}
