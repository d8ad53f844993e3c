package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"ocf-csync/syncer/config"
	"ocf-csync/syncer/proto"
)

// Pool keeps one session (connection and `serve`) per peer open between
// pushes, for the daemon: a live change then pays neither an SSH handshake
// nor a helper start (DESIGN §11, live latency). The receiver takes its
// state database per batch (proto.FlagSession), so an open session holds
// nothing on the peer between pushes. Only Push uses the pool; compare,
// pull and the guard's reconciliation open sessions of their own.
//
// A session that breaks while it idles (the peer's daemon stopped, the
// connection dropped) is closed, and opened again once after a short
// delay; a push that finds none opens one. Drop closes every session (the
// node stopped being active: a standby keeps none), Close also ends the
// pool (the daemon stops).
type Pool struct {
	view    *config.NodeView
	connect Connector
	log     *slog.Logger

	ctx    context.Context // ends with Close: redials give up
	cancel context.CancelFunc

	mu      sync.Mutex
	idle    map[string]*pooled       // by peer, not in use
	dialing map[string]chan struct{} // peers Warm is opening a session to; closed when done
	warmErr map[string]error         // why Warm could not open one (the push reports it, or dials once more)
	gen     int                      // bumped by Drop and Close: older sessions are not kept
	byeWait time.Duration            // how long a Bye waits for the helper to exit
	oneRun  bool                     // a sync run's pool: a session ends right after its push
	closed  bool
	wg      sync.WaitGroup // idle watchers and redials
}

// Timing of pooled sessions; variables so tests can shorten them.
var (
	// poolKeepalive: an idle session sends a Keepalive this often, well
	// inside serve's idle deadline (DefaultIdleTimeout).
	poolKeepalive = 20 * time.Second
	// poolProbeAfter: a session idle for longer is probed (an SSH
	// keepalive answered) before a push uses it, so a peer that vanished
	// without a word fails within the connect timeout, as a dial would.
	poolProbeAfter = time.Second
	// poolRedial: a session that broke while idle is opened again after
	// this long (once; a push that finds none opens one itself).
	poolRedial = time.Second
	// poolByeWait bounds how long Close waits for a helper to exit.
	poolByeWait = 2 * time.Second
)

// NewPool returns an empty pool that opens sessions with connect.
func NewPool(view *config.NodeView, connect Connector, log *slog.Logger) *Pool {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Pool{view: view, connect: connect, log: log.With("component", "sessions"), idle: map[string]*pooled{},
		dialing: map[string]chan struct{}{}, warmErr: map[string]error{}, byeWait: poolByeWait, ctx: ctx, cancel: cancel}
}

// pooled is one open session to a peer's serve.
type pooled struct {
	peer    string
	ch      Channel
	c       *proto.Conn
	version uint32
	groups  []string // proved in the handshake, sorted
	msgs    chan received
	quit    chan struct{} // closed by close: the reader stops handing over
	once    sync.Once
	used    time.Time // end of the last push
	reused  bool      // carried a push before this one
	gen     int       // the pool's generation when it was taken out

	// While idle: the watcher goroutine owns the session.
	stopWatch chan struct{}
	watchDone chan struct{}
	broken    error // why the watcher closed it
}

type received struct {
	m   proto.Message
	err error
}

// persistent reports whether the receiver takes its store per batch, so
// the session may stay open between pushes.
func (s *pooled) persistent() bool { return s.version >= proto.VersionSession }

// reader hands every message to the push (or the idle watcher) in turn.
func (s *pooled) reader() {
	for {
		m, err := s.c.Recv()
		select {
		case s.msgs <- received{m, err}:
		case <-s.quit:
			return
		}
		if err != nil {
			return
		}
	}
}

func (s *pooled) close() {
	s.once.Do(func() {
		close(s.quit)
		s.ch.Close()
	})
}

// bye ends the session cleanly: the helper exits with nothing pending.
func (s *pooled) bye(wait time.Duration) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if s.c.Send(proto.Bye{}) == nil && s.c.Flush() == nil {
			_ = s.ch.CloseWrite()
			_ = s.ch.Wait()
		}
	}()
	select {
	case <-done:
	case <-time.After(wait):
	}
	s.close()
}

// recvUntil is a push's receive function: the next message, or
// errPushDone once done closes.
func (s *pooled) recvUntil(done <-chan struct{}) func() (proto.Message, error) {
	return func() (proto.Message, error) {
		select {
		case r := <-s.msgs:
			return r.m, r.err
		case <-done:
			return nil, errPushDone
		}
	}
}

// errPushDone ends a push's reader on a session that stays open.
var errPushDone = errors.New("push done")

// sharedGroups are the groups this node pushes to peer: a session proves
// them all, so every push to the peer can use it.
func sharedGroups(view *config.NodeView, peer string) []*config.GroupView {
	var out []*config.GroupView
	for _, g := range view.Groups {
		if _, ok := g.Host(peer); ok && !g.IsSlave(view.Name) {
			out = append(out, g)
		}
	}
	return out
}

