package engine

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"

	"ocf-csync/syncer/config"
	"ocf-csync/syncer/scan"
	"ocf-csync/syncer/state"
	"ocf-csync/syncer/transport"
)

// sftpSetup: nodes a and b run ocf-csync; c is an SFTP-only slave whose
// files live under DIR/c/data, served by an in-process pkg/sftp server
// (the real file system, as OpenSSH's internal-sftp serves it).
func sftpSetup(t *testing.T) (map[string]*node, string) {
	t.Helper()
	body := "group g {\n  host a b (c);\n  key KEY;\n  include %data%;\n  exclude *.tmp;\n" +
		"  backup-directory DIR/backup;\n  backup-generations 3;\n}\nssh { sftp-hosts c; }\n"
	return setupCfg(t, []string{"a", "b", "c"}, body)
}

// sftpDialer serves each session from a fresh in-process SFTP server.
func sftpDialer(t *testing.T) SFTPDialer {
	return func(ctx context.Context, h config.Host) (*transport.SFTP, error) {
		cr, sw := io.Pipe()
		sr, cw := io.Pipe()
		srv, err := sftp.NewServer(struct {
			io.Reader
			io.WriteCloser
		}{sr, sw})
		if err != nil {
			return nil, err
		}
		go func() { srv.Serve(); sw.Close(); sr.Close() }()
		cl, err := sftp.NewClientPipe(cr, cw)
		if err != nil {
			return nil, err
		}
		return transport.NewSFTP(cl, h.Name)
	}
}

func (n *node) syncSFTP(t *testing.T, nodes map[string]*node, o Options) Result {
	t.Helper()
	o.SFTP = sftpDialer(t)
	return n.sync(t, nodes, o)
}

func peerRes(t *testing.T, r Result, peer string) PeerResult {
	t.Helper()
	for _, p := range r.Peers {
		if p.Peer == peer {
			return p
		}
	}
	t.Fatalf("no result for peer %s in %+v", peer, r.Peers)
	return PeerResult{}
}

// sameTree compares two trees: type, content, link target, mode, owner and
// mtime to the second (symlink mtimes and owners cannot be set over SFTP).
func sameTree(t *testing.T, want, got string) {
	t.Helper()
	seen := map[string]bool{}
	filepath.Walk(want, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(want, p)
		seen[rel] = true
		if fi.Mode()&os.ModeNamedPipe != 0 || strings.HasSuffix(p, ".tmp") {
			return nil // cannot be made over SFTP; excluded
		}
		gp := filepath.Join(got, rel)
		gi, err := os.Lstat(gp)
		if err != nil {
			t.Errorf("%s missing on the target: %v", rel, err)
			return nil
		}
		if gi.Mode() != fi.Mode() {
			t.Errorf("%s: mode %v on the target, %v here", rel, gi.Mode(), fi.Mode())
		}
		ws, gs := fi.Sys().(*syscall.Stat_t), gi.Sys().(*syscall.Stat_t)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			wt, _ := os.Readlink(p)
			gt, _ := os.Readlink(gp)
			if wt != gt {
				t.Errorf("%s: link to %q on the target, %q here", rel, gt, wt)
			}
			return nil
		case fi.Mode().IsRegular():
			if read(t, p) != read(t, gp) {
				t.Errorf("%s: content differs", rel)
			}
		}
		if ws.Uid != gs.Uid || ws.Gid != gs.Gid {
			t.Errorf("%s: owner %d:%d on the target, %d:%d here", rel, gs.Uid, gs.Gid, ws.Uid, ws.Gid)
		}
		if gi.ModTime().Unix() != fi.ModTime().Unix() {
			t.Errorf("%s: mtime %v on the target, %v here", rel, gi.ModTime(), fi.ModTime())
		}
		return nil
	})
	filepath.Walk(got, func(p string, fi os.FileInfo, err error) error {
		if rel, _ := filepath.Rel(got, p); err == nil && !seen[rel] {
			t.Errorf("%s only on the target", rel)
		}
		return nil
	})
}

