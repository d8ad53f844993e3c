package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"ocf-csync/syncer/apply"
	"ocf-csync/syncer/config"
	"ocf-csync/syncer/scan"
	"ocf-csync/syncer/state"
)

// node is one side of an in-process two-node setup: both nodes share one
// config whose %data% prefix maps each node to its own directory.
type node struct {
	name string
	view *config.NodeView
	cfg  *config.Config
	st   *state.Store
	root string
}

const testKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ._"

// setup is setupCfg with one group of all names over %data%.
func setup(t testing.TB, names ...string) map[string]*node {
	t.Helper()
	body := "group g {\n  host " + strings.Join(names, " ") + ";\n  key KEY;\n  include %data%;\n  exclude *.tmp;\n}\n"
	nodes, _ := setupCfg(t, names, body)
	return nodes
}

// pipeChannel connects a sender to an in-process Serve.
type pipeChannel struct {
	io.Reader
	w    *io.PipeWriter
	done chan error
	sent int64
}

func (p *pipeChannel) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.sent += int64(n)
	return n, err
}
func (p *pipeChannel) CloseWrite() error        { return p.w.Close() }
func (p *pipeChannel) Wait() error              { return <-p.done }
func (p *pipeChannel) Close() error             { p.w.Close(); return nil }
func (p *pipeChannel) Counters() (int64, int64) { return p.sent, 0 }

func connector(nodes map[string]*node) Connector {
	return func(ctx context.Context, h config.Host) (Channel, error) {
		peer := nodes[h.Name]
		inR, inW := io.Pipe()
		outR, outW := io.Pipe()
		ch := &pipeChannel{Reader: outR, w: inW, done: make(chan error, 1)}
		go func() {
			err := Serve(ctx, ServeOptions{View: peer.view, Config: peer.cfg, Store: peer.st, In: inR, Out: outW})
			outW.CloseWithError(io.EOF)
			inR.Close()
			ch.done <- err
		}()
		return ch, nil
	}
}

