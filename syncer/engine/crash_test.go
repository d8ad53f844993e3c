package engine

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ocf-csync/syncer/config"
	"ocf-csync/syncer/scan"
	"ocf-csync/syncer/state"
)

// serveChildEnv makes the test binary a `serve` helper: "config|node|statedir".
const serveChildEnv = "OCF_CSYNC_ENGINE_SERVE_CHILD"

// pushChildEnv makes it `sync`: "config|node|statedir|peer statedir".
const pushChildEnv = "OCF_CSYNC_ENGINE_PUSH_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(serveChildEnv); spec != "" {
		os.Exit(serveChild(spec))
	}
	if spec := os.Getenv(pushChildEnv); spec != "" {
		os.Exit(pushChild(spec))
	}
	os.Exit(m.Run())
}

// childNode loads the config and opens the state db named in a child's
// spec ("config|node|statedir|...").
func childNode(spec string) ([]string, *config.Config, *config.NodeView, *state.Store, error) {
	f := strings.Split(spec, "|")
	cfg, err := config.Load(f[0])
	if err != nil {
		return nil, nil, nil, nil, err
	}
	v, err := cfg.Node(f[1])
	if err != nil {
		return nil, nil, nil, nil, err
	}
	st, err := state.Open(context.Background(), state.Options{Dir: f[2], Node: f[1]})
	return f, cfg, v, st, err
}

func serveChild(spec string) int {
	_, cfg, v, st, err := childNode(spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer st.Close()
	if err := Serve(context.Background(), ServeOptions{View: v, Config: cfg, Store: st, In: os.Stdin, Out: os.Stdout}); err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		return 1
	}
	return 0
}

// pushChild checks and pushes to a serve child of its own, like `sync`.
func pushChild(spec string) int {
	f, _, v, st, err := childNode(spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer st.Close()
	ctx := context.Background()
	if _, err := scan.Check(ctx, st, v, nil, true, scan.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	connect, _ := childConnector(f[0], f[3], 0)
	res, err := Push(ctx, Options{View: v, Store: st, Connect: connect})
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// childChannel runs serve in a child process; killAt > 0 sends it SIGKILL
// once that many bytes were written to it (after a pause, so that it is in
// the middle of applying them).
type childChannel struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    io.ReadCloser
	killAt int64
	sent   int64
	once   sync.Once
	killed chan struct{}
}

func (c *childChannel) Read(p []byte) (int, error) { return c.out.Read(p) }
func (c *childChannel) Write(p []byte) (int, error) {
	if c.killAt > 0 && c.sent+int64(len(p)) >= c.killAt {
		c.once.Do(func() {
			time.Sleep(500 * time.Millisecond) // let it apply what it has
			c.cmd.Process.Signal(syscall.SIGKILL)
			close(c.killed)
		})
	}
	n, err := c.in.Write(p)
	c.sent += int64(n)
	return n, err
}
func (c *childChannel) CloseWrite() error            { return c.in.Close() }
func (c *childChannel) Wait() error                  { return c.cmd.Wait() }
func (c *childChannel) Close() error                 { c.in.Close(); c.cmd.Process.Kill(); return nil }
func (c *childChannel) Counters() (sent, recv int64) { return c.sent, 0 }

func childConnector(cfgPath, stateDir string, killAt int64) (Connector, *childChannel) {
	ch := &childChannel{killAt: killAt, killed: make(chan struct{})}
	return func(ctx context.Context, h config.Host) (Channel, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), serveChildEnv+"="+cfgPath+"|"+h.Name+"|"+stateDir)
		cmd.Stderr = os.Stderr
		var err error
		if ch.in, err = cmd.StdinPipe(); err != nil {
			return nil, err
		}
		if ch.out, err = cmd.StdoutPipe(); err != nil {
			return nil, err
		}
		ch.cmd = cmd
		return ch, cmd.Start()
	}, ch
}