func TestSFTPPushMixedTree(t *testing.T) {
	nodes, _ := sftpSetup(t)
	a, c := nodes["a"], nodes["c"]
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	writeAt(t, filepath.Join(a.root, "dir/sub/f.txt"), "deep", mtime)
	writeAt(t, filepath.Join(a.root, "secret"), "0600 content", mtime)
	os.Chmod(filepath.Join(a.root, "secret"), 0o600)
	writeAt(t, filepath.Join(a.root, "setuid"), "x", mtime)
	os.Chmod(filepath.Join(a.root, "setuid"), 0o4755)
	writeAt(t, filepath.Join(a.root, "skip.tmp"), "excluded", mtime)
	os.WriteFile(filepath.Join(a.root, "big"), []byte(strings.Repeat("0123456789", 300_000)), 0o640)
	os.Symlink("dir/sub/f.txt", filepath.Join(a.root, "link"))
	os.Link(filepath.Join(a.root, "secret"), filepath.Join(a.root, "dir/hard"))
	os.Chmod(filepath.Join(a.root, "dir/sub"), 0o750)
	os.Chtimes(filepath.Join(a.root, "dir/sub"), mtime, mtime)
	if err := syscall.Mkfifo(filepath.Join(a.root, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}

	res := a.syncSFTP(t, nodes, Options{Peers: []string{"c"}})
	pr := peerRes(t, res, "c")
	if pr.Err != nil || pr.Failed+pr.Refused != 0 {
		t.Fatalf("push to SFTP target: %+v", pr)
	}
	if pr.Skipped != 1 || !strings.Contains(strings.Join(pr.Problems, "\n"), "fifo cannot be made over SFTP") {
		t.Errorf("the fifo was not skipped and reported: skipped %d, problems %q", pr.Skipped, pr.Problems)
	}
	sameTree(t, a.root, c.root)
	var sa, sc syscall.Stat_t
	syscall.Stat(filepath.Join(c.root, "secret"), &sa)
	syscall.Stat(filepath.Join(c.root, "dir/hard"), &sc)
	if sa.Ino != sc.Ino {
		t.Errorf("the hardlink was split on the target")
	}
	if _, err := os.Lstat(filepath.Join(c.root, transport.StagingName)); !os.IsNotExist(err) {
		t.Errorf("staging directory left on the target: %v", err)
	}

	// Nothing changed: nothing planned, nothing sent.
	res = a.syncSFTP(t, nodes, Options{Peers: []string{"c"}})
	for _, pr := range res.Peers {
		if pr.Planned != 0 || pr.DataBytes != 0 {
			t.Errorf("second push: planned %d, %d bytes", pr.Planned, pr.DataBytes)
		}
	}

	// Update, metadata-only change, deletion of a file and a directory.
	writeAt(t, filepath.Join(a.root, "dir/sub/f.txt"), "deeper", mtime.Add(time.Hour))
	os.Chmod(filepath.Join(a.root, "setuid"), 0o755)
	os.Remove(filepath.Join(a.root, "link"))
	os.RemoveAll(filepath.Join(a.root, "dir"))
	res = a.syncSFTP(t, nodes, Options{Peers: []string{"c"}})
	if pr := peerRes(t, res, "c"); pr.Err != nil || pr.Failed+pr.Refused != 0 || pr.Deleted != 5 {
		t.Fatalf("third push: %+v", pr)
	}
	sameTree(t, a.root, c.root)
	// Deleted files are kept in the backup directory (generation 1).
	if got := read(t, filepath.Join(filepath.Dir(c.root), "..", "backup", c.root, "dir/sub/f.txt")); got != "deep" {
		t.Errorf("backup of the deleted file = %q", got)
	}
}

func TestSFTPSlaveLosesWithBackup(t *testing.T) {
	nodes, dir := sftpSetup(t)
	a, c := nodes["a"], nodes["c"]
	writeAt(t, filepath.Join(a.root, "f"), "v1", time.Unix(1_700_000_000, 0))
	if r := peerRes(t, a.syncSFTP(t, nodes, Options{Peers: []string{"c"}}), "c"); r.Err != nil || r.Updated != 2 {
		t.Fatalf("first push: %+v", r)
	}
	// Someone edits the slave's copy; then the file changes here too.
	writeAt(t, filepath.Join(c.root, "f"), "edited on the slave", time.Unix(1_700_000_500, 0))
	writeAt(t, filepath.Join(a.root, "f"), "v2", time.Unix(1_700_001_000, 0))
	r := peerRes(t, a.syncSFTP(t, nodes, Options{Peers: []string{"c"}}), "c")
	if r.Err != nil || r.Conflicts != 0 || r.Updated != 1 {
		t.Fatalf("push over the slave's edit: %+v", r)
	}
	if got := read(t, filepath.Join(c.root, "f")); got != "v2" {
		t.Errorf("slave's file = %q, want v2: a slave always loses", got)
	}
	if got := read(t, filepath.Join(dir, "backup", c.root, "f")); got != "edited on the slave" {
		t.Errorf("backup of the slave's edit = %q", got)
	}
}

func TestSFTPRefusesSymlinkedDirectory(t *testing.T) {
	nodes, dir := sftpSetup(t)
	a, c := nodes["a"], nodes["c"]
	write(t, filepath.Join(a.root, "d/one"), "1")
	if r := peerRes(t, a.syncSFTP(t, nodes, Options{Peers: []string{"c"}}), "c"); r.Err != nil || r.Failed+r.Refused != 0 {
		t.Fatalf("first push: %+v", r)
	}
	// A local user of the slave swaps d for a symlink to a place outside.
	outside := filepath.Join(dir, "outside")
	os.MkdirAll(outside, 0o755)
	os.RemoveAll(filepath.Join(c.root, "d"))
	if err := os.Symlink(outside, filepath.Join(c.root, "d")); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(a.root, "d/two"), "2")
	r := peerRes(t, a.syncSFTP(t, nodes, Options{Peers: []string{"c"}}), "c")
	if r.Refused == 0 || !strings.Contains(strings.Join(r.Problems, "\n"), "symlink") {
		t.Errorf("push through a symlinked directory not refused: %+v", r)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("something was written through the symlink: %v", ents)
	}
	if n, _ := a.st.DirtyCount("c"); n == 0 {
		t.Errorf("the refused file is not pending any more")
	}
}