func (n *node) sync(t *testing.T, nodes map[string]*node, o Options) Result {
	t.Helper()
	ctx := context.Background()
	sr, err := scan.Check(ctx, n.st, n.view, nil, true, scan.Options{AllowMassDelete: o.AllowMassDelete})
	if err != nil {
		t.Fatal(err)
	}
	o.View, o.Store, o.Connect = n.view, n.st, connector(nodes)
	o.Refusals, o.Scanned = sr.Refused, true
	res, err := Push(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPushCreateUpdateDelete(t *testing.T) {
	nodes := setup(t, "a", "b", "c")
	a, b, c := nodes["a"], nodes["b"], nodes["c"]
	write(t, filepath.Join(a.root, "x/one.txt"), "one")
	write(t, filepath.Join(a.root, "two.txt"), "two")
	write(t, filepath.Join(a.root, "skip.tmp"), "excluded")
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	if err := os.WriteFile(filepath.Join(a.root, "big.bin"), big, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("x/one.txt", filepath.Join(a.root, "link")); err != nil {
		t.Fatal(err)
	}
	res := a.sync(t, nodes, Options{})
	if err := res.Err(); err != nil {
		t.Fatalf("first push: %v", err)
	}
	for _, peer := range []*node{b, c} {
		if got := read(t, filepath.Join(peer.root, "x/one.txt")); got != "one" {
			t.Errorf("%s: one.txt = %q", peer.name, got)
		}
		if got, _ := os.Readlink(filepath.Join(peer.root, "link")); got != "x/one.txt" {
			t.Errorf("%s: link -> %q", peer.name, got)
		}
		if _, err := os.Lstat(filepath.Join(peer.root, "skip.tmp")); !os.IsNotExist(err) {
			t.Errorf("%s: excluded file was synced (err %v)", peer.name, err)
		}
		if got := read(t, filepath.Join(peer.root, "big.bin")); got != string(big) {
			t.Errorf("%s: big.bin differs", peer.name)
		}
	}

	// A second run with no change sends nothing.
	res = a.sync(t, nodes, Options{})
	for _, p := range res.Peers {
		if p.Planned != 0 || p.DataBytes != 0 {
			t.Errorf("no-change push to %s planned %d, sent %d data bytes", p.Peer, p.Planned, p.DataBytes)
		}
	}

	// One byte changed in the big file travels as a delta.
	big[len(big)/2] ^= 1
	if err := os.WriteFile(filepath.Join(a.root, "big.bin"), big, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(a.root, "two.txt"))
	res = a.sync(t, nodes, Options{})
	if err := res.Err(); err != nil {
		t.Fatalf("delta push: %v", err)
	}
	for _, p := range res.Peers {
		if p.DataBytes > 200<<10 {
			t.Errorf("delta to %s sent %d data bytes for a 1-byte change in 1 MiB", p.Peer, p.DataBytes)
		}
	}
	for _, peer := range []*node{b, c} {
		if got := read(t, filepath.Join(peer.root, "big.bin")); got != string(big) {
			t.Errorf("%s: big.bin differs after delta", peer.name)
		}
		if _, err := os.Lstat(filepath.Join(peer.root, "two.txt")); !os.IsNotExist(err) {
			t.Errorf("%s: deleted file still there (err %v)", peer.name, err)
		}
	}
}

func TestConflictThenForce(t *testing.T) {
	nodes := setup(t, "a", "b")
	a, b := nodes["a"], nodes["b"]
	write(t, filepath.Join(a.root, "f"), "v1")
	if err := a.sync(t, nodes, Options{}).Err(); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(a.root, "f"), "from a")
	write(t, filepath.Join(b.root, "f"), "from b")
	res := a.sync(t, nodes, Options{})
	if res.Peers[0].Conflicts != 1 {
		t.Fatalf("want 1 conflict, got %+v", res.Peers[0])
	}
	if got := read(t, filepath.Join(b.root, "f")); got != "from b" {
		t.Fatalf("conflict overwrote the peer: %q", got)
	}
	// The same edit on both sides is not a conflict.
	write(t, filepath.Join(b.root, "f"), "from a")
	res = a.sync(t, nodes, Options{})
	if err := res.Err(); err != nil {
		t.Fatalf("identical edit: %v", err)
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	nodes := setup(t, "a", "b")
	a, b := nodes["a"], nodes["b"]
	write(t, filepath.Join(a.root, "f"), "v1")
	ctx := context.Background()
	if _, err := scan.Check(ctx, a.st, a.view, nil, true, scan.Options{}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	var mu sync.Mutex
	_ = &mu
	res, err := Push(ctx, Options{View: a.view, Store: a.st, Connect: connector(nodes), DryRun: true, Progress: &out})
	if err != nil || res.Err() != nil {
		t.Fatal(err, res.Err())
	}
	if _, err := os.Lstat(filepath.Join(b.root, "f")); !os.IsNotExist(err) {
		t.Fatalf("dry run wrote on the peer")
	}
	n, _ := a.st.DirtyCount("b")
	if n == 0 {
		t.Fatalf("dry run cleared dirty entries")
	}
	if !strings.Contains(out.String(), "/f") {
		t.Errorf("dry run output does not name the file: %q", out.String())
	}
}

func TestFinalSyncWritesHandoff(t *testing.T) {
	nodes := setup(t, "a", "b", "c")
	a, b, c := nodes["a"], nodes["b"], nodes["c"]
	write(t, filepath.Join(a.root, "f"), "v1")
	if err := a.sync(t, nodes, Options{}).Err(); err != nil {
		t.Fatal(err)
	}
	// c has a conflicting edit: it must not get a handoff.
	write(t, filepath.Join(a.root, "f"), "v2")
	write(t, filepath.Join(c.root, "f"), "c's own")
	h := &state.Handoff{Epoch: 3, From: "a", Clean: true, UpToNs: 42}
	res := a.sync(t, nodes, Options{Handoff: h})
	byPeer := map[string]PeerResult{}
	for _, p := range res.Peers {
		byPeer[p.Peer] = p
	}
	if !byPeer["b"].HandedOff || byPeer["c"].HandedOff {
		t.Fatalf("handed off: b=%v c=%v, want true false", byPeer["b"].HandedOff, byPeer["c"].HandedOff)
	}
	got, err := b.st.Handoffs()
	if err != nil || len(got) != 1 || got[0].Epoch != 3 || got[0].From != "a" || !got[0].Clean {
		t.Fatalf("b's handoffs = %+v, %v", got, err)
	}
	if got, _ := c.st.Handoffs(); len(got) != 0 {
		t.Fatalf("c got a handoff despite its conflict: %+v", got)
	}

	// Nothing pending for b at all: the final sync still reaches it.
	h2 := &state.Handoff{Epoch: 4, From: "a", Clean: true}
	res = a.sync(t, nodes, Options{Handoff: h2, Peers: []string{"b"}})
	if len(res.Peers) != 1 || !res.Peers[0].HandedOff {
		t.Fatalf("idle final sync: %+v", res.Peers)
	}
}

func TestBlockedPeerGetsNothing(t *testing.T) {
	nodes := setup(t, "a", "b")
	a, b := nodes["a"], nodes["b"]
	write(t, filepath.Join(a.root, "f"), "v1")
	res := a.sync(t, nodes, Options{Blocked: map[string]string{"b": "failover guard"}})
	if len(res.Peers) != 1 || res.Peers[0].Blocked == "" {
		t.Fatalf("want b blocked, got %+v", res.Peers)
	}
	if _, err := os.Lstat(filepath.Join(b.root, "f")); !os.IsNotExist(err) {
		t.Fatalf("blocked peer received a file")
	}
}

// After a takeover the new active node has no base with the third node; a
// copy the third node got from the old active node is not a conflict.
func TestTakeoverPushesToThirdNode(t *testing.T) {
	nodes := setup(t, "a", "b", "c")
	a, b, c := nodes["a"], nodes["b"], nodes["c"]
	write(t, filepath.Join(a.root, "f"), "v1 from a")
	if err := a.sync(t, nodes, Options{}).Err(); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(b.root, "f"), "v2 from b")
	if err := b.sync(t, nodes, Options{Peers: []string{"c"}}).Err(); err != nil {
		t.Fatalf("push from the new active node to the third node: %v", err)
	}
	if got := read(t, filepath.Join(c.root, "f")); got != "v2 from b" {
		t.Fatalf("c has %q", got)
	}
	// A local edit on c is still protected.
	write(t, filepath.Join(c.root, "g"), "c's own file")
	write(t, filepath.Join(b.root, "g"), "b's file")
	res := b.sync(t, nodes, Options{Peers: []string{"c"}})
	if res.Peers[0].Conflicts != 1 {
		t.Fatalf("a file c created itself was not protected: %+v", res.Peers[0])
	}
}

// TestPushAcrossAckFlights pushes more files than fit in one group of
// acks, so the receiver makes groups durable in the background while it
// applies the next: every file arrives, both sides record every base, and
// nothing stays dirty.
func TestPushAcrossAckFlights(t *testing.T) {
	nodes := setup(t, "a", "b")
	a, b := nodes["a"], nodes["b"]
	n := ackBatchFiles + ackBatchFiles/5
	name := func(i int) string { return fmt.Sprintf("d%02d/f%05d", i%25, i) }
	for i := range n {
		write(t, filepath.Join(a.root, name(i)), fmt.Sprintf("v1 %d\n", i))
	}
	check := func(version string) {
		t.Helper()
		for i := range n {
			p := filepath.Join(b.root, name(i))
			if got := read(t, p); got != fmt.Sprintf("%s %d\n", version, i) {
				t.Fatalf("%s on b = %q, want %s", name(i), got, version)
			}
			for _, side := range []struct {
				nd   *node
				peer string
			}{{a, "b"}, {b, "a"}} {
				if _, ok, err := side.nd.st.GetBase(side.peer, filepath.Join(side.nd.root, name(i))); err != nil || !ok {
					t.Fatalf("%s: no base of %s for %s (%v)", side.nd.name, name(i), side.peer, err)
				}
			}
		}
		if d, err := a.st.DirtyCount("b"); err != nil || d != 0 {
			t.Fatalf("a still has %d dirty for b (%v)", d, err)
		}
	}
	if err := a.sync(t, nodes, Options{}).Err(); err != nil {
		t.Fatal(err)
	}
	check("v1")
	for i := range n {
		write(t, filepath.Join(a.root, name(i)), fmt.Sprintf("v2 %d\n", i))
	}
	if err := a.sync(t, nodes, Options{}).Err(); err != nil {
		t.Fatal(err)
	}
	check("v2")
}

// A receiver that cannot make the received files durable (syncfs fails)
// records none of them and acks none: the sender keeps them dirty, and the
// next push, with a healthy disk, brings them all. Both ways an ack batch
// ends are tried: the small push's last batch and a full flight.
func TestSyncFailureRecordsNothing(t *testing.T) {
	for _, files := range []int{3, ackBatchFiles + 10} {
		t.Run(fmt.Sprint(files), func(t *testing.T) {
			nodes := setup(t, "a", "b")
			a, b := nodes["a"], nodes["b"]
			name := func(i int) string { return fmt.Sprintf("d%02d/f%05d", i%7, i) }
			for i := range files {
				write(t, filepath.Join(a.root, name(i)), fmt.Sprintf("v1 %d\n", i))
			}
			defer func(f func(*apply.Target) error) { syncTarget = f }(syncTarget)
			syncTarget = func(*apply.Target) error { return errors.New("syncfs: input/output error") }
			res := a.sync(t, nodes, Options{})
			if res.Err() == nil {
				t.Fatal("push succeeded although the receiver could not make anything durable")
			}
			recorded := 0
			for i := range files {
				p := filepath.Join(b.root, name(i))
				if _, ok, err := b.st.GetFile(p); err != nil || ok {
					recorded++
				}
				if _, ok, err := a.st.GetBase("b", filepath.Join(a.root, name(i))); err != nil || ok {
					t.Fatalf("a recorded %s as agreed with b although b's syncfs failed (%v)", name(i), err)
				}
			}
			if recorded != 0 {
				t.Fatalf("b recorded %d of %d files whose syncfs failed", recorded, files)
			}
			if d, err := a.st.DirtyCount("b"); err != nil || d < files {
				t.Fatalf("a has %d dirty for b (%v), want every file still pending", d, err)
			}
			syncTarget = (*apply.Target).Sync
			if err := a.sync(t, nodes, Options{}).Err(); err != nil {
				t.Fatal(err)
			}
			for i := range files {
				if got := read(t, filepath.Join(b.root, name(i))); got != fmt.Sprintf("v1 %d\n", i) {
					t.Fatalf("%s on b = %q after the retry", name(i), got)
				}
				if _, ok, err := b.st.GetFile(filepath.Join(b.root, name(i))); err != nil || !ok {
					t.Fatalf("b has no record of %s after the retry (%v)", name(i), err)
				}
			}
		})
	}
}
