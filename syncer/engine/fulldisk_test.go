package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ocf-csync/syncer/apply"
	"ocf-csync/syncer/internal/mountns"
	"ocf-csync/syncer/scan"
	"ocf-csync/syncer/state"
)

// tempsBelow lists receiver temp files left anywhere below dir.
func tempsBelow(t *testing.T, dir string) []string {
	t.Helper()
	var left []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && scan.IsTempName(d.Name()) {
			left = append(left, p)
		}
		return nil
	})
	return left
}

func randomFile(t *testing.T, path string, size int) []byte {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return data
}

// The receiver's data disk fills up in the middle of a batch: what did not
// fit is not written (the old version stays, no temp file is left), the
// sender hears ENOSPC with the host and the path, records no base for it,
// keeps it pending and retries it once there is room; the files around it
// in the same batch are applied and recorded, and actions run only for the
// files that were written.
func TestFullDiskReceiver(t *testing.T) {
	if !mountns.Enter(t) {
		return
	}
	nodes, dir := setupCfg(t, []string{"a", "b"}, `group g {
  host a b; key KEY; include %data%;
  action { exec "echo %% >> DIR/actions.log"; }
}
`)
	a, b := nodes["a"], nodes["b"]
	// b's data disk: 2 MiB, mounted before b first receives (its root
	// identity is recorded on the first sync).
	mountns.Tmpfs(t, b.root, "2M")
	write(t, filepath.Join(a.root, "keep.txt"), "old")
	write(t, filepath.Join(a.root, "conf"), "conf v1")
	logv1 := randomFile(t, filepath.Join(a.root, "grow.log"), 600<<10) // goes as a delta
	if err := a.sync(t, nodes, Options{}).Err(); err != nil {
		t.Fatal(err)
	}
	must(t, os.Remove(filepath.Join(dir, "actions.log")))

	randomFile(t, filepath.Join(a.root, "a1"), 10<<10)
	randomFile(t, filepath.Join(a.root, "b2big"), 3<<20)
	randomFile(t, filepath.Join(a.root, "c3"), 20<<10)
	randomFile(t, filepath.Join(a.root, "d4/x"), 1<<10)
	randomFile(t, filepath.Join(a.root, "keep.txt"), 3<<20) // the update does not fit
	write(t, filepath.Join(a.root, "conf"), "conf v2")
	lf, err := os.OpenFile(filepath.Join(a.root, "grow.log"), os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	_, _ = lf.Write(bytes.Repeat([]byte("appended log line\n"), 100<<10))
	must(t, lf.Close())
	res := a.sync(t, nodes, Options{})
	err = res.Err()
	if err == nil {
		t.Fatal("a sync to a full disk reported success")
	}
	t.Logf("sync error: %v", err)
	pr := res.Peers[0]
	if pr.Failed != 3 {
		t.Errorf("failed = %d, want 3 (b2big, grow.log, keep.txt); problems %q", pr.Failed, pr.Problems)
	}
	for _, name := range []string{"b2big", "grow.log", "keep.txt"} {
		found := false
		for _, p := range pr.Problems {
			if strings.Contains(p, filepath.Join(a.root, name)) && strings.Contains(p, "no space left on device") {
				found = true
			}
		}
		if !found {
			t.Errorf("no ENOSPC problem naming %s: %q", name, pr.Problems)
		}
	}
	if msg := err.Error(); !strings.Contains(msg, "peer b") || !strings.Contains(msg, "no space left on device") {
		t.Errorf("the error does not name the host and the cause: %v", msg)
	}
	if got := read(t, filepath.Join(b.root, "keep.txt")); got != "old" {
		t.Errorf("b's keep.txt was damaged: %d bytes", len(got))
	}
	if got := read(t, filepath.Join(b.root, "grow.log")); got != string(logv1) {
		t.Errorf("b's grow.log was damaged: %d bytes", len(got))
	}
	if exists(filepath.Join(b.root, "b2big")) {
		t.Error("b2big exists on b")
	}
	for _, name := range []string{"a1", "c3", "d4/x"} {
		if read(t, filepath.Join(b.root, name)) != read(t, filepath.Join(a.root, name)) {
			t.Errorf("%s did not reach b", name)
		}
	}
	if got := read(t, filepath.Join(b.root, "conf")); got != "conf v2" {
		t.Errorf("conf on b: %q", got)
	}
	if left := tempsBelow(t, b.root); len(left) > 0 {
		t.Errorf("temp files left on b: %q", left)
	}
	// The sender: keep.txt's base is still the old content; both failures
	// stay pending, the rest is recorded.
	base, ok, err := a.st.GetBase("b", filepath.Join(a.root, "keep.txt"))
	if err != nil || !ok || base.Hash != sha256.Sum256([]byte("old")) {
		t.Errorf("base of keep.txt for b: %+v %v %v, want the old content", base, ok, err)
	}
	if _, ok, _ := a.st.GetBase("b", filepath.Join(a.root, "b2big")); ok {
		t.Error("a recorded a base for b2big")
	}
	var dirty []string
	must(t, a.st.Dirty("b", func(p string, _ state.DirtyRecord) error { dirty = append(dirty, p); return nil }))
	if strings.Join(dirty, " ") != filepath.Join(a.root, "b2big")+" "+filepath.Join(a.root, "grow.log")+" "+filepath.Join(a.root, "keep.txt") {
		t.Errorf("pending for b: %q, want b2big, grow.log and keep.txt", dirty)
	}
	// b's records: nothing for what it could not write.
	if rec, ok, _ := b.st.GetFile(filepath.Join(b.root, "keep.txt")); !ok || rec.Hash != sha256.Sum256([]byte("old")) {
		t.Errorf("b's record of keep.txt: %+v %v", rec, ok)
	}
	if _, ok, _ := b.st.GetFile(filepath.Join(b.root, "b2big")); ok {
		t.Error("b recorded b2big")
	}
	actions := read(t, filepath.Join(dir, "actions.log"))
	if strings.Contains(actions, "b2big") || strings.Contains(actions, "keep.txt") {
		t.Errorf("actions ran for files that were not written: %q", actions)
	}
	if !strings.Contains(actions, filepath.Join(b.root, "a1")) || !strings.Contains(actions, filepath.Join(b.root, "conf")) {
		t.Errorf("actions did not run for the written files: %q", actions)
	}

	// Room again: the next sync sends what is pending, and nothing else.
	mountns.Resize(t, b.root, "16M")
	must(t, os.Remove(filepath.Join(dir, "actions.log")))
	res = a.sync(t, nodes, Options{})
	if err := res.Err(); err != nil {
		t.Fatalf("after freeing space: %v", err)
	}
	if pr := res.Peers[0]; pr.Updated != 3 {
		t.Errorf("updated %d after freeing space, want 3", pr.Updated)
	}
	for _, name := range []string{"b2big", "grow.log", "keep.txt"} {
		if !bytes.Equal([]byte(read(t, filepath.Join(b.root, name))), []byte(read(t, filepath.Join(a.root, name)))) {
			t.Errorf("%s differs after the retry", name)
		}
	}
	if n, _ := a.st.DirtyCount("b"); n != 0 {
		t.Errorf("%d still pending", n)
	}
	actions = read(t, filepath.Join(dir, "actions.log"))
	if !strings.Contains(actions, "b2big") || !strings.Contains(actions, "keep.txt") {
		t.Errorf("actions of the retried files: %q", actions)
	}
}

// The backup directory is full: a replace that cannot keep the old version
// does not happen (the old file stays, the sender hears why), and retrying
// it again and again never costs the generations already kept.
func TestFullBackupDisk(t *testing.T) {
	if !mountns.Enter(t) {
		return
	}
	nodes, dir := setupCfg(t, []string{"a", "b"}, `group g {
  host a b; key KEY; include %data%;
  backup-directory DIR/backup; backup-generations 3;
}
`)
	a, b := nodes["a"], nodes["b"]
	backupDir := filepath.Join(dir, "backup")
	mountns.Tmpfs(t, backupDir, "1M")
	kept := filepath.Join(b.root, "f")
	for _, v := range []string{"v1", "v2", "v3"} {
		write(t, filepath.Join(a.root, "f"), v)
		if err := a.sync(t, nodes, Options{}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	gens := func() string {
		var s []string
		for g := 1; g <= 3; g++ {
			data, err := os.ReadFile(apply.BackupPath(backupDir, kept, g))
			if err != nil {
				s = append(s, "-")
				continue
			}
			s = append(s, string(data))
		}
		return strings.Join(s, " ")
	}
	if got := gens(); got != "v2 v1 -" {
		t.Fatalf("generations before the disk fills: %q", got)
	}
	// Fill the backup disk.
	filler := filepath.Join(backupDir, "filler")
	f, err := os.Create(filler)
	must(t, err)
	_, _ = f.Write(make([]byte, 2<<20))
	f.Close()

	write(t, filepath.Join(a.root, "f"), "v4")
	for i := range 4 { // retries must not rotate the kept generations away
		res := a.sync(t, nodes, Options{})
		err := res.Err()
		if err == nil || !strings.Contains(err.Error(), "no space left on device") || !strings.Contains(err.Error(), "back up") {
			t.Fatalf("try %d: %v, want a backup ENOSPC error", i, err)
		}
		if i == 0 {
			t.Logf("sync error: %v", err)
		}
		if got := read(t, kept); got != "v3" {
			t.Fatalf("try %d: b's file is %q, want v3 kept", i, got)
		}
		if got := gens(); got != "v2 v1 -" {
			t.Fatalf("try %d: generations %q after a failed backup, want v2 v1 -", i, got)
		}
		if left := tempsBelow(t, dir); len(left) > 0 {
			t.Fatalf("temp files left: %q", left)
		}
	}
	must(t, os.Remove(filler))
	if err := a.sync(t, nodes, Options{}).Err(); err != nil {
		t.Fatal(err)
	}
	if got := read(t, kept); got != "v4" {
		t.Errorf("after freeing space: %q", got)
	}
	if got := gens(); got != "v3 v2 v1" {
		t.Errorf("generations after freeing space: %q, want v3 v2 v1", got)
	}
}

// fillUp writes a file in dir until the file system is full.
func fillUp(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	must(t, err)
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	return p
}

// reopenOn moves n's state database onto a new, empty directory.
func reopenOn(t *testing.T, n *node, dir string) {
	t.Helper()
	must(t, n.st.Close())
	st, err := state.Open(context.Background(), state.Options{Dir: dir, Node: n.name})
	must(t, err)
	t.Cleanup(func() { st.Close() })
	n.st = st
}

// The sender's state disk is full: writing state fails with a clear error,
// and nothing is ever read as an empty database (no deletion reaches the
// peer); once there is room, a sync converges.
func TestFullStateDiskSender(t *testing.T) {
	if !mountns.Enter(t) {
		return
	}
	nodes, dir := setupCfg(t, []string{"a", "b"}, "group g {\n  host a b; key KEY; include %data%;\n}\n")
	a, b := nodes["a"], nodes["b"]
	stDir := filepath.Join(dir, "a-state")
	mountns.Tmpfs(t, stDir, "40M")
	reopenOn(t, a, filepath.Join(stDir, "db"))
	for i := range 50 {
		write(t, filepath.Join(a.root, fmt.Sprintf("f%02d", i)), fmt.Sprintf("v1 %d", i))
	}
	if err := a.sync(t, nodes, Options{}).Err(); err != nil {
		t.Fatal(err)
	}
	filler := fillUp(t, stDir)
	for i := range 50 {
		write(t, filepath.Join(a.root, fmt.Sprintf("f%02d", i)), fmt.Sprintf("v2 %d", i))
	}
	must(t, os.Remove(filepath.Join(a.root, "f00")))
	ctx := context.Background()
	_, cerr := scan.Check(ctx, a.st, a.view, nil, true, scan.Options{})
	res, perr := Push(ctx, Options{View: a.view, Store: a.st, Connect: connector(nodes)})
	t.Logf("check: %v; push: %v / %v", cerr, perr, res.Err())
	if cerr == nil && perr == nil && res.Err() == nil {
		t.Error("check and push on a full state disk reported success")
	}
	if n := countFiles(t, b.root); n < 49 {
		t.Fatalf("b lost files: %d left", n)
	}
	must(t, os.Remove(filler))
	// The store may have closed itself; reopen as the next run would.
	reopenOn(t, a, filepath.Join(stDir, "db"))
	if err := a.sync(t, nodes, Options{}).Err(); err != nil {
		t.Fatalf("after freeing space: %v", err)
	}
	for i := 1; i < 50; i++ {
		if got := read(t, filepath.Join(b.root, fmt.Sprintf("f%02d", i))); got != fmt.Sprintf("v2 %d", i) {
			t.Errorf("f%02d on b: %q", i, got)
		}
	}
	if exists(filepath.Join(b.root, "f00")) {
		t.Error("the deletion of f00 did not reach b")
	}
}

func countFiles(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(dir)
	must(t, err)
	return len(ents)
}

// The receiver's state disk is full: it takes no change at all (one it
// could not record would be applied unrecorded, and its actions would never
// run), and the sender hears why, with the host.
func TestFullStateDiskReceiver(t *testing.T) {
	if !mountns.Enter(t) {
		return
	}
	nodes, dir := setupCfg(t, []string{"a", "b"}, "group g {\n  host a b; key KEY; include %data%;\n}\n")
	a, b := nodes["a"], nodes["b"]
	stDir := filepath.Join(dir, "b-state")
	mountns.Tmpfs(t, stDir, "40M")
	reopenOn(t, b, filepath.Join(stDir, "db"))
	write(t, filepath.Join(a.root, "f"), "v1")
	if err := a.sync(t, nodes, Options{}).Err(); err != nil {
		t.Fatal(err)
	}
	filler := fillUp(t, stDir)
	write(t, filepath.Join(a.root, "f"), "v2")
	write(t, filepath.Join(a.root, "g"), "new")
	res := a.sync(t, nodes, Options{})
	err := res.Err()
	t.Logf("sync error: %v", err)
	if err == nil || !strings.Contains(err.Error(), "peer b") || !strings.Contains(err.Error(), "file system is too full") {
		t.Fatalf("sync to a receiver with a full state disk: %v", err)
	}
	if got := read(t, filepath.Join(b.root, "f")); got != "v1" || exists(filepath.Join(b.root, "g")) {
		t.Errorf("b applied changes it could not record: f=%q", got)
	}
	for _, name := range []string{"f", "g"} {
		if _, ok, _ := a.st.GetBase("b", filepath.Join(a.root, name)); name == "g" && ok {
			t.Errorf("a recorded a base of %s for b", name)
		}
	}
	if n, _ := a.st.DirtyCount("b"); n < 2 {
		t.Errorf("pending for b: %d, want f and g", n)
	}
	must(t, os.Remove(filler))
	if err := a.sync(t, nodes, Options{}).Err(); err != nil {
		t.Fatalf("after freeing space: %v", err)
	}
	if got := read(t, filepath.Join(b.root, "f")); got != "v2" {
		t.Errorf("f on b: %q", got)
	}
}

// The usual layout: the receiver's data and its state db share one file
// system, and the batch fills it. Files stop being applied before the state
// db has no room to record them (its reserve, state.MinFree, stays for
// that); what was applied is recorded and its actions run; the rest stays
// pending and goes once there is room; deletions still go through.
func TestFullSharedDisk(t *testing.T) {
	if !mountns.Enter(t) {
		return
	}
	nodes, dir := setupCfg(t, []string{"a", "b"}, `group g {
  host a b; key KEY; include %data%;
  action { exec "for f in %%; do echo $f; done >> DIR/actions.log"; }
}
`)
	a, b := nodes["a"], nodes["b"]
	// b's data and state db on one 48 MiB disk.
	must(t, b.st.Close())
	mountns.Tmpfs(t, filepath.Join(dir, "b"), "48M")
	must(t, os.Mkdir(b.root, 0o755))
	reopenOn(t, b, filepath.Join(dir, "b", "state"))
	write(t, filepath.Join(a.root, "old"), "old")
	for i := range 4 {
		randomFile(t, filepath.Join(a.root, fmt.Sprintf("gone%d", i)), 1<<20)
	}
	if err := a.sync(t, nodes, Options{}).Err(); err != nil {
		t.Fatal(err)
	}
	must(t, os.Remove(filepath.Join(dir, "actions.log")))
	const n = 24
	for i := range n {
		randomFile(t, filepath.Join(a.root, fmt.Sprintf("f%02d", i)), 1<<20)
	}
	must(t, os.Remove(filepath.Join(a.root, "gone0")))
	res := a.sync(t, nodes, Options{})
	err := res.Err()
	t.Logf("sync error: %v", err)
	if err == nil || !strings.Contains(err.Error(), "peer b") || !strings.Contains(err.Error(), "full") {
		t.Fatalf("a sync that filled b's disk: %v", err)
	}
	applied := 0
	for i := range n {
		if exists(filepath.Join(b.root, fmt.Sprintf("f%02d", i))) {
			applied++
		}
	}
	pr := res.Peers[0]
	t.Logf("%d of %d files applied; updated %d, failed %d, deleted %d", applied, n, pr.Updated, pr.Failed, pr.Deleted)
	if applied == 0 || applied == n {
		t.Fatalf("the disk did not fill mid-batch: %d of %d applied", applied, n)
	}
	if exists(filepath.Join(b.root, "gone0")) || pr.Deleted != 1 {
		t.Error("the deletion did not go through on the full disk")
	}
	if left := tempsBelow(t, b.root); len(left) > 0 {
		t.Errorf("temp files left on b: %q", left)
	}
	// What was applied is recorded on both sides, and its actions ran.
	ran := read(t, filepath.Join(dir, "actions.log"))
	for i := range n {
		p := filepath.Join(b.root, fmt.Sprintf("f%02d", i))
		_, recorded, _ := b.st.GetFile(p)
		_, based, _ := a.st.GetBase("b", filepath.Join(a.root, fmt.Sprintf("f%02d", i)))
		if on := exists(p); on != recorded || on != based || on != strings.Contains(ran, p+"\n") {
			t.Errorf("f%02d: on b %v, recorded on b %v, base on a %v, action ran %v", i, on, recorded, based, strings.Contains(ran, p+"\n"))
		}
	}
	// Room again: the rest goes.
	mountns.Resize(t, filepath.Join(dir, "b"), "128M")
	if err := a.sync(t, nodes, Options{}).Err(); err != nil {
		t.Fatalf("after freeing space: %v", err)
	}
	ran = read(t, filepath.Join(dir, "actions.log"))
	for i := range n {
		p := filepath.Join(b.root, fmt.Sprintf("f%02d", i))
		if read(t, p) != read(t, filepath.Join(a.root, fmt.Sprintf("f%02d", i))) || !strings.Contains(ran, p+"\n") {
			t.Errorf("f%02d not synced with its action after freeing space", i)
		}
	}
}