func TestSFTPLeftoverStagingCleared(t *testing.T) {
	nodes, _ := sftpSetup(t)
	a, c := nodes["a"], nodes["c"]
	write(t, filepath.Join(a.root, "f"), "new")
	// What a killed sender leaves: a staging dir with a partial temp file.
	write(t, filepath.Join(c.root, transport.StagingName, "t0123"), "partial")
	if r := peerRes(t, a.syncSFTP(t, nodes, Options{Peers: []string{"c"}}), "c"); r.Err != nil || r.Failed+r.Refused != 0 {
		t.Fatalf("push: %+v", r)
	}
	if _, err := os.Lstat(filepath.Join(c.root, transport.StagingName)); !os.IsNotExist(err) {
		t.Errorf("leftover staging directory still there: %v", err)
	}
	if got := read(t, filepath.Join(c.root, "f")); got != "new" {
		t.Errorf("f = %q", got)
	}
}

// A newly active node (Mark) compares the target with its own records:
// what the target lacks is pushed, what it has is recognised by hash.
func TestSFTPCatchUpAfterTakeover(t *testing.T) {
	nodes, _ := sftpSetup(t)
	a, b, c := nodes["a"], nodes["b"], nodes["c"]
	mtime := time.Unix(1_700_000_000, 0)
	for _, n := range []*node{a, b} {
		writeAt(t, filepath.Join(n.root, "both"), "same everywhere", mtime)
	}
	if r := peerRes(t, a.syncSFTP(t, nodes, Options{Peers: []string{"c"}}), "c"); r.Err != nil {
		t.Fatal(r.Err)
	}
	// b has a file a never pushed to c (a failed before it could).
	writeAt(t, filepath.Join(b.root, "late"), "only b and a had it", mtime)
	ctx := context.Background()
	if _, err := scan.Check(ctx, b.st, b.view, nil, true, scan.Options{}); err != nil {
		t.Fatal(err)
	}
	b.st.NewBatch().Commit()
	// b's scan marked both dirty for c already; forget that, as if b had
	// received them from a (serve marks nothing dirty for other peers).
	bt := b.st.NewBatch()
	for _, p := range []string{"both", "late", ""} {
		bt.ClearDirty("c", filepath.Join(b.root, p))
		bt.ClearDirty("c", b.root)
	}
	if err := bt.Commit(); err != nil {
		t.Fatal(err)
	}
	res, err := Push(ctx, Options{View: b.view, Store: b.st, Peers: []string{"c"}, SFTP: sftpDialer(t),
		Mark: &state.Handoff{Epoch: 2, From: "b"}})
	if err != nil {
		t.Fatal(err)
	}
	r := peerRes(t, res, "c")
	if r.Err != nil || r.Failed+r.Refused != 0 {
		t.Fatalf("catch-up push: %+v", r)
	}
	if got := read(t, filepath.Join(c.root, "late")); got != "only b and a had it" {
		t.Errorf("late = %q", got)
	}
	if r.Same < 1 || r.DataBytes != int64(len("only b and a had it")) {
		t.Errorf("catch-up re-sent what the target had: same %d, %d bytes", r.Same, r.DataBytes)
	}
}

