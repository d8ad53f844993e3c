package state

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

const holdEnv = "OCF_CSYNC_STATE_TEST_HOLD"

// TestMain doubles as the lock holder for TestLockTwoProcesses: with holdEnv
// set, the test binary opens the store, says "ready" and holds it until its
// stdin closes.
func TestMain(m *testing.M) {
	if dir := os.Getenv(holdEnv); dir != "" {
		s, err := Open(context.Background(), Options{Dir: dir, Node: "holder"})
		if err != nil {
			fmt.Fprintln(os.Stderr, "holder:", err)
			os.Exit(2)
		}
		fmt.Println("ready")
		_, _ = io.Copy(io.Discard, os.Stdin)
		if err := s.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "holder close:", err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func openT(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(context.Background(), Options{Dir: dir, Node: "n1", LockTimeout: time.Second})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func reg(size int64, seed byte) *FileRecord {
	r := &FileRecord{Kind: KindReg, Mode: 0o644, Size: size, MtimeNs: int64(seed) * 1e9, Ino: uint64(seed)}
	r.Hash[0] = seed
	return r
}

func TestSmallNodeOptions(t *testing.T) {
	o := badgerOptions(t.TempDir(), false, nil)
	if o.MemTableSize != 2<<20 || o.TableSizeMultiplier != 1 || o.NumMemtables != 2 || o.NumLevelZeroTables != 2 ||
		o.NumLevelZeroTablesStall != 4 || o.BaseTableSize != 1<<20 || o.BaseLevelSize != 4<<20 ||
		o.ValueLogFileSize != 16<<20 || o.BlockCacheSize != 4<<20 || o.IndexCacheSize != 2<<20 ||
		o.NumCompactors != 2 || o.NumGoroutines != 2 || o.CompactL0OnClose || o.MetricsEnabled {
		t.Errorf("options differ from the small-node table: %+v", o)
	}
	if o.ValueThreshold != 64<<10 || float64(o.ValueThreshold) > 0.15*float64(o.MemTableSize) {
		t.Errorf("ValueThreshold %d must be 64 KiB and ≤ 15%% of the memtable", o.ValueThreshold)
	}
}

func TestOpenWritesSentinelAndMarker(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	s := openT(t, dir)
	if sen := s.Sentinel(); sen.Schema != SchemaVersion || sen.Node != "n1" || sen.Created.IsZero() {
		t.Errorf("sentinel = %+v", sen)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode: %v %v", fi.Mode(), err)
	}
	data, err := os.ReadFile(filepath.Join(dir, usedName))
	if err != nil || !strings.Contains(string(data), `"n1"`) {
		t.Errorf("used marker %q: %v", data, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Close released the lock: a reopen gets it at once.
	start := time.Now()
	s2 := openT(t, dir)
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Errorf("reopen after Close waited %v", d)
	}
	if !s2.Sentinel().Created.Equal(s.Sentinel().Created) {
		t.Errorf("sentinel rewritten on reopen: %v vs %v", s2.Sentinel(), s.Sentinel())
	}
}

// strangePaths must survive every key layout byte for byte.
func strangePaths() []string {
	long := "/" + strings.Repeat("L", 255)
	deep := ""
	for len(deep) < 4000 {
		deep += "/" + strings.Repeat("d", 99)
	}
	return []string{
		"/",
		"/etc",
		"/etc/with space",
		"/etc/trailing ",
		"/etc/new\nline",
		"/etc/100%",
		`/etc/"quoted'`,
		`/etc/back\slash`,
		"/etc/bad\xff\xfeutf8",
		"/etc/\xc3\x28",
		long,
		long + "/child",
		deep,
		deep + "/leaf",
	}
}

func TestStrangePathsRoundTrip(t *testing.T) {
	s := openT(t, t.TempDir())
	paths := strangePaths()
	b := s.NewBatch()
	for i, p := range paths {
		b.PutFile(p, reg(int64(i), byte(i)))
		b.MarkDirty("peer1", p, DirtyRecord{Forced: i%2 == 0, MarkedNs: int64(i)})
		b.PutBase("peer1", p, reg(int64(i), byte(i)))
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{}
	for i, p := range paths {
		want[p] = int64(i)
		rec, ok, err := s.GetFile(p)
		if err != nil || !ok || rec.Size != int64(i) {
			t.Errorf("GetFile(%q) = %v %v %v", p, rec.Size, ok, err)
		}
		base, ok, err := s.GetBase("peer1", p)
		if err != nil || !ok || base.Hash[0] != byte(i) {
			t.Errorf("GetBase(%q) = %v %v", p, ok, err)
		}
	}
	got := map[string]int64{}
	if err := s.WalkFiles("/", func(p string, r *FileRecord) error {
		got[p] = r.Size
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("WalkFiles(/):\n got %v\nwant %v", got, want)
	}
	var names []string
	if err := s.ListDir("/etc", func(n string, r *FileRecord) error {
		if want[joinPath("/etc", n)] != r.Size {
			t.Errorf("ListDir: %q has size %d", n, r.Size)
		}
		names = append(names, n)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	wantNames := []string{"with space", "trailing ", "new\nline", "100%", `"quoted'`, `back\slash`, "bad\xff\xfeutf8", "\xc3\x28"}
	slices.Sort(wantNames)
	if !slices.Equal(names, wantNames) {
		t.Errorf("ListDir(/etc) = %q, want %q", names, wantNames)
	}
	var dirty []string
	if err := s.Dirty("peer1", func(p string, d DirtyRecord) error {
		if d.MarkedNs != want[p] || d.Forced != (want[p]%2 == 0) {
			t.Errorf("Dirty %q = %+v", p, d)
		}
		dirty = append(dirty, p)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sorted := slices.Clone(paths)
	slices.Sort(sorted)
	if !slices.Equal(dirty, sorted) {
		t.Errorf("Dirty order = %q, want %q", dirty, sorted)
	}
	var deepKids []string
	if err := s.WalkFiles(paths[12], func(p string, _ *FileRecord) error {
		deepKids = append(deepKids, p)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(deepKids) != 2 {
		t.Errorf("WalkFiles(deep) = %d paths", len(deepKids))
	}
}

func TestWalkAndListBoundaries(t *testing.T) {
	s := openT(t, t.TempDir())
	b := s.NewBatch()
	for _, p := range []string{"/", "/a", "/a/x", "/a/y/z", "/ab", "/ab/x", "/a b", "/a\x01", "/b"} {
		b.PutFile(p, reg(1, 1))
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	walk := func(root string) []string {
		var out []string
		if err := s.WalkFiles(root, func(p string, _ *FileRecord) error {
			out = append(out, p)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		slices.Sort(out)
		return out
	}
	list := func(dir string) []string {
		var out []string
		if err := s.ListDir(dir, func(n string, _ *FileRecord) error {
			out = append(out, n)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	tests := []struct {
		name string
		got  []string
		want []string
	}{
		{"walk /a", walk("/a"), []string{"/a", "/a/x", "/a/y/z"}},
		{"walk /ab", walk("/ab"), []string{"/ab", "/ab/x"}},
		{"walk /a/y", walk("/a/y"), []string{"/a/y/z"}},
		{"walk /none", walk("/none"), nil},
		{"walk /", walk("/"), []string{"/", "/a", "/a\x01", "/a b", "/a/x", "/a/y/z", "/ab", "/ab/x", "/b"}},
		{"list /", list("/"), []string{"a", "a\x01", "a b", "ab", "b"}},
		{"list /a", list("/a"), []string{"x"}},
		{"list /a/y", list("/a/y"), []string{"z"}},
	}
	for _, tc := range tests {
		if !slices.Equal(tc.got, tc.want) {
			t.Errorf("%s = %q, want %q", tc.name, tc.got, tc.want)
		}
	}
	if n, err := s.CountFiles(); err != nil || n != 9 {
		t.Errorf("CountFiles = %d, %v", n, err)
	}
	// A callback error stops the iteration and comes back unchanged.
	stop := errors.New("stop")
	calls := 0
	err := s.WalkFiles("/", func(string, *FileRecord) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Errorf("WalkFiles callback error: %v after %d calls", err, calls)
	}
	for _, bad := range []string{"", "a", "/a/", "/a//b", "/a/./b", "/a/../b", "/a\x00b"} {
		if err := s.WalkFiles(bad, func(string, *FileRecord) error { return nil }); err == nil {
			t.Errorf("WalkFiles(%q) accepted", bad)
		}
	}
}

func TestDirtyAndBase(t *testing.T) {
	s := openT(t, t.TempDir())
	b := s.NewBatch()
	for _, p := range []string{"/z", "/a", "/m"} {
		b.MarkDirty("peer2", p, DirtyRecord{MarkedNs: 5})
	}
	b.MarkDirty("peer1", "/x", DirtyRecord{})
	b.MarkDirty("peer1x", "/y", DirtyRecord{})
	b.MarkDirty("p", "/y", DirtyRecord{})
	b.PutBase("peer1", "/x", reg(3, 3))
	if err := b.CommitDurable(); err != nil {
		t.Fatal(err)
	}
	peers, err := s.DirtyPeers()
	if err != nil || !slices.Equal(peers, []string{"p", "peer1", "peer1x", "peer2"}) {
		t.Errorf("DirtyPeers = %q, %v", peers, err)
	}
	if n, err := s.DirtyCount("peer2"); err != nil || n != 3 {
		t.Errorf("DirtyCount(peer2) = %d, %v", n, err)
	}
	if n, err := s.DirtyCount("peer1"); err != nil || n != 1 {
		t.Errorf("DirtyCount(peer1) = %d (must not count peer1x), %v", n, err)
	}
	b = s.NewBatch()
	b.ClearDirty("peer1", "/x")
	b.DeleteBase("peer1", "/x")
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.GetBase("peer1", "/x"); ok || err != nil {
		t.Errorf("base still there: %v %v", ok, err)
	}
	peers, _ = s.DirtyPeers()
	if !slices.Equal(peers, []string{"p", "peer1x", "peer2"}) {
		t.Errorf("DirtyPeers after clear = %q", peers)
	}
	var got []string
	_ = s.Dirty("peer2", func(p string, _ DirtyRecord) error { got = append(got, p); return nil })
	if !slices.Equal(got, []string{"/a", "/m", "/z"}) {
		t.Errorf("Dirty(peer2) = %q", got)
	}
}

func TestBatchErrorsAndLimits(t *testing.T) {
	s := openT(t, t.TempDir())
	b := s.NewBatch()
	b.PutFile("relative", reg(1, 1))
	b.PutFile("/ok", reg(1, 1))
	if err := b.Commit(); err == nil || !strings.Contains(err.Error(), "relative") {
		t.Errorf("Commit = %v, want the invalid path error", err)
	}
	if _, ok, _ := s.GetFile("/ok"); ok {
		t.Error("a failed batch wrote its later entries")
	}
	b = s.NewBatch()
	b.MarkDirty("bad\x00peer", "/x", DirtyRecord{})
	if err := b.Commit(); err == nil {
		t.Error("a NUL in a peer name was accepted")
	}
	b = s.NewBatch()
	b.PutFile("/cancelled", reg(1, 1))
	b.Cancel()
	b.Cancel()
	if _, ok, _ := s.GetFile("/cancelled"); ok {
		t.Error("Cancel wrote the batch")
	}
	// Far more than one transaction (15% of a 4 MiB memtable): badger splits.
	const n = 30000
	b = s.NewBatch()
	defer b.Cancel()
	for i := range n {
		b.PutFile(fmt.Sprintf("/big/%06d", i), reg(int64(i), byte(i)))
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err == nil {
		t.Error("second Commit succeeded")
	}
	if c, err := s.CountFiles(); err != nil || c != n {
		t.Errorf("CountFiles = %d, %v", c, err)
	}
	b = s.NewBatch()
	for i := range n {
		b.DeleteFile(fmt.Sprintf("/big/%06d", i))
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.CountFiles(); c != 0 {
		t.Errorf("CountFiles after delete = %d", c)
	}
}

func TestRareRecords(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	odd := "/etc/bad\xff name\n"
	c := Conflict{Path: odd, Peer: "peer1", Group: "g", Local: *reg(1, 1), Remote: *reg(2, 2),
		RemoteExists: true, DetectedNs: 42, Reason: "both changed"}
	if err := s.PutConflict(c); err != nil {
		t.Fatal(err)
	}
	if err := s.PutConflict(Conflict{Path: odd, Peer: "peer2"}); err != nil {
		t.Fatal(err)
	}
	var cs []Conflict
	if err := s.Conflicts(func(c Conflict) error { cs = append(cs, c); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 || fmt.Sprint(cs[0]) != fmt.Sprint(c) || cs[1].Peer != "peer2" {
		t.Errorf("Conflicts = %+v", cs)
	}
	if err := s.DeleteConflict(odd, "peer1"); err != nil {
		t.Fatal(err)
	}
	cs = nil
	_ = s.Conflicts(func(c Conflict) error { cs = append(cs, c); return nil })
	if len(cs) != 1 || cs[0].Peer != "peer2" {
		t.Errorf("Conflicts after delete = %+v", cs)
	}

	st := Stranded{Path: odd, Peer: "peer1", Remote: *reg(7, 7), RemoteExists: true, DetectedNs: 9}
	if err := s.PutStranded(st); err != nil {
		t.Fatal(err)
	}
	var sts []Stranded
	_ = s.StrandedList(func(x Stranded) error { sts = append(sts, x); return nil })
	if len(sts) != 1 || fmt.Sprint(sts[0]) != fmt.Sprint(st) {
		t.Errorf("StrandedList = %+v", sts)
	}
	if err := s.DeleteStranded("peer1", odd); err != nil {
		t.Fatal(err)
	}
	sts = nil
	_ = s.StrandedList(func(x Stranded) error { sts = append(sts, x); return nil })
	if len(sts) != 0 {
		t.Errorf("StrandedList after delete = %+v", sts)
	}

	a := QueuedAction{Group: "g", Command: "systemctl reload x", Logfile: "/var/log/x", Files: []string{odd, "/b"}}
	s1, err := s.QueueAction(a)
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := s.QueueAction(QueuedAction{Command: "two"})
	if err := s.DeleteAction(s2); err != nil {
		t.Fatal(err)
	}
	s3, _ := s.QueueAction(QueuedAction{Command: "three"})
	if s1 != 1 || s2 != 2 || s3 != 3 {
		t.Errorf("seqs = %d %d %d, want 1 2 3 (never reused)", s1, s2, s3)
	}
	var as []QueuedAction
	_ = s.Actions(func(a QueuedAction) error { as = append(as, a); return nil })
	a.Seq = 1
	if len(as) != 2 || fmt.Sprint(as[0]) != fmt.Sprint(a) || as[1].Command != "three" {
		t.Errorf("Actions = %+v", as)
	}

	if e, err := s.Epoch(); e != 0 || err != nil {
		t.Errorf("Epoch on a fresh DB = %d, %v", e, err)
	}
	if err := s.SetEpoch(7); err != nil {
		t.Fatal(err)
	}
	if err := s.PutHandoff(Handoff{Epoch: 6, From: "n2", Clean: true, UpToNs: 99}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutHandoff(Handoff{Epoch: 7, From: "n1"}); err != nil {
		t.Fatal(err)
	}
	for _, b := range []Blocked{{"n3", "no handoff", 5}, {"n2", "x", 6}} {
		if err := s.PutBlocked(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteBlocked("n3"); err != nil {
		t.Fatal(err)
	}
	if err := s.PutBlocked(Blocked{Peer: "n4", Reason: "y"}); err != nil {
		t.Fatal(err)
	}
	// Everything survives a reopen.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir)
	if e, err := s.Epoch(); e != 7 || err != nil {
		t.Errorf("Epoch = %d, %v", e, err)
	}
	hs, err := s.Handoffs()
	want := []Handoff{{7, "n1", false, 0}, {6, "n2", true, 99}}
	if err != nil || !slices.Equal(hs, want) {
		t.Errorf("Handoffs = %+v, %v", hs, err)
	}
	if bs, err := s.BlockedPeers(); err != nil || !slices.Equal(bs, []Blocked{{"n2", "x", 6}, {"n4", "y", 0}}) {
		t.Errorf("BlockedPeers = %+v, %v", bs, err)
	}
	s4, _ := s.QueueAction(QueuedAction{Command: "four"})
	if s4 != 4 {
		t.Errorf("seq after reopen = %d", s4)
	}
}

func TestReset(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	b := s.NewBatch()
	b.PutFile("/a", reg(1, 1))
	b.MarkDirty("p", "/a", DirtyRecord{})
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	_ = s.SetEpoch(3)
	if err := s.Reset(); err != nil {
		t.Fatal(err)
	}
	n, _ := s.CountFiles()
	e, _ := s.Epoch()
	peers, _ := s.DirtyPeers()
	if n != 0 || e != 0 || len(peers) != 0 {
		t.Errorf("after Reset: files %d, epoch %d, dirty peers %q", n, e, peers)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, usedName)); err != nil {
		t.Errorf("used marker gone: %v", err)
	}
	s = openT(t, dir) // the fresh sentinel is there
	if s.Sentinel().Schema != SchemaVersion {
		t.Errorf("sentinel after Reset = %+v", s.Sentinel())
	}
}

func TestLockTwoProcesses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holdEnv+"="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("holder: %q %v; stderr: %s", line, err, stderr.String())
	}

	start := time.Now()
	s, err := Open(context.Background(), Options{Dir: dir, Node: "holder", LockTimeout: time.Second})
	waited := time.Since(start)
	if err == nil {
		s.Close()
		t.Fatal("second Open succeeded while another process holds the DB")
	}
	if !errors.Is(err, ErrLocked) {
		t.Errorf("err = %v, want ErrLocked", err)
	}
	var le *LockedError
	if !errors.As(err, &le) || le.PID != pid || le.Since.IsZero() || !strings.Contains(le.Cmdline, os.Args[0]) {
		t.Errorf("LockedError = %+v, want pid %d", le, pid)
	}
	msg := err.Error()
	for _, want := range []string{strconv.Itoa(pid), dir, "waited 1", "ocf-csync status", "Stop that process"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if strings.Contains(strings.ToLower(msg), "badger") {
		t.Errorf("message leaks badger text: %q", msg)
	}
	if waited < 900*time.Millisecond || waited > 5*time.Second {
		t.Errorf("waited %v for a 1s LockTimeout", waited)
	}

	// A cancelled context ends the wait early.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := Open(ctx, Options{Dir: dir, LockTimeout: 10 * time.Second}); !errors.Is(err, ErrLocked) ||
		!errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 3*time.Second {
		t.Errorf("Open with cancelled ctx = %v after %v", err, time.Since(start))
	}

	// The holder closes: its lock goes, and a waiting Open gets in.
	go func() {
		time.Sleep(300 * time.Millisecond)
		stdin.Close()
	}()
	s, err = Open(context.Background(), Options{Dir: dir, Node: "holder", LockTimeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("Open after the holder quit: %v", err)
	}
	s.Close()
	if err := cmd.Wait(); err != nil {
		t.Errorf("holder: %v; stderr: %s", err, stderr.String())
	}
}

// TestBadgerLockMapped: should badger's own directory lock be held (here by
// ourselves, bypassing our flock), the error is a LockedError too.
func TestForeignLockMapped(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	_, err := openBadger(dir, false, s.log)
	var le *LockedError
	if !errors.As(err, &le) || !errors.Is(err, ErrLocked) || le.PID != os.Getpid() {
		t.Fatalf("openBadger on a held dir = %v", err)
	}
	// (The temp dir's name may contain the test name, so look for
	// badger's phrases, not the word.)
	for _, leak := range []string{"Badger", "Cannot acquire", "Another process"} {
		if strings.Contains(err.Error(), leak) {
			t.Errorf("message leaks badger text %q: %q", leak, err)
		}
	}
}

func fill(t *testing.T, dir string, n int) {
	t.Helper()
	s := openT(t, dir)
	b := s.NewBatch()
	for i := range n {
		b.PutFile(fmt.Sprintf("/srv/d%02d/f%05d", i%50, i), reg(int64(i), byte(i)))
	}
	if err := b.CommitDurable(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestSentinelRules(t *testing.T) {
	ctx := context.Background()
	t.Run("deleted sentinel", func(t *testing.T) {
		dir := t.TempDir()
		fill(t, dir, 10)
		db, err := badger.Open(badgerOptions(dir, false, slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(func(txn *badger.Txn) error { return txn.Delete([]byte{pfxSentinel}) }); err != nil {
			t.Fatal(err)
		}
		db.Close()
		_, err = Open(ctx, Options{Dir: dir, Node: "n1"})
		if !errors.Is(err, ErrNoSentinel) || !strings.Contains(err.Error(), "ocf-csync rebuild") ||
			!strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "nothing was changed") {
			t.Fatalf("Open = %v, want ErrNoSentinel", err)
		}
		// Nothing was changed: the data is still there for a rebuild to see.
		s, err := Open(ctx, Options{Dir: dir, Node: "n1", AllowRebuild: true})
		if err != nil {
			t.Fatalf("AllowRebuild: %v", err)
		}
		if n, _ := s.CountFiles(); n != 10 {
			t.Errorf("files after a refused open = %d", n)
		}
		if err := s.Reset(); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s, err = Open(ctx, Options{Dir: dir, Node: "n1"})
		if err != nil {
			t.Fatalf("Open after rebuild: %v", err)
		}
		s.Close()
	})
	t.Run("marker lost too", func(t *testing.T) {
		dir := t.TempDir()
		fill(t, dir, 10)
		db, err := badger.Open(badgerOptions(dir, false, slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatal(err)
		}
		_ = db.Update(func(txn *badger.Txn) error { return txn.Delete([]byte{pfxSentinel}) })
		db.Close()
		os.Remove(filepath.Join(dir, usedName))
		if _, err := Open(ctx, Options{Dir: dir}); !errors.Is(err, ErrNoSentinel) {
			t.Fatalf("Open of data without sentinel or marker = %v", err)
		}
	})
	t.Run("truncated MANIFEST", func(t *testing.T) {
		dir := t.TempDir()
		fill(t, dir, 1000)
		if err := os.Truncate(filepath.Join(dir, "MANIFEST"), 10); err != nil {
			t.Fatal(err)
		}
		_, err := Open(ctx, Options{Dir: dir, Node: "n1"})
		if !errors.Is(err, ErrNoSentinel) && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Open after MANIFEST truncation = %v, want ErrNoSentinel", err)
		}
		t.Logf("truncated MANIFEST: %v", err)
		// badger would have deleted every unlisted table; we must not.
		if ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst")); len(ssts) == 0 {
			t.Error("the refused Open deleted the tables")
		}
		s, err := Open(ctx, Options{Dir: dir, Node: "n1", AllowRebuild: true})
		if err != nil {
			t.Fatalf("AllowRebuild: %v", err)
		}
		if err := s.Reset(); err != nil {
			t.Fatal(err)
		}
		s.Close()
	})
	t.Run("unlisted table after a crash", func(t *testing.T) {
		dir := t.TempDir()
		fill(t, dir, 100)
		ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
		if len(ssts) == 0 {
			t.Fatal("no tables")
		}
		data, _ := os.ReadFile(ssts[0])
		orphan := filepath.Join(dir, "999999.sst")
		if err := os.WriteFile(orphan, data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(ctx, Options{Dir: dir, Node: "n1"})
		if err != nil {
			t.Fatalf("Open with an unlisted table = %v", err)
		}
		defer s.Close()
		if n, _ := s.CountFiles(); n != 100 {
			t.Errorf("CountFiles = %d", n)
		}
		left, _ := filepath.Glob(filepath.Join(dir, "orphans-*"))
		if _, err := os.Stat(orphan); err == nil || len(left) != 0 {
			t.Errorf("orphan kept after a sound open: %v %q", err, left)
		}
	})
	t.Run("other node", func(t *testing.T) {
		dir := t.TempDir()
		fill(t, dir, 1)
		_, err := Open(ctx, Options{Dir: dir, Node: "n2"})
		if !errors.Is(err, ErrNodeMismatch) || !strings.Contains(err.Error(), `"n1"`) || !strings.Contains(err.Error(), `"n2"`) {
			t.Fatalf("Open as n2 = %v", err)
		}
		s, err := Open(ctx, Options{Dir: dir})
		if err != nil {
			t.Fatalf("Open without a node name = %v", err)
		}
		s.Close()
	})
	t.Run("newer schema", func(t *testing.T) {
		dir := t.TempDir()
		s := openT(t, dir)
		if err := s.putJSON([]byte{pfxSentinel}, Sentinel{Schema: SchemaVersion + 1, Node: "n1"}, true); err != nil {
			t.Fatal(err)
		}
		s.Close()
		if _, err := Open(ctx, Options{Dir: dir, Node: "n1"}); !errors.Is(err, ErrSchema) {
			t.Fatalf("Open of a newer schema = %v", err)
		}
	})
	t.Run("read-only", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := Open(ctx, Options{Dir: dir, ReadOnly: true}); !errors.Is(err, ErrNoDB) {
			t.Fatalf("read-only Open of nothing = %v", err)
		}
		fill(t, dir, 5)
		s, err := Open(ctx, Options{Dir: dir, ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if n, _ := s.CountFiles(); n != 5 {
			t.Errorf("read-only CountFiles = %d", n)
		}
		b := s.NewBatch()
		b.PutFile("/x", reg(1, 1))
		if err := b.Commit(); !errors.Is(err, ErrReadOnly) {
			t.Errorf("read-only Commit = %v", err)
		}
		if err := s.SetEpoch(1); !errors.Is(err, ErrReadOnly) {
			t.Errorf("read-only SetEpoch = %v", err)
		}
	})
}

func TestCorruptSST(t *testing.T) {
	dir := t.TempDir()
	fill(t, dir, 20000)
	ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	if len(ssts) == 0 {
		t.Fatal("no .sst after close")
	}
	for _, f := range ssts {
		fi, _ := os.Stat(f)
		fh, err := os.OpenFile(f, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fh.WriteAt([]byte("CORRUPTCORRUPT"), fi.Size()/2); err != nil {
			t.Fatal(err)
		}
		fh.Close()
	}
	s, err := Open(context.Background(), Options{Dir: dir, Node: "n1"})
	if err == nil {
		err = s.WalkFiles("/", func(string, *FileRecord) error { return nil })
		s.Close()
	}
	if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrNoSentinel) {
		t.Fatalf("corrupt .sst: err = %v, want ErrCorrupt or ErrNoSentinel", err)
	}
	if !strings.Contains(err.Error(), "ocf-csync rebuild") || !strings.Contains(err.Error(), dir) {
		t.Errorf("message %q lacks the dir or the rebuild hint", err)
	}
	t.Logf("corrupt .sst: %v", err)

	// The rebuild path moves the damage aside and starts afresh.
	s, err = Open(context.Background(), Options{Dir: dir, Node: "n1", AllowRebuild: true})
	if err != nil {
		t.Fatalf("AllowRebuild: %v", err)
	}
	if err := s.Reset(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	aside, _ := filepath.Glob(filepath.Join(dir, "corrupt-*", "*.sst"))
	if len(aside) == 0 {
		t.Error("damaged tables were not kept")
	}
	s = openT(t, dir)
	if n, err := s.CountFiles(); n != 0 || err != nil {
		t.Errorf("after rebuild: %d files, %v", n, err)
	}
}

func TestPanicsInReads(t *testing.T) {
	s := openT(t, t.TempDir())
	err := s.view(func(*badger.Txn, *guard) error { panic("==== Recovered====\nTable ID: 1") })
	if !errors.Is(err, ErrCorrupt) || strings.Contains(err.Error(), "Table ID") {
		t.Errorf("badger panic = %v, want a short ErrCorrupt", err)
	}
	b := s.NewBatch()
	b.PutFile("/a", reg(1, 1))
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	// The caller's own panic is not disguised as corruption.
	defer func() {
		if r := recover(); r != "mine" {
			t.Errorf("recovered %v, want the callback's panic", r)
		}
	}()
	_ = s.WalkFiles("/", func(string, *FileRecord) error { panic("mine") })
	t.Error("callback panic was swallowed")
}

func TestClosedStore(t *testing.T) {
	s := openT(t, t.TempDir())
	s.Close()
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if _, _, err := s.GetFile("/a"); !errors.Is(err, ErrClosed) {
		t.Errorf("GetFile after Close = %v", err)
	}
	if err := s.NewBatch().Commit(); !errors.Is(err, ErrClosed) {
		t.Errorf("Commit after Close = %v", err)
	}
}

func TestValueLogGCLoop(t *testing.T) {
	old := gcInterval
	gcInterval = 20 * time.Millisecond
	defer func() { gcInterval = old }()
	s := openT(t, t.TempDir())
	deadline := time.Now().Add(5 * time.Second)
	for s.gcRuns.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s.gcRuns.Load() < 2 {
		t.Fatal("value log GC never ran")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	n := s.gcRuns.Load()
	time.Sleep(100 * time.Millisecond)
	if s.gcRuns.Load() != n {
		t.Error("GC still running after Close")
	}
}

// TestNoStdout: nothing of the store (badger included) may reach stdout,
// which can be a protocol stream.
func TestNoStdout(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	func() {
		defer func() { os.Stdout = old }()
		dir := t.TempDir()
		fill(t, dir, 2000)
		s := openT(t, dir)
		_ = s.WalkFiles("/", func(string, *FileRecord) error { return nil })
		_ = s.Reset()
		s.Close()
	}()
	w.Close()
	out, _ := io.ReadAll(r)
	if len(out) != 0 {
		t.Errorf("store wrote to stdout: %q", out)
	}
}

func TestBorrow(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	b := s.Borrow()
	if err := b.SetEpoch(4); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if e, err := s.Epoch(); e != 4 || err != nil {
		t.Fatalf("after the borrower's Close the owner reads %d, %v; want 4: Close closed the owner's store", e, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Epoch(); err == nil {
		t.Errorf("a borrowed handle still reads after the owner closed the store")
	}
}

// TestDirtyEntries reads the dirty set with file records and bases in one
// pass: a base far ahead (seek), bases close behind each other (next), a
// deletion (base, no file), a new path (file, no base), and another peer's
// keys, which must not leak in.
func TestDirtyEntries(t *testing.T) {
	s := openT(t, t.TempDir())
	b := s.NewBatch()
	for i := range 40 {
		// Bases without dirty entries between the dirty paths: the
		// iterator must step or seek past them.
		b.PutBase("p", fmt.Sprintf("/b/%02d", i), reg(int64(i), 1))
	}
	b.PutFile("/a", reg(1, 1))
	b.PutBase("p", "/a", reg(2, 1))
	b.MarkDirty("p", "/a", DirtyRecord{MarkedNs: 1})
	// File keys go by directory: /a/b/x sorts after /a0 among them, before
	// it among paths, so the file iterator must seek back.
	for _, p := range []string{"/a/b/x", "/a/b/y", "/a0"} {
		b.PutFile(p, reg(7, 1))
		b.MarkDirty("p", p, DirtyRecord{})
	}
	b.PutFile("/c", reg(3, 1)) // new: no base
	b.MarkDirty("p", "/c", DirtyRecord{Forced: true})
	b.PutBase("p", "/d", reg(4, 1)) // deleted here: base only
	b.MarkDirty("p", "/d", DirtyRecord{})
	b.PutBase("p2", "/c", reg(9, 9)) // another peer's base
	b.MarkDirty("p2", "/a", DirtyRecord{})
	b.PutBase("p", "/z", reg(5, 1))
	b.MarkDirty("p", "/z", DirtyRecord{})
	// After the last base: the base iterator has run out.
	b.PutFile("/zz", reg(8, 1))
	b.MarkDirty("p", "/zz", DirtyRecord{})
	// A peer with no base at all (a first push), and one whose only base
	// sorts after its dirty paths.
	b.MarkDirty("p3", "/c", DirtyRecord{})
	b.MarkDirty("p3", "/zz", DirtyRecord{})
	b.MarkDirty("p4", "/c", DirtyRecord{})
	b.PutBase("p4", "/zzz", reg(6, 1))
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	type got struct {
		path                 string
		forced, exists, base bool
		fileSize, baseSize   int64
	}
	var all []got
	err := s.DirtyEntries("p", func(e *DirtyEntry) error {
		all = append(all, got{e.Path, e.Dirty.Forced, e.Exists, e.HasBase, e.File.Size, e.Base.Size})
		return nil
	})
	want := []got{
		{"/a", false, true, true, 1, 2},
		{"/a/b/x", false, true, false, 7, 0},
		{"/a/b/y", false, true, false, 7, 0},
		{"/a0", false, true, false, 7, 0},
		{"/c", true, true, false, 3, 0},
		{"/d", false, false, true, 0, 4},
		{"/z", false, false, true, 0, 5},
		{"/zz", false, true, false, 8, 0},
	}
	if err != nil || !slices.Equal(all, want) {
		t.Fatalf("DirtyEntries = %+v, %v; want %+v", all, err, want)
	}
	for peer, want := range map[string][]got{
		"p3": {{"/c", false, true, false, 3, 0}, {"/zz", false, true, false, 8, 0}},
		"p4": {{"/c", false, true, false, 3, 0}},
	} {
		all = nil
		err := s.DirtyEntries(peer, func(e *DirtyEntry) error {
			all = append(all, got{e.Path, e.Dirty.Forced, e.Exists, e.HasBase, e.File.Size, e.Base.Size})
			return nil
		})
		if err != nil || !slices.Equal(all, want) {
			t.Errorf("DirtyEntries(%s) = %+v, %v; want %+v", peer, all, err, want)
		}
	}
}
