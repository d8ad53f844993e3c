package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ocf-csync/syncer/config"
	"ocf-csync/syncer/scan"
	"ocf-csync/syncer/state"
)

// poolRig connects a to its peers the way a peer without a daemon serves
// a push: serve opens the peer's state db itself (OpenStore), per batch in
// a persistent session. It counts connections and store openings.
type poolRig struct {
	t      *testing.T
	nodes  map[string]*node
	dirs   map[string]string // state dir per node
	quit   map[string]chan struct{}
	dials  map[string]*atomic.Int32
	opens  map[string]*atomic.Int32
	serves sync.WaitGroup
	mu     sync.Mutex
	errs   map[string][]error // what each peer's serve returned
	breaks map[string]*atomic.Bool
	// exitDelay: a helper takes this long to exit after its session ends
	// (a state db closing); exited counts the helpers that did.
	exitDelay time.Duration
	exited    atomic.Int32
}

func newPoolRig(t *testing.T, names ...string) *poolRig {
	r := &poolRig{t: t, nodes: setup(t, names...), dirs: map[string]string{}, quit: map[string]chan struct{}{},
		dials: map[string]*atomic.Int32{}, opens: map[string]*atomic.Int32{}, errs: map[string][]error{}, breaks: map[string]*atomic.Bool{}}
	for _, n := range names[1:] {
		// The peers' stores are not held open: serve takes them.
		r.dirs[n] = r.nodes[n].st.Dir()
		r.nodes[n].st.Close()
		r.quit[n] = make(chan struct{})
		r.dials[n], r.opens[n], r.breaks[n] = &atomic.Int32{}, &atomic.Int32{}, &atomic.Bool{}
	}
	return r
}

// breakable fails every write once broken is set, as a connection that died
// without a word would.
type breakable struct {
	*pipeChannel
	broken *atomic.Bool
}

func (b *breakable) Write(p []byte) (int, error) {
	if b.broken.Load() {
		return 0, errors.New("connection reset")
	}
	return b.pipeChannel.Write(p)
}

func (r *poolRig) connect(ctx context.Context, h config.Host) (Channel, error) {
	peer := r.nodes[h.Name]
	r.dials[h.Name].Add(1)
	r.breaks[h.Name].Store(false)
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	ch := &pipeChannel{Reader: outR, w: inW, done: make(chan error, 1)}
	open := func(ctx context.Context) (*state.Store, error) {
		r.opens[h.Name].Add(1)
		return state.Open(ctx, state.Options{Dir: r.dirs[h.Name], Node: h.Name, LockTimeout: 2 * time.Second})
	}
	r.mu.Lock()
	quit := r.quit[h.Name]
	r.mu.Unlock()
	r.serves.Add(1)
	go func() {
		defer r.serves.Done()
		err := Serve(context.Background(), ServeOptions{View: peer.view, Config: peer.cfg, OpenStore: open,
			In: inR, Out: outW, Quit: quit})
		outW.CloseWithError(io.EOF)
		inR.Close()
		r.mu.Lock()
		r.errs[h.Name] = append(r.errs[h.Name], err)
		r.mu.Unlock()
		time.Sleep(r.exitDelay)
		r.exited.Add(1)
		ch.done <- err
	}()
	// As the SSH transport does: the context of the dial bounds the
	// session's life.
	context.AfterFunc(ctx, func() { ch.Close(); outR.Close() })
	return &breakable{ch, r.breaks[h.Name]}, nil
}

// newPool is a's pool, closed at the end of the test (Close may come
// earlier too).
func (r *poolRig) newPool() *Pool {
	pool := NewPool(r.nodes["a"].view, r.connect, nil)
	r.t.Cleanup(pool.Close)
	return pool
}

// push scans a and pushes with the pool.
func (r *poolRig) push(pool *Pool) Result {
	r.t.Helper()
	a := r.nodes["a"]
	ctx := context.Background()
	if _, err := scan.Check(ctx, a.st, a.view, nil, true, scan.Options{}); err != nil {
		r.t.Fatal(err)
	}
	res, err := Push(ctx, Options{View: a.view, Store: a.st, Connect: r.connect, Pool: pool})
	if err != nil {
		r.t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		r.t.Fatalf("push: %v", err)
	}
	return res
}