// A backup directory on another file system: rename and hardlink fail
// there (EXDEV), so backups are copies, and a deleted file still goes.
func TestSFTPBackupAcrossFileSystems(t *testing.T) {
	shm, err := os.MkdirTemp("/dev/shm", "ocf-csync-test-")
	if err != nil {
		t.Skipf("no /dev/shm for a second file system: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(shm) })
	body := "group g {\n  host a (c);\n  key KEY;\n  include %data%;\n  backup-directory " + shm + ";\n  backup-generations 2;\n}\nssh { sftp-hosts c; }\n"
	nodes, _ := setupCfg(t, []string{"a", "c"}, body)
	a, c := nodes["a"], nodes["c"]
	writeAt(t, filepath.Join(a.root, "keep"), "v1", time.Unix(1_700_000_000, 0))
	writeAt(t, filepath.Join(a.root, "gone"), "delete me", time.Unix(1_700_000_000, 0))
	a.syncSFTP(t, nodes, Options{})
	writeAt(t, filepath.Join(a.root, "keep"), "v2", time.Unix(1_700_000_100, 0))
	os.Remove(filepath.Join(a.root, "gone"))
	r := peerRes(t, a.syncSFTP(t, nodes, Options{}), "c")
	if r.Err != nil || r.Failed+r.Refused != 0 || r.Deleted != 1 {
		t.Fatalf("push: %+v", r)
	}
	if !exists(filepath.Join(c.root, "keep")) || exists(filepath.Join(c.root, "gone")) {
		t.Errorf("target: keep %v, gone %v; want the deleted file gone", exists(filepath.Join(c.root, "keep")), exists(filepath.Join(c.root, "gone")))
	}
	for name, want := range map[string]string{"keep": "v1", "gone": "delete me"} {
		if got := read(t, filepath.Join(shm, c.root, name)); got != want {
			t.Errorf("backup of %s = %q, want %q", name, got, want)
		}
	}
}
