package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ocf-csync/syncer/config"
	"ocf-csync/syncer/delta"
	"ocf-csync/syncer/proto"
	"ocf-csync/syncer/scan"
	"ocf-csync/syncer/state"
)

// Tests of what a key-holding but hostile peer can try on the other side:
// a sender against Serve (its proved groups, the announced sizes, the
// deadlines) and a receiver against Push (signatures nobody asked for).
// Each failed on the code before the fix it covers (issue #11).

const otherKey = "ZYXWVUTSRQPONMLKJIHGFEDCBAzyxwvutsrqponmlkjihgfedcba9876543210_."

// hostileGroups is a node b that shares group g with a, and three groups
// a must not reach: "other" (a is no host), "slave" (a is a slave) and
// "nokey" (a is a host but proves only g in these tests).
const hostileGroups = `group g {
  host a b;
  key KEY;
  include %data%/g;
}
group other {
  host b c;
  key DIR/other.key;
  include %data%/other;
}
group slave {
  host b (a);
  key KEY;
  include %data%/slave;
}
group nokey {
  host a b;
  key DIR/other.key;
  include %data%/nokey;
}
`

func setupHostile(t *testing.T) map[string]*node {
	t.Helper()
	nodes, dir := setupCfg(t, []string{"a", "b", "c"}, hostileGroups)
	if err := os.WriteFile(filepath.Join(dir, "other.key"), []byte(otherKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return nodes
}

// fakeSender runs Serve for n on pipes and returns the sender's end after a
// handshake as `from` proving groups (keys by group name).
type fakeSession struct {
	c    *proto.Conn
	done chan error
}

// startServe runs Serve on OS pipes, whose buffers let both sides write
// before the other reads, as over SSH.
func startServe(t *testing.T, o ServeOptions) *fakeSession {
	t.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	o.In, o.Out = inR, outW
	s := &fakeSession{c: proto.NewConn(outR, inW), done: make(chan error, 1)}
	go func() {
		err := Serve(context.Background(), o)
		outW.Close()
		inR.Close()
		s.done <- err
	}()
	t.Cleanup(func() { inW.Close(); outR.Close() })
	return s
}

func fakeSender(t *testing.T, n *node, from string, keys map[string]string) *fakeSession {
	t.Helper()
	s := startServe(t, ServeOptions{View: n.view, Config: n.cfg, Store: n.st})
	k := map[string][]byte{}
	for g, key := range keys {
		k[g] = []byte(key)
	}
	if _, err := proto.ClientHandshake(s.c, from, k, 0); err != nil {
		t.Fatalf("handshake as %s: %v", from, err)
	}
	return s
}

// wait returns Serve's error, failing the test if it does not end.
func (s *fakeSession) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not end")
		return nil
	}
}

// endBatch sends EndBatch and collects every answer up to BatchDone.
func (s *fakeSession) endBatch(t *testing.T, seq uint64) (acks map[uint64]*proto.Ack, sigs map[uint64]*proto.Sig) {
	t.Helper()
	if err := s.c.Send(proto.EndBatch{Seq: seq}); err != nil {
		t.Fatal(err)
	}
	if err := s.c.Flush(); err != nil {
		t.Fatal(err)
	}
	acks, sigs = map[uint64]*proto.Ack{}, map[uint64]*proto.Sig{}
	for {
		m, err := s.c.Recv()
		if err != nil {
			t.Fatalf("read answers: %v", err)
		}
		switch m := m.(type) {
		case *proto.Ack:
			acks[m.Seq] = m
		case *proto.Sig:
			sigs[m.Seq] = m
		case *proto.Data, *proto.DataEnd:
		case *proto.BatchDone:
			return acks, sigs
		default:
			t.Fatalf("unexpected %s", m.Type())
		}
	}
}