// pushVersion writes f.txt on a, pushes it, and checks that b holds it
// and that wantDials connections to b were opened in all.
func (r *poolRig) pushVersion(pool *Pool, body string, wantDials int32) {
	r.t.Helper()
	write(r.t, r.nodes["a"].root+"/f.txt", body)
	r.push(pool)
	if got := read(r.t, filepath.Join(r.nodes["b"].root, "f.txt")); got != body {
		r.t.Fatalf("b has %q, want %q", got, body)
	}
	if n := r.dials["b"].Load(); n != wantDials {
		r.t.Errorf("connections to b: %d, want %d", n, wantDials)
	}
}

// waitOpen waits up to 5 s for pool to hold an idle session to peer.
func waitOpen(t *testing.T, pool *Pool, peer string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Contains(pool.Open(), peer) {
		if time.Now().After(deadline) {
			t.Fatalf("no session to %s 5 s after Warm", peer)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// storeFree checks that the peer's state db can be taken now, as its own
// status or cron sync would.
func (r *poolRig) storeFree(peer string) {
	r.t.Helper()
	st, err := state.Open(context.Background(), state.Options{Dir: r.dirs[peer], Node: peer, LockTimeout: 200 * time.Millisecond})
	if err != nil {
		r.t.Fatalf("%s's state db is held while its session idles: %v", peer, err)
	}
	st.Close()
}

func TestPoolKeepsSessionsAndTakesStorePerBatch(t *testing.T) {
	r := newPoolRig(t, "a", "b", "c")
	a := r.nodes["a"]
	pool := r.newPool()
	for i := range 3 {
		write(t, a.root+"/f.txt", fmt.Sprintf("version %d\n", i))
		write(t, a.root+fmt.Sprintf("/d%d/g.txt", i), "new\n")
		r.push(pool)
		for _, p := range []string{"b", "c"} {
			if got := read(t, filepath.Join(r.nodes[p].root, "f.txt")); got != fmt.Sprintf("version %d\n", i) {
				t.Fatalf("push %d: %s has %q", i, p, got)
			}
			r.storeFree(p)
		}
		if got := pool.Open(); len(got) != 2 {
			t.Fatalf("push %d: open sessions %v, want b and c", i, got)
		}
	}
	for _, p := range []string{"b", "c"} {
		if n := r.dials[p].Load(); n != 1 {
			t.Errorf("%s: %d connections for 3 pushes, want 1", p, n)
		}
		if n := r.opens[p].Load(); n < 3 {
			t.Errorf("%s: state db taken %d times for 3 pushes, want once per batch", p, n)
		}
	}
	// The peers recorded what they received (the sender's bases and the
	// receivers' records agree): a new push has nothing to do.
	for _, p := range r.push(pool).Peers {
		if p.Planned != 0 {
			t.Errorf("a push after the sync planned %+v", p)
		}
	}
	pool.Close()
	r.serves.Wait()
	for p, errs := range r.errs {
		for _, err := range errs {
			if err != nil {
				t.Errorf("%s: serve ended with %v, want a clean Bye", p, err)
			}
		}
	}
	if got := pool.Open(); len(got) != 0 {
		t.Errorf("open sessions after Close: %v", got)
	}
}

func TestPoolReopensSessionAfterPeerQuit(t *testing.T) {
	defer func(d time.Duration) { poolRedial = d }(poolRedial)
	poolRedial = 10 * time.Millisecond
	r := newPoolRig(t, "a", "b")
	pool := r.newPool()
	r.pushVersion(pool, "one\n", 1)
	// b's daemon stops: its serve ends the idle session, the pool opens a
	// new one shortly after.
	r.mu.Lock()
	old := r.quit["b"]
	r.quit["b"] = make(chan struct{})
	r.mu.Unlock()
	close(old)
	deadline := time.Now().Add(5 * time.Second)
	for r.dials["b"].Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := r.dials["b"].Load(); n != 2 {
		t.Fatalf("connections to b after its serve quit: %d, want 2 (reopened)", n)
	}
	r.mu.Lock()
	first := r.errs["b"]
	r.mu.Unlock()
	if len(first) != 1 || !errors.Is(first[0], errQuit) {
		t.Fatalf("b's first serve returned %v, want errQuit", first)
	}
	r.pushVersion(pool, "two\n", 2)
}

// A session that died without a word (no Error, no EOF while idle) fails
// the next push at its first write: the push goes again over a new one.
func TestPoolRetriesStaleSession(t *testing.T) {
	r := newPoolRig(t, "a", "b")
	pool := r.newPool()
	r.pushVersion(pool, "one\n", 1)
	r.breaks["b"].Store(true)
	r.pushVersion(pool, "two\n", 2) // the stale one replaced
}

// Drop (the gate closed) ends every idle session; the next push opens new
// ones.
func TestPoolDrop(t *testing.T) {
	r := newPoolRig(t, "a", "b")
	pool := r.newPool()
	r.pushVersion(pool, "one\n", 1)
	pool.Drop()
	if got := pool.Open(); len(got) != 0 {
		t.Fatalf("open sessions after Drop: %v", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.mu.Lock()
		n := len(r.errs["b"])
		r.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b's serve still runs after Drop")
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.pushVersion(pool, "two\n", 2)
}

func TestReadCacheReadsOnce(t *testing.T) {
	c := newReadCache(4)
	var reads atomic.Int32
	it := &item{path: "/x/f", cur: state.FileRecord{Kind: state.KindReg, Size: 3, Ino: 7}}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			body, _, problem := c.get(it, func() ([]byte, state.Hash, string) {
				reads.Add(1)
				time.Sleep(5 * time.Millisecond)
				return []byte("abc"), state.Hash{1}, ""
			})
			if string(body) != "abc" || problem != "" {
				t.Errorf("got %q %q", body, problem)
			}
		})
	}
	wg.Wait()
	if n := reads.Load(); n != 1 {
		t.Errorf("read %d times for 4 peers, want 1", n)
	}
	if len(c.m) != 0 || c.bytes != 0 {
		t.Errorf("cache holds %d entries, %d bytes after every peer took it", len(c.m), c.bytes)
	}
	// Another version of the file (the record changed) is read again.
	it2 := &item{path: "/x/f", cur: state.FileRecord{Kind: state.KindReg, Size: 4, Ino: 7}}
	c.get(it2, func() ([]byte, state.Hash, string) { reads.Add(1); return []byte("abcd"), state.Hash{}, "" })
	if n := reads.Load(); n != 2 {
		t.Errorf("a changed record was served from the cache")
	}
}

func TestReadCacheBudget(t *testing.T) {
	defer func(b int64) { readCacheBudget = b }(readCacheBudget)
	readCacheBudget = 10
	c := newReadCache(2)
	for i := range 5 {
		it := &item{path: fmt.Sprintf("/f%d", i), cur: state.FileRecord{Kind: state.KindReg, Size: 4}}
		c.get(it, func() ([]byte, state.Hash, string) { return []byte("1234"), state.Hash{}, "" })
	}
	if c.bytes > 10 || len(c.m) > 2 {
		t.Errorf("cache holds %d bytes in %d entries, budget 10", c.bytes, len(c.m))
	}
	// The newest ones are still there for the second peer.
	if c.m["/f4"] == nil {
		t.Error("the newest entry was dropped")
	}
}

// Warm opens sessions ahead of the push (a sync does it while it scans):
// the push waits for one still opening instead of dialing again, the peer
// holds nothing while the session waits, and a peer that could not be
// reached is reported from the warm-up, without a second connect.
func TestPoolWarm(t *testing.T) {
	r := newPoolRig(t, "a", "b", "c")
	a := r.nodes["a"]
	release := make(chan struct{})
	var cDials atomic.Int32
	connect := func(ctx context.Context, h config.Host) (Channel, error) {
		switch h.Name {
		case "b":
			<-release
		case "c":
			cDials.Add(1)
			return nil, errors.New("dial c: connection refused")
		}
		return r.connect(ctx, h)
	}
	pool := NewPool(a.view, connect, nil)
	t.Cleanup(pool.Close)
	write(t, a.root+"/f.txt", "warm\n")
	ctx := context.Background()
	if _, err := scan.Check(ctx, a.st, a.view, nil, true, scan.Options{}); err != nil {
		t.Fatal(err)
	}
	pool.Warm("b", "c", "b")
	type pushed struct {
		res Result
		err error
	}
	out := make(chan pushed, 1)
	go func() {
		res, err := Push(ctx, Options{View: a.view, Store: a.st, Connect: connect, Pool: pool})
		out <- pushed{res, err}
	}()
	select {
	case p := <-out:
		t.Fatalf("push ended while b's session was still opening: %+v %v", p.res, p.err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	p := <-out
	if p.err != nil {
		t.Fatal(p.err)
	}
	if got := read(t, filepath.Join(r.nodes["b"].root, "f.txt")); got != "warm\n" {
		t.Fatalf("b has %q", got)
	}
	if n := r.dials["b"].Load(); n != 1 {
		t.Errorf("connections to b: %d, want 1 (the warm one)", n)
	}
	r.storeFree("b")
	var cRes *PeerResult
	for i := range p.res.Peers {
		if p.res.Peers[i].Peer == "c" {
			cRes = &p.res.Peers[i]
		}
	}
	if cRes == nil || cRes.Err == nil || !strings.Contains(cRes.Err.Error(), "connection refused") {
		t.Fatalf("c's result %+v, want the warm-up's connection error", cRes)
	}
	if n := cDials.Load(); n != 1 {
		t.Errorf("connects to c: %d, want 1 (the push reports the warm-up's failure)", n)
	}
	// A warm session that waits holds nothing on its peer: its own status
	// or cron sync goes ahead.
	pool.Drop()
	pool.Warm("b")
	waitOpen(t, pool, "b")
	if n := r.dials["b"].Load(); n != 2 {
		t.Errorf("connections to b after Drop and Warm: %d, want 2", n)
	}
	r.storeFree("b")
}

// A sync run's pool (ForOneRun) ends each session right after its push,
// as a one-shot session did: the push returns once the peer's helper
// exited (its state db free), so with many peers one helper's exit
// overlaps the others' pushes; a session warmed but not used ends at
// Close, which waits for its helper too. The daemon's pool keeps the
// session and its Close waits poolByeWait at most.
func TestPoolForOneRun(t *testing.T) {
	defer func(d time.Duration) { poolByeWait = d }(poolByeWait)
	poolByeWait = 100 * time.Millisecond
	for _, oneRun := range []bool{false, true} {
		r := newPoolRig(t, "a", "b")
		r.exitDelay = 500 * time.Millisecond
		pool := r.newPool()
		if oneRun {
			pool.ForOneRun(10 * time.Second)
		}
		// As a sync does: the session opens while the scan runs (on the
		// pool's context, which Close ends only after the Bye).
		pool.Warm("b")
		r.pushVersion(pool, "one\n", 1)
		if got := r.exited.Load() == 1; got != oneRun {
			t.Errorf("ForOneRun %v: helper exited when the push returned: %v, want %v", oneRun, got, oneRun)
		}
		if got := len(pool.Open()) == 0; got != oneRun {
			t.Errorf("ForOneRun %v: sessions left open after the push: %v", oneRun, pool.Open())
		}
		if oneRun {
			r.storeFree("b")
		}
		pool.Close()
		if got := r.exited.Load() == 1; got != oneRun {
			t.Errorf("ForOneRun %v: helper exited before Close returned: %v, want %v", oneRun, got, oneRun)
		}
		r.serves.Wait()
		r.mu.Lock()
		errs := r.errs["b"]
		r.mu.Unlock()
		if len(errs) != 1 || errs[0] != nil {
			t.Errorf("ForOneRun %v: b's serve ended with %v, want one clean Bye", oneRun, errs)
		}
	}

	// Warmed, never used (the push found nothing for b after all): Close
	// ends it and waits for the helper.
	r := newPoolRig(t, "a", "b")
	r.exitDelay = 500 * time.Millisecond
	pool := r.newPool()
	pool.ForOneRun(10 * time.Second)
	pool.Warm("b")
	waitOpen(t, pool, "b")
	pool.Close()
	if r.exited.Load() != 1 {
		t.Error("a warmed session's helper still ran when Close returned")
	}
	r.storeFree("b")
}