// kill -9 of the receiver's `serve` in the middle of a batch: the next
// sync converges, nothing is lost, no temp file is left, and every file
// applied gets its action run (at least once: actions are queued durably,
// and one that ran just before a crash may run again).
func TestKillReceiverMidBatch(t *testing.T) {
	nodes, dir := setupCfg(t, []string{"a", "b"}, `group g {
  host a b; key KEY; include %data%;
  action { exec "for f in %%; do echo $f; done >> DIR/actions.log"; }
}
`)
	a, b := nodes["a"], nodes["b"]
	const n = 300
	for i := range n {
		write(t, filepath.Join(a.root, fmt.Sprintf("d%d/f%03d", i%3, i)), strings.Repeat(fmt.Sprintf("%03d", i), 3000))
	}
	bState := b.st.Dir()
	must(t, b.st.Close())
	ctx := context.Background()
	connect, ch := childConnector(filepath.Join(dir, "test.cfg"), bState, 1<<20)
	if _, err := scan.Check(ctx, a.st, a.view, nil, true, scan.Options{}); err != nil {
		t.Fatal(err)
	}
	res, err := Push(ctx, Options{View: a.view, Store: a.st, Connect: connect})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch.killed:
	default:
		t.Fatal("the receiver was not killed")
	}
	t.Logf("push with the receiver killed: %v", res.Err())
	if res.Err() == nil {
		t.Error("a push whose receiver was killed reported success")
	}
	applied := 0
	for i := range n {
		if exists(filepath.Join(b.root, fmt.Sprintf("d%d/f%03d", i%3, i))) {
			applied++
		}
	}
	t.Logf("%d of %d files on b when it was killed", applied, n)
	if applied == 0 || applied == n {
		t.Fatalf("not killed mid-batch: %d of %d files there", applied, n)
	}

	// The next sync, with a serve that lives.
	connect, _ = childConnector(filepath.Join(dir, "test.cfg"), bState, 0)
	res, err = Push(ctx, Options{View: a.view, Store: a.st, Connect: connect})
	if err != nil || res.Err() != nil {
		t.Fatalf("sync after the kill: %v %v", err, res.Err())
	}
	for i := range n {
		rel := fmt.Sprintf("d%d/f%03d", i%3, i)
		if read(t, filepath.Join(b.root, rel)) != read(t, filepath.Join(a.root, rel)) {
			t.Errorf("%s differs after the retry", rel)
		}
	}
	if left := tempsBelow(t, b.root); len(left) > 0 {
		t.Errorf("temp files left on b: %q", left)
	}
	ran := map[string]int{}
	for _, l := range strings.Fields(read(t, filepath.Join(dir, "actions.log"))) {
		ran[l]++
	}
	missing := 0
	for i := range n {
		if ran[filepath.Join(b.root, fmt.Sprintf("d%d/f%03d", i%3, i))] == 0 {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d files reached b without their action ever running", missing, n)
	}
	st, err := state.Open(ctx, state.Options{Dir: bState, Node: "b"})
	must(t, err)
	defer st.Close()
	if q := queuedActions(t, st); len(q) != 0 {
		t.Errorf("actions still queued on b: %d", len(q))
	}
	if _, ok, _ := st.Unclean(); ok {
		t.Error("b still holds the unclean-end record after the retry sorted it out")
	}
	must(t, st.Close())
	// From now on a copy equal to the sender's runs no action: touch
	// every file on a (metadata only) and push again.
	must(t, os.Remove(filepath.Join(dir, "actions.log")))
	for i := range n {
		p := filepath.Join(a.root, fmt.Sprintf("d%d/f%03d", i%3, i))
		must(t, os.Chtimes(p, time.Now(), time.Now()))
	}
	if _, err := scan.Check(ctx, a.st, a.view, nil, true, scan.Options{}); err != nil {
		t.Fatal(err)
	}
	connect, _ = childConnector(filepath.Join(dir, "test.cfg"), bState, 0)
	if res, err := Push(ctx, Options{View: a.view, Store: a.st, Connect: connect}); err != nil || res.Err() != nil {
		t.Fatalf("metadata push: %v %v", err, res.Err())
	}
	if exists(filepath.Join(dir, "actions.log")) {
		t.Errorf("a metadata-only push after the recovery ran actions: %q", read(t, filepath.Join(dir, "actions.log")))
	}
}