// get returns an open session to host proving every group in need: an
// idle one, or a new one.
func (p *Pool) get(ctx context.Context, host config.Host, need []*config.GroupView) (*pooled, error) {
	p.mu.Lock()
	for p.dialing[host.Name] != nil {
		done := p.dialing[host.Name]
		p.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		p.mu.Lock()
	}
	if p.closed {
		p.mu.Unlock()
		return nil, errors.New("the daemon is stopping: no new sessions")
	}
	if err, ok := p.warmErr[host.Name]; ok {
		delete(p.warmErr, host.Name)
		// A peer that did not answer the warm-up would not answer now
		// either: no second connect timeout. One that refused a group
		// gets a session for this push's groups only (dial).
		if !errors.Is(err, proto.ErrAuthFailed) {
			p.mu.Unlock()
			return nil, err
		}
	}
	s := p.idle[host.Name]
	delete(p.idle, host.Name)
	gen := p.gen
	p.mu.Unlock()
	if s != nil {
		close(s.stopWatch)
		<-s.watchDone
		switch {
		case s.broken != nil:
			p.log.Debug("idle session broke", "peer", host.Name, "err", s.broken)
		case !provesAll(s.groups, need):
			s.bye(p.byeWait)
		case time.Since(s.used) > poolProbeAfter:
			if err := probe(ctx, s.ch); err != nil {
				s.close()
				if errors.Is(err, os.ErrDeadlineExceeded) {
					// As a dial would: the peer did not answer in time.
					return nil, err
				}
				p.log.Info("open session to peer broke; opening a new one", "peer", host.Name, "err", err)
				break
			}
			s.reused, s.gen = true, gen
			return s, nil
		default:
			s.reused, s.gen = true, gen
			return s, nil
		}
	}
	s, err := p.dial(ctx, host, need)
	if s != nil {
		s.gen = gen
	}
	return s, err
}

func provesAll(have []string, need []*config.GroupView) bool {
	for _, g := range need {
		if _, ok := slices.BinarySearch(have, g.Name); !ok {
			return false
		}
	}
	return true
}

// probe asks the channel's connection for an answer, if it can.
func probe(ctx context.Context, ch Channel) error {
	if pr, ok := ch.(interface{ Probe(context.Context) error }); ok {
		return pr.Probe(ctx)
	}
	return nil
}

// dial opens a session proving every group shared with the peer (so later
// pushes of any group can use it), or only need if the peer refuses some
// of them (its config differs).
func (p *Pool) dial(ctx context.Context, host config.Host, need []*config.GroupView) (*pooled, error) {
	s, err := p.open(ctx, host, sharedGroups(p.view, host.Name))
	if errors.Is(err, proto.ErrAuthFailed) && len(need) > 0 {
		p.log.Warn("peer refused some shared groups; opening a session for the groups of this push only", "peer", host.Name, "err", err)
		s, err = p.open(ctx, host, need)
	}
	return s, err
}

func (p *Pool) open(ctx context.Context, host config.Host, groups []*config.GroupView) (*pooled, error) {
	// Connect first, as a one-shot push does: a peer that cannot be
	// reached is the first thing to report.
	ch, err := p.connect(ctx, host)
	if err != nil {
		return nil, err
	}
	keys := map[string][]byte{}
	var names []string
	for _, g := range groups {
		k, err := proto.ReadKeyFile(g.Key)
		if err != nil {
			ch.Close()
			return nil, fmt.Errorf("group %s: %w", g.Name, err)
		}
		keys[g.Name] = k
		names = append(names, g.Name)
	}
	slices.Sort(names)
	c := proto.NewConn(ch, ch)
	_, version, err := proto.ClientHandshakeVersion(c, p.view.Name, keys, proto.FlagSession|proto.FlagFastSig)
	if err != nil {
		ch.Close()
		return nil, withRemoteStderr(err, ch)
	}
	s := &pooled{peer: host.Name, ch: ch, c: c, version: version, groups: names,
		msgs: make(chan received, 64), quit: make(chan struct{}), used: time.Now()}
	go s.reader()
	p.log.Debug("session opened", "peer", host.Name, "version", version)
	return s, nil
}

// Warm opens sessions to peers in the background, for a sync that scans
// first: the push then pays neither the SSH handshake nor the helper's
// start. A push to a peer whose session is still opening waits for it.
// Peers with a session (idle or opening), SFTP targets and peers this node
// shares no group with are left alone. A session's receiver holds nothing
// until the first batch (proto.FlagSession); one that would (an older
// peer) is closed again, and the push opens its own.
func (p *Pool) Warm(peers ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, peer := range peers {
		if p.closed || p.idle[peer] != nil || p.dialing[peer] != nil || isSFTPTarget(p.view, peer) {
			continue
		}
		host, ok := hostOf(p.view, peer)
		if !ok {
			continue
		}
		delete(p.warmErr, peer)
		done := make(chan struct{})
		p.dialing[peer] = done
		gen := p.gen
		p.wg.Go(func() {
			defer close(done)
			s, err := p.dial(p.ctx, host, nil) // the pool's context: see redial
			p.mu.Lock()
			defer p.mu.Unlock()
			delete(p.dialing, peer)
			switch {
			case err != nil:
				p.log.Debug("open session ahead of the push", "peer", peer, "err", err)
				p.warmErr[peer] = err
			case p.closed || p.gen != gen || p.idle[peer] != nil || !s.persistent():
				p.wg.Go(func() { s.bye(p.byeWait) })
			default:
				p.idle[peer] = s
				p.watch(s, gen)
			}
		})
	}
}