func (s *fakeSession) bye(t *testing.T) {
	t.Helper()
	s.c.Send(proto.Bye{})
	s.c.Flush()
	if err := s.wait(t); err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

func wholeFileOp(seq uint64, group, wire string, content []byte, announced int64) []proto.Message {
	sum := sha256.Sum256(content)
	op := proto.Op{Seq: seq, Group: group, Kind: proto.OpFile, Path: []byte(wire), Forced: true,
		Content: proto.ContentWhole,
		New:     proto.Record{Kind: state.KindReg, Mode: 0o4755, Size: announced, MtimeNs: time.Now().UnixNano(), Hash: sum}}
	ms := []proto.Message{op}
	for len(content) > 0 {
		k := min(len(content), proto.MaxData)
		ms = append(ms, proto.Data{Seq: seq, Bytes: content[:k]})
		content = content[k:]
	}
	return append(ms, proto.DataEnd{Seq: seq, SHA256: sum})
}

func sendAll(t *testing.T, c *proto.Conn, ms ...proto.Message) {
	t.Helper()
	for _, m := range ms {
		if err := c.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
}

// Finding 1: a sender that proved group g reaches only g's files, for
// writes, deletes, signatures and compare/fetch alike.
func TestServeConfinesOpsToProvedGroups(t *testing.T) {
	nodes := setupHostile(t)
	b := nodes["b"]
	big := bytes.Repeat([]byte("secret of another group\n"), 8<<10)
	for _, g := range []string{"g", "other", "slave", "nokey"} {
		write(t, filepath.Join(b.root, g, "victim"), "b's own "+g+"\n")
		if err := os.WriteFile(filepath.Join(b.root, g, "big"), big, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := fakeSender(t, b, "a", map[string]string{"g": testKey})
	seq := uint64(0)
	want := map[uint64]proto.AckStatus{}
	sigWant := map[uint64]bool{}
	for _, g := range []string{"g", "other", "slave", "nokey"} {
		status := proto.AckRefused
		if g == "g" {
			status = proto.AckOK
		}
		seq++
		want[seq] = status
		sendAll(t, s.c, wholeFileOp(seq, g, "%data%/"+g+"/planted", []byte("#!/bin/sh\nid\n"), 13)...)
		seq++
		want[seq] = status
		sendAll(t, s.c, proto.Op{Seq: seq, Group: g, Kind: proto.OpDelete, Path: []byte("%data%/" + g + "/victim"), Forced: true})
		seq++
		sigWant[seq] = g == "g"
		sendAll(t, s.c, proto.SigRequest{Seq: seq, Group: g, Path: []byte("%data%/" + g + "/big")})
	}
	seq++
	acks, sigs := s.endBatch(t, seq)
	for sq, st := range want {
		a := acks[sq]
		if a == nil {
			t.Errorf("seq %d: no ack", sq)
			continue
		}
		if a.Status != st {
			t.Errorf("seq %d: %s (%q), want %s", sq, a.Status, a.Message, st)
		}
	}
	for sq, have := range sigWant {
		if sig := sigs[sq]; sig == nil || sig.Have != have {
			t.Errorf("signature request %d: got %+v, want have=%v", sq, sig, have)
		}
	}
	s.bye(t)
	for _, g := range []string{"other", "slave", "nokey"} {
		if exists(filepath.Join(b.root, g, "planted")) {
			t.Errorf("group %s: the sender planted a file", g)
		}
		if got := read(t, filepath.Join(b.root, g, "victim")); got != "b's own "+g+"\n" {
			t.Errorf("group %s: victim is now %q", g, got)
		}
	}
	if exists(filepath.Join(b.root, "g", "victim")) {
		t.Error("group g: the control delete did not happen")
	}

	// compare (stat, list) and fetch of another group end the session with
	// a refusal and send nothing of it.
	for _, kind := range []proto.RequestKind{proto.RequestStat, proto.RequestList, proto.RequestFetch} {
		for _, g := range []string{"other", "slave", "nokey"} {
			s := fakeSender(t, b, "a", map[string]string{"g": testKey})
			sendAll(t, s.c, proto.Request{Seq: 1, Kind: kind, Group: g, Path: []byte("%data%/" + g + "/big"), Recursive: true})
			m, err := s.c.Recv()
			if err != nil {
				t.Fatalf("request %d of group %s: %v", kind, g, err)
			}
			if e, ok := m.(*proto.Error); !ok {
				t.Errorf("request %d of group %s answered with %s, want a refusal", kind, g, m.Type())
			} else if !strings.Contains(e.Message, g) {
				t.Errorf("request %d of group %s: refusal %q does not name the group", kind, g, e.Message)
			}
			s.wait(t)
		}
	}
}

// Finding 5: a delta or a whole file never writes more than the size the
// sender announced.
func TestServeStopsAtAnnouncedSize(t *testing.T) {
	nodes := setup(t, "a", "b")
	b := nodes["b"]
	basis := bytes.Repeat([]byte("0123456789abcdef"), 4<<10) // 64 KiB
	target := filepath.Join(b.root, "f")
	if err := os.WriteFile(target, basis, 0o644); err != nil {
		t.Fatal(err)
	}
	// A delta that copies the basis 256 times: 16 MiB from a few KiB.
	var sigBuf, d bytes.Buffer
	if err := delta.WriteSignature(bytes.NewReader(basis), int64(len(basis)), &sigBuf); err != nil {
		t.Fatal(err)
	}
	sig, err := delta.ReadSignature(&sigBuf, int64(sigBuf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	expanded := bytes.Repeat(basis, 256)
	if err := delta.WriteDelta(sig, bytes.NewReader(expanded), &d); err != nil {
		t.Fatal(err)
	}
	if d.Len() > 16<<10 {
		t.Fatalf("test delta is %d bytes; expected a small one", d.Len())
	}
	sum := sha256.Sum256(expanded)

	s := fakeSender(t, b, "a", map[string]string{"g": testKey})
	op := proto.Op{Seq: 1, Group: "g", Kind: proto.OpFile, Path: []byte("%data%/f"), Forced: true,
		Content: proto.ContentDelta,
		New:     proto.Record{Kind: state.KindReg, Mode: 0o644, Size: 1500, MtimeNs: time.Now().UnixNano(), Hash: sum}}
	sendAll(t, s.c, op, proto.Data{Seq: 1, Bytes: d.Bytes()}, proto.DataEnd{Seq: 1, SHA256: sum})
	sendAll(t, s.c, wholeFileOp(2, "g", "%data%/whole", bytes.Repeat([]byte("x"), 1<<20), 10)...)
	acks, _ := s.endBatch(t, 3)
	for sq := uint64(1); sq <= 2; sq++ {
		if a := acks[sq]; a == nil || a.Status == proto.AckOK || a.Status == proto.AckSame {
			t.Errorf("op %d over its announced size: ack %+v, want a refusal", sq, a)
		}
	}
	s.bye(t)
	if fi, err := os.Stat(target); err != nil || fi.Size() != int64(len(basis)) {
		t.Errorf("the delta changed the target: %v, %v", fi.Size(), err)
	}
	if exists(filepath.Join(b.root, "whole")) {
		t.Error("the oversized whole file was installed")
	}
	leftovers, _ := filepath.Glob(filepath.Join(b.root, ".*"))
	if len(leftovers) > 0 {
		t.Errorf("temp files left behind: %q", leftovers)
	}
}

// hostileReceiver is a Connector to a fake receiver: it answers the
// handshake as `name` for group g, then runs act on the session.
type hostileChannel struct {
	io.Reader
	w       *io.PipeWriter
	r       *io.PipeReader
	done    chan error
	written atomic.Int64
}

func (h *hostileChannel) Write(b []byte) (int, error) { return h.w.Write(b) }
func (h *hostileChannel) CloseWrite() error           { return h.w.Close() }
func (h *hostileChannel) Wait() error                 { return <-h.done }
func (h *hostileChannel) Close() error                { h.w.Close(); h.r.Close(); return nil }
func (h *hostileChannel) Counters() (int64, int64)    { return 0, 0 }

type countWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

func hostileReceiver(t *testing.T, name string, act func(c *proto.Conn) error) (Connector, *hostileChannel) {
	inR, inW := io.Pipe()   // sender → receiver
	outR, outW := io.Pipe() // receiver → sender
	ch := &hostileChannel{Reader: outR, w: inW, r: outR, done: make(chan error, 1)}
	conn := func(ctx context.Context, h config.Host) (Channel, error) {
		go func() {
			c := proto.NewConn(inR, countWriter{outW, &ch.written})
			_, _, _, err := proto.ServerHandshake(c, name, func(string, string) ([]byte, error) { return []byte(testKey), nil })
			if err == nil {
				err = act(c)
			}
			outW.CloseWithError(io.EOF)
			inR.Close()
			ch.done <- err
		}()
		return ch, nil
	}
	t.Cleanup(func() { inR.Close(); outW.Close() })
	return conn, ch
}

// pushTo runs a's push through connect with a deadline.
func pushTo(t *testing.T, a *node, connect Connector) PeerResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := scan.Check(ctx, a.st, a.view, nil, true, scan.Options{}); err != nil {
		t.Fatal(err)
	}
	res, err := Push(ctx, Options{View: a.view, Store: a.st, Connect: connect})
	if err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatal("the push did not end by itself: it kept reading what the receiver sent")
	}
	if len(res.Peers) != 1 {
		t.Fatalf("peers: %+v", res.Peers)
	}
	return res.Peers[0]
}

// drain takes what the sender sends and answers nothing.
func drain(c *proto.Conn) {
	for {
		if _, err := c.Recv(); err != nil {
			return
		}
	}
}

// floodSignature sends a signature stream of n bytes for seq.
func floodSignature(c *proto.Conn, seq uint64, basisSize, n int64) error {
	if err := c.Send(proto.Sig{Seq: seq, Have: true, Basis: proto.Record{Kind: state.KindReg, Size: basisSize}}); err != nil {
		return err
	}
	chunk := make([]byte, proto.MaxData)
	copy(chunk, []byte{0x72, 0x73, 0x01, 0x38, 0, 0, 8, 0, 0, 0, 0, 8})
	for sent := int64(0); sent < n; sent += int64(len(chunk)) {
		if err := c.Send(proto.Data{Seq: seq, Bytes: chunk}); err != nil {
			return err
		}
		if err := c.Flush(); err != nil {
			return err
		}
		chunk[0] = 0
	}
	if err := c.Send(proto.DataEnd{Seq: seq}); err != nil {
		return err
	}
	return c.Flush()
}

// Finding 6: a receiver cannot make the sender buffer signatures it never
// asked for, nor more of a signature than its basis can need.
func TestSenderRefusesUnsolicitedSignatures(t *testing.T) {
	const flood = 256 << 20
	nodes := setup(t, "a", "b")
	a := nodes["a"]
	write(t, filepath.Join(a.root, "small"), "small file, sent whole\n")
	connect, ch := hostileReceiver(t, "b", func(c *proto.Conn) error {
		go drain(c)
		return floodSignature(c, 999, 1<<30, flood)
	})
	p := pushTo(t, a, connect)
	if p.Err == nil || !strings.Contains(p.Err.Error(), "signature") {
		t.Errorf("push error %v, want a refused signature", p.Err)
	}
	ch.Close()
	if n := ch.written.Load(); n > 8<<20 {
		t.Errorf("the sender read %d bytes of an unsolicited signature", n)
	}

	// A requested signature bigger than the announced basis needs.
	if err := os.WriteFile(filepath.Join(a.root, "big"), bytes.Repeat([]byte("b"), 200<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	connect, ch = hostileReceiver(t, "b", func(c *proto.Conn) error {
		for {
			m, err := c.Recv()
			if err != nil {
				return err
			}
			if r, ok := m.(*proto.SigRequest); ok {
				go drain(c)
				return floodSignature(c, r.Seq, 200<<10, flood)
			}
		}
	})
	p = pushTo(t, a, connect)
	ch.Close()
	if n := ch.written.Load(); n > 8<<20 {
		t.Errorf("the sender read %d bytes of a signature of a 200 KiB basis (err %v)", n, p.Err)
	}
}

// Finding 7: Serve takes the state lock only once the sender authenticated;
// a silent connection ends at the handshake deadline, a silent session at
// the idle deadline, and a Keepalive counts as activity.
func TestServeDeadlinesAndLateLock(t *testing.T) {
	nodes := setup(t, "a", "b")
	b := nodes["b"]
	var opened atomic.Int32
	open := func(context.Context) (*state.Store, error) { opened.Add(1); return b.st, nil }
	o := ServeOptions{View: b.view, Config: b.cfg, OpenStore: open, KeepStoreOpen: true,
		HandshakeTimeout: 300 * time.Millisecond, IdleTimeout: 400 * time.Millisecond}

	// Nothing sent: no lock, and the session ends at the deadline.
	s := startServe(t, o)
	start := time.Now()
	err := s.wait(t)
	if err == nil || !strings.Contains(err.Error(), "handshake") || time.Since(start) > 3*time.Second {
		t.Errorf("silent connection: %v after %v, want a handshake deadline error", err, time.Since(start))
	}
	if opened.Load() != 0 {
		t.Errorf("the state db was opened for a connection that never authenticated")
	}

	// A wrong key: no lock either.
	s = startServe(t, o)
	if _, err := proto.ClientHandshake(s.c, "a", map[string][]byte{"g": []byte(otherKey)}, 0); err == nil {
		t.Fatal("a wrong key was accepted")
	}
	s.wait(t)
	if opened.Load() != 0 {
		t.Errorf("the state db was opened for a sender that failed the key proof")
	}

	// Authenticated, then silent: the idle deadline ends it.
	s = startServe(t, o)
	if _, err := proto.ClientHandshake(s.c, "a", map[string][]byte{"g": []byte(testKey)}, 0); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	err = s.wait(t)
	if err == nil || !strings.Contains(err.Error(), "idle") {
		t.Errorf("idle session: %v after %v, want an idle deadline error", err, time.Since(start))
	}
	if opened.Load() != 1 {
		t.Errorf("state db opened %d times for one authenticated session", opened.Load())
	}

	// Keepalives keep a session alive past the idle deadline.
	s = startServe(t, o)
	if _, err := proto.ClientHandshake(s.c, "a", map[string][]byte{"g": []byte(testKey)}, 0); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		time.Sleep(100 * time.Millisecond)
		sendAll(t, s.c, proto.Keepalive{})
	}
	select {
	case err := <-s.done:
		t.Fatalf("the session ended despite keepalives: %v", err)
	default:
	}
	s.bye(t)
}

// #11 finding 4: the sender sends the file its scan recorded, not what a
// local user swapped in between the check and the push: a directory
// replaced by a symlink to a private directory, or the file replaced by
// another one.
func TestSenderSendsOnlyWhatItScanned(t *testing.T) {
	nodes := setup(t, "a", "b")
	a, b := nodes["a"], nodes["b"]
	write(t, filepath.Join(a.root, "user/notes"), "the user's notes\n")
	write(t, filepath.Join(a.root, "swapped"), "v1\n")
	write(t, filepath.Join(a.root, "big/file"), strings.Repeat("a big file\n", 20<<10))
	private := filepath.Join(t.TempDir(), "root-only")
	write(t, filepath.Join(private, "notes"), "root's secret\n")
	write(t, filepath.Join(private, "file"), strings.Repeat("root's big secret\n", 12<<10))
	os.Chmod(filepath.Join(private, "notes"), 0o600)
	ctx := context.Background()
	if _, err := scan.Check(ctx, a.st, a.view, nil, true, scan.Options{}); err != nil {
		t.Fatal(err)
	}
	// Between the check and the push: the user's directories become
	// symlinks, and a file is replaced by another of the same size.
	for _, d := range []string{"user", "big"} {
		if err := os.Rename(filepath.Join(a.root, d), filepath.Join(a.root, d+".old")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(private, filepath.Join(a.root, d)); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(a.root, "swapped.new"), "v2\n")
	if err := os.Rename(filepath.Join(a.root, "swapped.new"), filepath.Join(a.root, "swapped")); err != nil {
		t.Fatal(err)
	}
	res, err := Push(ctx, Options{View: a.view, Store: a.st, Connect: connector(nodes)})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"user/notes", "big/file", "swapped"} {
		if got, err := os.ReadFile(filepath.Join(b.root, f)); err == nil {
			t.Errorf("%s reached the peer: %.40q", f, got)
		}
	}
	p := res.Peers[0]
	if p.Failed != 3 || len(p.Problems) != 3 {
		t.Errorf("failed %d, problems %q; want the 3 files reported", p.Failed, p.Problems)
	}
	dirty := map[string]bool{}
	a.st.Dirty("b", func(path string, _ state.DirtyRecord) error { dirty[path] = true; return nil })
	for _, f := range []string{"user/notes", "big/file", "swapped"} {
		if !dirty[filepath.Join(a.root, f)] {
			t.Errorf("%s is no longer dirty for b", f)
		}
	}
}

// #11 finding 9: with "devices refuse;" in the safety block a receiver
// creates no device node and changes none, whoever sends it; fifos and
// everything else still arrive. Without it device nodes arrive as in
// csync2.
func TestServeDevicesRefuse(t *testing.T) {
	if os.Getuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("needs root to create device nodes (and $CI is set)")
		}
		t.Skip("needs root to create device nodes")
	}
	for _, refuse := range []bool{true, false} {
		body := "group g {\n  host a b;\n  key KEY;\n  include %data%;\n}\n"
		if refuse {
			body += "safety g { devices refuse; }\n"
		}
		nodes, _ := setupCfg(t, []string{"a", "b"}, body)
		b := nodes["b"]
		// A device node made on b by its admin.
		local := filepath.Join(b.root, "local-null")
		if err := syscall.Mknod(local, syscall.S_IFCHR|0o600, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
		now := time.Now().UnixNano()
		dev := func(kind state.Kind, mode uint32) proto.Record {
			return proto.Record{Kind: kind, Mode: mode, Rdev: unix.Mkdev(8, 0), MtimeNs: now}
		}
		s := fakeSender(t, b, "a", map[string]string{"g": testKey})
		sendAll(t, s.c,
			proto.Op{Seq: 1, Group: "g", Kind: proto.OpSpecial, Path: []byte("%data%/sda"), Forced: true, New: dev(state.KindBlk, 0o666)},
			proto.Op{Seq: 2, Group: "g", Kind: proto.OpSpecial, Path: []byte("%data%/mem"), Forced: true, New: proto.Record{Kind: state.KindChr, Mode: 0o666, Rdev: unix.Mkdev(1, 1), MtimeNs: now}},
			proto.Op{Seq: 3, Group: "g", Kind: proto.OpMeta, Path: []byte("%data%/local-null"), Forced: true, New: proto.Record{Kind: state.KindChr, Mode: 0o666, Rdev: unix.Mkdev(1, 3), MtimeNs: now}},
			proto.Op{Seq: 4, Group: "g", Kind: proto.OpSpecial, Path: []byte("%data%/fifo"), Forced: true, New: proto.Record{Kind: state.KindFifo, Mode: 0o644, MtimeNs: now}},
		)
		acks, _ := s.endBatch(t, 5)
		s.bye(t)
		for seq, name := range map[uint64]string{1: "sda", 2: "mem", 3: "local-null"} {
			a := acks[seq]
			if refuse && (a == nil || a.Status != proto.AckRefused || !strings.Contains(a.Message, "devices refuse")) {
				t.Errorf("devices refuse: %s: ack %+v, want refused naming the setting", name, a)
			}
			if !refuse && (a == nil || a.Status != proto.AckOK) {
				t.Errorf("devices allow: %s: ack %+v, want ok (csync2's behaviour)", name, a)
			}
		}
		if a := acks[4]; a == nil || a.Status != proto.AckOK {
			t.Errorf("devices refuse=%v: the fifo: ack %+v, want ok", refuse, a)
		}
		var st unix.Stat_t
		unix.Lstat(local, &st)
		if refuse && st.Mode&0o777 != 0o600 {
			t.Errorf("devices refuse: the local device node's mode changed to %o", st.Mode&0o777)
		}
		if refuse && (exists(filepath.Join(b.root, "sda")) || exists(filepath.Join(b.root, "mem"))) {
			t.Errorf("devices refuse: a device node was created")
		}
		if !refuse && !exists(filepath.Join(b.root, "sda")) {
			t.Errorf("devices allow: no device node was created")
		}
	}
}