// kill -9 of the sender at moments spread over its push (mid-stream, while
// recording what the peer acknowledged): the next sync converges with no
// conflict and nothing lost; the sender's database always opens.
func TestKillSenderMidPush(t *testing.T) {
	nodes, dir := setupCfg(t, []string{"a", "b"}, "group g {\n  host a b; key KEY; include %data%;\n}\n")
	a, b := nodes["a"], nodes["b"]
	aState, bState := a.st.Dir(), b.st.Dir()
	must(t, a.st.Close())
	must(t, b.st.Close())
	cfgPath := filepath.Join(dir, "test.cfg")
	const n = 400
	// Each round kills the sender once b has a given share of the round's
	// files: early, in the middle, near the end of the batch.
	for round, share := range []float64{0.05, 0.3, 0.6, 0.9, 0.99} {
		content := func(i int) string { return strings.Repeat(fmt.Sprintf("r%d %03d ", round, i), 800) }
		for i := range n {
			write(t, filepath.Join(a.root, fmt.Sprintf("d%d/f%03d", i%4, i)), content(i))
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), pushChildEnv+"="+cfgPath+"|a|"+aState+"|"+bState)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		must(t, cmd.Start())
		arrived := 0
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
			arrived = 0
			for i := 0; i < n; i += 10 {
				if data, err := os.ReadFile(filepath.Join(b.root, fmt.Sprintf("d%d/f%03d", i%4, i))); err == nil && string(data) == content(i) {
					arrived++
				}
			}
			if float64(arrived) >= share*float64(n/10) {
				break
			}
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		t.Logf("round %d: sender killed with %d of %d sampled files on b: %v %s", round, arrived, n/10, err, stderr.String())
		time.Sleep(200 * time.Millisecond) // the serve child sees the end of its input and finishes
	}
	ctx := context.Background()
	st, err := state.Open(ctx, state.Options{Dir: aState, Node: "a"})
	must(t, err)
	a.st = st
	if _, err := scan.Check(ctx, a.st, a.view, nil, true, scan.Options{}); err != nil {
		t.Fatal(err)
	}
	connect, _ := childConnector(cfgPath, bState, 0)
	res, err := Push(ctx, Options{View: a.view, Store: a.st, Connect: connect})
	if err != nil || res.Err() != nil {
		t.Fatalf("sync after the kills: %v %v", err, res.Err())
	}
	for _, p := range res.Peers {
		t.Logf("final sync: planned %d, updated %d, same %d, conflicts %d", p.Planned, p.Updated, p.Same, p.Conflicts)
		if p.Conflicts != 0 {
			t.Errorf("%d conflicts after killing the sender", p.Conflicts)
		}
	}
	for i := range n {
		rel := fmt.Sprintf("d%d/f%03d", i%4, i)
		if read(t, filepath.Join(b.root, rel)) != read(t, filepath.Join(a.root, rel)) {
			t.Errorf("%s differs", rel)
		}
	}
	if left := tempsBelow(t, b.root); len(left) > 0 {
		t.Errorf("temp files left on b: %q", left)
	}
	st.Close()
	bs, err := state.Open(ctx, state.Options{Dir: bState, Node: "b"})
	must(t, err)
	defer bs.Close()
	if n := conflictCount(t, bs); n != 0 {
		t.Errorf("b recorded %d conflicts", n)
	}
}

// A deletion a killed receiver applied but never recorded: when the sender
// repeats it, the file is gone already, and its action still runs.
func TestUnrecordedDeletionRunsAction(t *testing.T) {
	nodes, dir := setupCfg(t, []string{"a", "b"}, `group g {
  host a b; key KEY; include %data%;
  action { exec "echo %% >> DIR/actions.log"; }
}
`)
	a, b := nodes["a"], nodes["b"]
	write(t, filepath.Join(a.root, "f"), "x")
	for i := range 5 {
		write(t, filepath.Join(a.root, fmt.Sprintf("keep%d", i)), "k")
	}
	if err := a.sync(t, nodes, Options{}).Err(); err != nil {
		t.Fatal(err)
	}
	must(t, os.Remove(filepath.Join(dir, "actions.log")))
	// What the killed serve left: f deleted on b, still recorded there,
	// and the record of an owner that died.
	must(t, os.Remove(filepath.Join(b.root, "f")))
	must(t, b.st.PutUnclean(state.Unclean{PID: 1, Since: time.Now().Add(-time.Minute), FoundAt: time.Now()}))
	must(t, os.Remove(filepath.Join(a.root, "f")))
	if err := a.sync(t, nodes, Options{}).Err(); err != nil {
		t.Fatal(err)
	}
	if got := readOrGone(filepath.Join(dir, "actions.log")); !strings.Contains(got, filepath.Join(b.root, "f")) {
		t.Errorf("the deletion's action did not run on b: %q", got)
	}
	if _, ok, _ := b.st.GetFile(filepath.Join(b.root, "f")); ok {
		t.Error("b still records f")
	}
}