// put takes a session back after a push that ended cleanly.
func (p *Pool) put(s *pooled) {
	s.used = time.Now()
	p.mu.Lock()
	if p.closed || s.gen != p.gen || !s.persistent() || p.idle[s.peer] != nil {
		p.mu.Unlock()
		s.bye(p.byeWait)
		return
	}
	p.idle[s.peer] = s
	p.watch(s, p.gen)
	p.mu.Unlock()
}

// watch runs while s idles: it sends keepalives, and closes s when the
// receiver speaks out of turn (an Error: its daemon stops) or the
// connection breaks; then it opens the session again once, shortly after.
// Called with p.mu held.
func (p *Pool) watch(s *pooled, gen int) {
	s.stopWatch, s.watchDone, s.broken = make(chan struct{}), make(chan struct{}), nil
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(s.watchDone)
		t := time.NewTicker(poolKeepalive)
		defer t.Stop()
		for {
			select {
			case <-s.stopWatch:
				return
			case r := <-s.msgs:
				s.broken = r.err
				if r.err == nil {
					s.broken = fmt.Errorf("peer %s ended the session", s.peer)
					if e, ok := r.m.(*proto.Error); ok {
						s.broken = fmt.Errorf("peer %s ended the session: %s", s.peer, e.Message)
					}
				}
			case <-t.C:
				if err := s.c.Send(proto.Keepalive{}); err != nil {
					s.broken = err
				} else if err := s.c.Flush(); err != nil {
					s.broken = err
				}
			}
			if s.broken != nil {
				p.log.Info("open session ended while idle", "peer", s.peer, "err", s.broken)
				s.close()
				p.mu.Lock()
				if p.idle[s.peer] == s {
					delete(p.idle, s.peer)
				}
				p.mu.Unlock()
				p.redial(s.peer, gen)
				return
			}
		}
	}()
}

// redial opens the session to peer again after poolRedial, unless the
// pool was dropped or closed meanwhile or a push opened one already.
func (p *Pool) redial(peer string, gen int) {
	host, ok := hostOf(p.view, peer)
	if !ok {
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		select {
		case <-time.After(poolRedial):
		case <-p.ctx.Done():
			return
		}
		p.mu.Lock()
		stale := p.closed || p.gen != gen || p.idle[peer] != nil
		p.mu.Unlock()
		if stale {
			return
		}
		// The pool's context, not one that ends with this goroutine: a
		// session's context bounds its life (the transport closes it when
		// the context ends); the dial has the connect timeout of its own.
		s, err := p.dial(p.ctx, host, nil)
		if err != nil {
			p.log.Debug("reopen session", "peer", peer, "err", err)
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.closed || p.gen != gen || p.idle[peer] != nil || !s.persistent() {
			p.wg.Go(func() { s.bye(p.byeWait) })
			return
		}
		p.idle[peer] = s
		p.watch(s, gen)
	}()
}

// Drop closes every idle session (a push in progress closes its own when
// it ends); the pool opens new ones on demand.
func (p *Pool) Drop() {
	p.mu.Lock()
	idle := p.idle
	p.idle = map[string]*pooled{}
	p.gen++
	p.mu.Unlock()
	p.end(idle)
}

// ForOneRun makes this the pool of a single sync run (call it before the
// pool is used): the sessions it opens ahead of the pushes end right
// after their push, in the peer's own goroutine, as a one-shot session
// does, so one helper's exit overlaps the other peers' pushes; and Close
// waits up to d for each helper it ends (a warmed session no push used),
// so that when the run returns the peers' helpers are done and their state
// dbs free for their own commands. The daemon's pool keeps its sessions
// and waits poolByeWait at most.
func (p *Pool) ForOneRun(d time.Duration) { p.oneRun, p.byeWait = true, d }

// Close ends the pool: every session closes, and none opens again.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = map[string]*pooled{}
	p.gen++
	p.mu.Unlock()
	p.end(idle)
	// Only now: the sessions Warm and redial opened live on this context,
	// so cancelling it first would cut them before their Bye. Dials still
	// in progress stop here, and a session they open is closed (closed).
	p.cancel()
	p.wg.Wait()
}

func (p *Pool) end(idle map[string]*pooled) {
	var wg sync.WaitGroup
	for _, s := range idle {
		close(s.stopWatch)
		<-s.watchDone
		if s.broken == nil {
			wg.Go(func() { s.bye(p.byeWait) })
		}
	}
	wg.Wait()
}

// Open lists the peers with an idle session (tests, status).
func (p *Pool) Open() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for peer := range p.idle {
		out = append(out, peer)
	}
	slices.Sort(out)
	return out
}
