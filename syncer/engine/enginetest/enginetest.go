// Package enginetest runs several ocf-csync nodes in one test process: each
// node has its own data directory and state database, and a Connector
// serves a peer with engine.Serve over in-memory pipes. The packages above
// the engine (ha, ra) test their sync decisions with it; the engine's own
// tests keep their internal helpers.
package enginetest

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ocf-csync/syncer/config"
	"ocf-csync/syncer/engine"
	"ocf-csync/syncer/scan"
	"ocf-csync/syncer/state"
)

// Node is one in-process node.
type Node struct {
	Name   string
	View   *config.NodeView
	Config *config.Config
	Store  *state.Store
	Root   string // its data directory (the group's include)
}

// Key is the group key every node shares.
const Key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ._"

// Nodes makes one group of all names over %data%, a prefix that maps each
// node to its own directory; extra is appended to the config.
func Nodes(t testing.TB, extra string, names ...string) map[string]*Node {
	t.Helper()
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	if err := os.WriteFile(key, []byte(Key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("prefix data {\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  on %s: %s;\n", n, filepath.Join(dir, n, "data"))
	}
	fmt.Fprintf(&b, "}\ngroup g {\n  host %s;\n  key %s;\n  include %%data%%;\n}\n%s", strings.Join(names, " "), key, extra)
	path := filepath.Join(dir, "test.cfg")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*Node{}
	for _, n := range names {
		v, err := cfg.Node(n)
		if err != nil {
			t.Fatal(err)
		}
		root := filepath.Join(dir, n, "data")
		if err := os.MkdirAll(root, 0o755); err != nil {
			t.Fatal(err)
		}
		st, err := state.Open(context.Background(), state.Options{Dir: filepath.Join(dir, n, "state"), Node: n})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		out[n] = &Node{Name: n, View: v, Config: cfg, Store: st, Root: root}
	}
	return out
}

// Path is a path in n's data directory.
func (n *Node) Path(rel string) string { return filepath.Join(n.Root, rel) }

// Write writes a file below n's data directory.
func (n *Node) Write(t testing.TB, rel, content string) {
	t.Helper()
	p := n.Path(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Read returns a file's content below n's data directory, "<missing>" if
// there is none.
func (n *Node) Read(rel string) string {
	b, err := os.ReadFile(n.Path(rel))
	if err != nil {
		return "<missing>"
	}
	return string(b)
}

// Sync checks n's tree and pushes to every peer (or opts.Peers).
func (n *Node) Sync(t testing.TB, nodes map[string]*Node, o engine.Options) engine.Result {
	t.Helper()
	ctx := context.Background()
	if _, err := scan.Check(ctx, n.Store, n.View, nil, true, scan.Options{}); err != nil {
		t.Fatal(err)
	}
	o.View, o.Store, o.Connect = n.View, n.Store, Connector(nodes)
	res, err := engine.Push(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// CompareOptions are n's options for engine.Compare against nodes.
func (n *Node) CompareOptions(nodes map[string]*Node) engine.CompareOptions {
	return engine.CompareOptions{View: n.View, Store: n.Store, Connect: Connector(nodes), Ignore: n.Config.Ignore}
}

// Connector serves each peer in-process; a node missing from nodes (or
// mapped to nil) is unreachable.
func Connector(nodes map[string]*Node) engine.Connector {
	return func(ctx context.Context, h config.Host) (engine.Channel, error) {
		peer := nodes[h.Name]
		if peer == nil {
			return nil, fmt.Errorf("cannot connect to peer %s: unreachable in this test", h.Name)
		}
		toPeer, fromSender := io.Pipe()
		fromPeer, toSender := io.Pipe()
		ch := &pipe{r: fromPeer, w: fromSender, done: make(chan error, 1)}
		go func() {
			err := engine.Serve(ctx, engine.ServeOptions{View: peer.View, Config: peer.Config, Store: peer.Store, In: toPeer, Out: toSender})
			toSender.CloseWithError(io.EOF)
			toPeer.Close()
			ch.done <- err
		}()
		return ch, nil
	}
}

// pipe is an engine.Channel to an in-process Serve.
type pipe struct {
	r    *io.PipeReader
	w    *io.PipeWriter
	done chan error
	sent int64
}

func (p *pipe) Read(b []byte) (int, error) { return p.r.Read(b) }
func (p *pipe) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.sent += int64(n)
	return n, err
}
func (p *pipe) CloseWrite() error            { return p.w.Close() }
func (p *pipe) Wait() error                  { return <-p.done }
func (p *pipe) Close() error                 { p.w.Close(); p.r.Close(); return nil }
func (p *pipe) Counters() (sent, recv int64) { return p.sent, 0 }
