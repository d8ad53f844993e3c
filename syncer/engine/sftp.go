package engine

// SFTP receive-only targets (ssh { sftp-hosts … }): slaves that run sshd
// but no ocf-csync. The same plan as for a helper peer (deletions deepest
// first, directories parents first, files and symlinks, directory metadata
// last) is carried out with SFTP requests from this side:
//
//   - whole files go to a temp file in a 0700 staging directory inside the
//     target directory; owner, mode and mtime are set before the atomic
//     posix-rename@openssh.com into place, so the target shows the old
//     file or the new one, never a mix;
//   - path confinement is enforced here, since the SFTP server confines
//     nothing: the path must be in the target's own include set (its view
//     of the config) and every directory on the way is LSTATed and refused
//     when it is a symlink. LSTAT-then-act races with the target's local
//     users; the README recommends ChrootDirectory for such targets;
//   - a slave always loses: a target file that differs from the recorded
//     base is replaced anyway (kept first in the group's backup-directory
//     when it has one) and the change is logged;
//   - SFTP v3 has whole-second mtimes, no lsetstat and no mknod: symlink
//     owners, fifos, sockets and devices cannot be made there; they are
//     skipped and reported. No actions run on such a target.

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"sort"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"ocf-csync/syncer/apply"
	"ocf-csync/syncer/config"
	"ocf-csync/syncer/proto"
	"ocf-csync/syncer/scan"
	"ocf-csync/syncer/state"
	"ocf-csync/syncer/transport"
)

// SFTPDialer opens an SFTP session to a receive-only target.
type SFTPDialer func(ctx context.Context, peer config.Host) (*transport.SFTP, error)

// SFTPDialerFor dials with the config's ssh { } settings.
func SFTPDialerFor(cfg *config.Config, log *slog.Logger) SFTPDialer {
	return func(ctx context.Context, h config.Host) (*transport.SFTP, error) {
		conn, err := transport.Dial(ctx, sshPeer(cfg, h), log.With("peer", h.Name))
		if err != nil {
			return nil, err
		}
		s, err := conn.SFTP()
		if err != nil {
			conn.Close()
			return nil, err
		}
		return s, nil
	}
}

// isSFTPTarget reports whether peer gets its pushes over SFTP.
func isSFTPTarget(view *config.NodeView, peer string) bool {
	return view.Config != nil && view.Config.SSH.IsSFTP(peer)
}

// sftpWorkers is how many files are in flight at once on one SFTP session:
// each file costs several round trips, which only concurrency hides.
var sftpWorkers = 16

type sftpPusher struct {
	o      *Options
	peer   string
	log    *slog.Logger
	outMu  *sync.Mutex
	t      *transport.SFTP
	tview  *config.NodeView // the target's view: its paths and include set
	ignore state.Ignore

	dirMu    sync.Mutex // serializes checkDir's slow path
	mu       sync.Mutex
	res      PeerResult
	batch    *state.Batch
	since    int
	dirs     map[string]*remoteDir // target directories seen on the way
	links    map[[2]uint64]*sftpLink
	fatal    error
	noChown  bool // the login may not chown: said once, then owners are left
	metaDirs map[string]bool
}

// remoteDir is a target directory checked (or made) in this run.
type remoteDir struct {
	err      error  // why nothing may be written below it
	mtimeSec int64  // its mtime before this run touched it
	local    string // this node's path of it, when it is a synced directory
	touched  bool   // entries were added, replaced or removed
	created  bool
}

type sftpLink struct {
	done  chan struct{}
	tpath string // where the first name went; "" if it failed
}

// pushSFTP carries out the plan for an SFTP target.
func pushSFTP(ctx context.Context, o *Options, p *plan, outMu *sync.Mutex) (res PeerResult) {
	start := time.Now()
	peer := p.peer
	res.Peer = peer
	defer func() { res.Duration = time.Since(start) }()
	log := o.Log.With("peer", peer, "transport", "sftp")
	catchUp := o.Mark != nil && !o.DryRun
	err := p.settle(o, log, &res)
	if err != nil || (p.len() == 0 && !catchUp) {
		if err == nil && o.Handoff != nil {
			// Nothing pending: as far as an SFTP target can be handed off.
			res.HandedOff = true
		}
		return res
	}
	tview, err := o.View.Config.Node(peer)
	if err != nil {
		res.Err = fmt.Errorf("the config as SFTP target %s sees it: %w", peer, err)
		return res
	}
	if o.DryRun {
		sftpDryRun(o, p, outMu)
		return res
	}
	host, ok := hostOf(o.View, peer)
	if !ok {
		res.Err = fmt.Errorf("peer %s is not a host of any group of this node", peer)
		return res
	}
	dial := o.SFTP
	if dial == nil {
		dial = SFTPDialerFor(o.View.Config, o.Log)
	}
	t, err := dial(ctx, host)
	if err != nil {
		res.Err = err
		return res
	}
	defer t.Close()
	stop := context.AfterFunc(ctx, func() { t.Close() })
	defer stop()
	s := &sftpPusher{o: o, peer: peer, log: log, outMu: outMu, t: t, tview: tview, ignore: o.View.Config.Ignore,
		res: res, batch: o.Store.NewBatch(), dirs: map[string]*remoteDir{}, links: map[[2]uint64]*sftpLink{},
		metaDirs: map[string]bool{}}
	if catchUp {
		if err := s.catchUp(ctx, p.filter); err != nil {
			s.res.Err = err
			return s.finish()
		}
		// The plan again, with what the target lacks; groups the safety
		// checks hold back stay held.
		np, err := buildPlan(o.Store, o.View, peer, p.filter.groups, o.Paths, o.Recursive)
		if err == nil {
			(&safety{o: o, skip: p.filter.skip}).exclude(np)
			err = np.settle(o, log, &s.res)
		}
		if err != nil {
			s.res.Err = err
			return s.finish()
		}
		p = np
	}
	s.res.Err = s.run(ctx, p)
	out := s.finish()
	if o.Handoff != nil && out.Err == nil && out.Refused+out.Failed == 0 {
		n, err := o.Store.DirtyCount(peer)
		out.HandedOff = err == nil && n == 0
	}
	return out
}

func (s *sftpPusher) finish() PeerResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.batch.CommitDurable(); err != nil && s.res.Err == nil {
		s.res.Err = fmt.Errorf("record synced state: %w", err)
	}
	s.res.WireSent, s.res.WireRecvd = s.t.Counters()
	return s.res
}

func sftpDryRun(o *Options, p *plan, outMu *sync.Mutex) {
	if o.Progress == nil {
		return
	}
	line := func(op proto.OpKind, it *item) {
		outMu.Lock()
		fmt.Fprintf(o.Progress, "%-8s %-6s %s %s\n", "dry-run", op, p.peer, DisplayPath(it.path))
		outMu.Unlock()
	}
	for _, it := range p.deletes {
		line(proto.OpDelete, it)
	}
	_ = p.eachCreate(func(it *item) error {
		line(sftpOp(it), it)
		return nil
	})
}

func sftpOp(it *item) proto.OpKind {
	switch it.cur.Kind {
	case state.KindDir:
		return proto.OpMkdir
	case state.KindSymlink:
		return proto.OpSymlink
	case state.KindReg:
		if it.hasBase && it.base.SameContent(&it.cur) {
			return proto.OpMeta
		}
		return proto.OpFile
	}
	return proto.OpSpecial
}

// run: deletions deepest first, directories parents first, then files and
// symlinks concurrently, then directory metadata.
func (s *sftpPusher) run(ctx context.Context, p *plan) error {
	for _, it := range p.deletes {
		if err := s.stopped(ctx); err != nil {
			return err
		}
		s.delete(it)
	}
	err := p.eachCreate(func(it *item) error {
		if it.cur.Kind != state.KindDir {
			return nil
		}
		if err := s.stopped(ctx); err != nil {
			return err
		}
		s.mkdir(it)
		return nil
	})
	if err != nil {
		return err
	}
	work := make(chan *item)
	var wg sync.WaitGroup
	for range sftpWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var open scan.Opener // per worker: dir fds cached, never shared
			defer open.Close()
			for it := range work {
				s.entry(it, &open)
			}
		}()
	}
	err = p.eachCreate(func(it *item) error {
		if it.cur.Kind == state.KindDir {
			return nil
		}
		if err := s.stopped(ctx); err != nil {
			return err
		}
		work <- it
		return nil
	})
	close(work)
	wg.Wait()
	if err == nil {
		err = s.stopped(ctx)
	}
	if err != nil {
		return err
	}
	if _, derr := s.t.DropStaging(); derr != nil {
		s.log.Warn("staging directories left on the SFTP target; the next push clears them", "error", derr)
	}
	for _, it := range p.dirs {
		if err := s.stopped(ctx); err != nil {
			return err
		}
		s.dirMeta(it)
	}
	s.restoreDirTimes()
	return s.stopped(ctx)
}

// stopped is the reason to stop: ctx ended or the session was lost.
func (s *sftpPusher) stopped(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("push to %s: %w", s.peer, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fatal
}

// outcome of one item, for the counters and the state.
type outcome int

const (
	outUpdated outcome = iota
	outSame
	outDeleted
	outRefused
	outFailed
	outSkipped
)

// settle records what happened to it. rec is what the target now holds
// (for outUpdated/outSame).
func (s *sftpPusher) settle(it *item, op proto.OpKind, out outcome, rec *state.FileRecord, problem string) {
	s.mu.Lock()
	word := "ok"
	switch out {
	case outUpdated, outSame, outDeleted:
		switch out {
		case outSame:
			s.res.Same++
			word = "same"
		case outDeleted:
			s.res.Deleted++
		default:
			s.res.Updated++
		}
		if out == outDeleted {
			s.batch.DeleteBase(s.peer, it.path)
		} else {
			s.batch.PutBase(s.peer, it.path, rec)
		}
		s.batch.ClearDirty(s.peer, it.path)
		if out != outSame && op != proto.OpMeta && op != proto.OpDirMeta && hasLocalActions(it.group) {
			s.res.changed = append(s.res.changed, it)
		}
		if s.since++; s.since >= commitEvery {
			if err := s.batch.CommitDurable(); err != nil && s.fatal == nil {
				s.fatal = fmt.Errorf("record synced state: %w", err)
			}
			s.batch = s.o.Store.NewBatch()
			s.since = 0
		}
	case outSkipped:
		s.res.Skipped++
		s.res.Problems = append(s.res.Problems, problem)
		s.batch.ClearDirty(s.peer, it.path)
		word = "skipped"
	default:
		if out == outRefused {
			s.res.Refused++
			word = "refused"
		} else {
			s.res.Failed++
			word = "failed"
		}
		s.res.Problems = append(s.res.Problems, fmt.Sprintf("%s: %s", it.path, problem))
	}
	s.mu.Unlock()
	switch out {
	case outRefused, outFailed, outSkipped:
		s.log.Warn("SFTP target did not get it", "path", it.path, "outcome", word, "reason", problem)
	}
	if s.o.Progress != nil {
		s.outMu.Lock()
		fmt.Fprintf(s.o.Progress, "%-8s %-6s %s %s\n", word, op, s.peer, DisplayPath(it.path))
		s.outMu.Unlock()
	}
}

// fail settles it as failed; a lost session stops the whole push.
func (s *sftpPusher) fail(it *item, op proto.OpKind, err error) {
	if errors.Is(err, transport.ErrUnreachable) {
		s.mu.Lock()
		if s.fatal == nil {
			s.fatal = err
		}
		s.mu.Unlock()
	}
	var re *apply.RefusedError
	if errors.As(err, &re) {
		s.settle(it, op, outRefused, nil, err.Error())
		return
	}
	s.settle(it, op, outFailed, nil, err.Error())
}

// targetPath maps it to the target's own path and checks the target's
// include set: what the target's serve would accept, were it running.
func (s *sftpPusher) targetPath(it *item, isDir bool) (string, *config.GroupView, error) {
	tg := s.tview.Group(it.group.Name)
	if tg == nil {
		return "", nil, &apply.RefusedError{Path: it.wire, Reason: fmt.Sprintf("group %s does not list %s", it.group.Name, s.peer)}
	}
	tp, err := tg.LocalPath(it.wire)
	if err != nil {
		return "", nil, &apply.RefusedError{Path: it.wire, Reason: err.Error()}
	}
	if tp == "/" {
		return "", nil, &apply.RefusedError{Path: tp, Reason: "the root directory itself cannot be synced"}
	}
	if synced, _ := tg.Match(tp, isDir); !synced {
		return "", nil, &apply.RefusedError{Path: tp, Reason: fmt.Sprintf("outside the include set of group %s on %s", tg.Name, s.peer)}
	}
	return tp, tg, nil
}

// parents checks every directory above tp on the target: each must be a
// real directory, never a symlink. A missing one inside the group's include
// set is made from this node's record of it (local is it's local path).
func (s *sftpPusher) parents(tg *config.GroupView, tp, local string) error {
	var chain, locals []string
	for d, l := path.Dir(tp), path.Dir(local); d != "/"; d, l = path.Dir(d), path.Dir(l) {
		chain = append(chain, d)
		locals = append(locals, l)
	}
	for i := len(chain) - 1; i >= 0; i-- {
		if err := s.checkDir(tg, chain[i], locals[i]); err != nil {
			return err
		}
	}
	return nil
}

func (s *sftpPusher) checkDir(tg *config.GroupView, d, local string) error {
	s.mu.Lock()
	rd, ok := s.dirs[d]
	s.mu.Unlock()
	if ok {
		return rd.err
	}
	// One worker at a time checks (and may make) a directory.
	s.dirMu.Lock()
	defer s.dirMu.Unlock()
	s.mu.Lock()
	rd, ok = s.dirs[d]
	s.mu.Unlock()
	if ok {
		return rd.err
	}
	rd = &remoteDir{}
	if synced, _ := tg.Match(d, true); synced {
		rd.local = local
	}
	r, err := s.t.Lstat(d)
	switch {
	case err != nil:
		return err // not cached: a transient error may pass next time
	case r.IsSymlink():
		rd.err = &apply.RefusedError{Path: d, Reason: fmt.Sprintf("it is a symlink on %s; ocf-csync never writes through a symlinked directory (remove it there, or make it a directory)", s.peer)}
	case !r.Exists:
		rd.err = s.makeParent(tg, d, local, rd)
	case !r.IsDir():
		rd.err = fmt.Errorf("%s on %s is not a directory (%s)", d, s.peer, r.Mode.Type())
	default:
		rd.mtimeSec = r.MtimeSec
	}
	s.mu.Lock()
	s.dirs[d] = rd
	s.mu.Unlock()
	return rd.err
}

// makeParent recreates a directory the target lost, if it is in the
// include set and this node has it.
func (s *sftpPusher) makeParent(tg *config.GroupView, d, local string, rd *remoteDir) error {
	rec, ok, err := s.o.Store.GetFile(local)
	if synced, _ := tg.Match(d, true); !synced || err != nil || !ok || rec.Kind != state.KindDir {
		return fmt.Errorf("directory %s is missing on %s, and it is not a synced directory this node could make", d, s.peer)
	}
	if err := s.t.Mkdir(d); err != nil {
		return err
	}
	if err := s.t.SetAttrs(d, s.attrs(&rec, nil)); err != nil {
		return err
	}
	rd.created, rd.mtimeSec = true, time.Unix(0, rec.MtimeNs).Unix()
	s.touch(path.Dir(d))
	s.log.Warn("directory was missing on the SFTP target; made it again", "path", d)
	return nil
}

// touch notes that d's entries changed (its mtime must be put back).
func (s *sftpPusher) touch(d string) {
	s.mu.Lock()
	if rd, ok := s.dirs[d]; ok {
		rd.touched = true
	}
	s.mu.Unlock()
}

// restoreDirTimes puts back the mtimes of directories whose entries this
// run changed and whose own metadata was not pushed.
func (s *sftpPusher) restoreDirTimes() {
	s.mu.Lock()
	var ds []string
	for d, rd := range s.dirs {
		if rd.touched && rd.err == nil && !s.metaDirs[d] {
			ds = append(ds, d)
		}
	}
	s.mu.Unlock()
	sort.Sort(sort.Reverse(sort.StringSlice(ds))) // children first
	for _, d := range ds {
		// A synced directory gets this node's mtime (what was pushed
		// last: a slave loses); one above the includes gets its own back.
		mt := s.dirs[d].mtimeSec
		if l := s.dirs[d].local; l != "" {
			if rec, ok, err := s.o.Store.GetFile(l); err == nil && ok && rec.Kind == state.KindDir {
				mt = time.Unix(0, rec.MtimeNs).Unix()
			}
		}
		if err := s.t.SetAttrs(d, transport.Attrs{SetMtime: true, MtimeSec: mt}); err != nil {
			s.log.Warn("cannot restore a directory mtime on the SFTP target", "path", d, "error", err)
		}
	}
}

// attrs are what rec asks for, honouring ignore uid|gid|mod; old is the
// target's object being replaced (its owner and mode stay where ignored).
func (s *sftpPusher) attrs(rec *state.FileRecord, old *transport.RemoteStat) transport.Attrs {
	a := transport.Attrs{SetOwner: true, UID: rec.UID, GID: rec.GID, SetMode: true, Mode: fileMode(rec.Mode),
		SetMtime: true, MtimeSec: time.Unix(0, rec.MtimeNs).Unix()}
	if old != nil && old.Exists {
		if s.ignore.UID {
			a.UID = old.UID
		}
		if s.ignore.GID {
			a.GID = old.GID
		}
		if s.ignore.Mode {
			a.Mode = old.Mode & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
		}
	} else {
		a.SetOwner = !s.ignore.UID && !s.ignore.GID
		a.SetMode = !s.ignore.Mode
	}
	s.mu.Lock()
	if s.noChown {
		a.SetOwner = false
	}
	s.mu.Unlock()
	return a
}

// fileMode turns st_mode permission bits into an fs.FileMode.
func fileMode(m uint32) fs.FileMode {
	fm := fs.FileMode(m & 0o777)
	if m&unix.S_ISUID != 0 {
		fm |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		fm |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		fm |= fs.ModeSticky
	}
	return fm
}

// statMatches reports whether the target's object looks like rec: same
// type, and for a regular file the same size and mtime (to the second:
// all SFTP v3 tells).
func statMatches(r transport.RemoteStat, rec *state.FileRecord) bool {
	if !r.Exists || state.KindOf(r.Mode) != rec.Kind {
		return false
	}
	if rec.Kind == state.KindReg {
		return r.Size == rec.Size && r.MtimeSec == time.Unix(0, rec.MtimeNs).Unix()
	}
	return true
}

// metaMatches reports whether owner, mode and mtime already agree.
func (s *sftpPusher) metaMatches(r transport.RemoteStat, rec *state.FileRecord) bool {
	a := s.attrs(rec, nil)
	perm := r.Mode & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	return (!a.SetOwner || (r.UID == rec.UID && r.GID == rec.GID)) &&
		(!a.SetMode || perm == a.Mode) && r.MtimeSec == a.MtimeSec
}

// setAttrs sets a's attributes on the target path tp (never a symlink). A
// login that may not chown (not root) is reported once, then owners are
// left as they come.
func (s *sftpPusher) setAttrs(tp string, a transport.Attrs) error {
	err := s.t.SetAttrs(tp, a)
	if a.SetOwner && transport.IsPermission(err) {
		s.ownerDenied(err)
		a.SetOwner = false
		err = s.t.SetAttrs(tp, a)
	}
	return err
}

func (s *sftpPusher) ownerDenied(err error) {
	s.mu.Lock()
	first := !s.noChown
	s.noChown = true
	s.mu.Unlock()
	if first {
		s.log.Warn("the SFTP login may not change owners; files there keep the login's owner (log in as root to keep owners)", "error", err)
	}
}

// putFile writes src with a's attributes into a temp file, retrying once
// without the owner when the login may not chown.
func (s *sftpPusher) putFile(dir string, src func() (io.Reader, error), a transport.Attrs) (string, int64, error) {
	r, err := src()
	if err != nil {
		return "", 0, err
	}
	tmp, n, err := s.t.Put(dir, r, a, false)
	if err != nil && a.SetOwner && transport.IsPermission(err) {
		s.ownerDenied(err)
		a.SetOwner = false
		if r, err = src(); err != nil {
			return "", 0, err
		}
		tmp, n, err = s.t.Put(dir, r, a, false)
	}
	return tmp, n, err
}

// entry handles a file, symlink or special file (workers run it).
func (s *sftpPusher) entry(it *item, open *scan.Opener) {
	switch it.cur.Kind {
	case state.KindReg:
		s.file(it, open)
	case state.KindSymlink:
		s.symlink(it)
	case state.KindFifo, state.KindChr, state.KindBlk, state.KindSock:
		s.settle(it, proto.OpSpecial, outSkipped, nil,
			fmt.Sprintf("%s: a %s cannot be made over SFTP (no mknod): not on %s", it.path, kindWord(it.cur.Kind), s.peer))
	}
}

func kindWord(k state.Kind) string {
	switch k {
	case state.KindFifo:
		return "fifo"
	case state.KindChr:
		return "character device"
	case state.KindBlk:
		return "block device"
	case state.KindSock:
		return "socket"
	}
	return k.String()
}

// prepare maps and confines it, and LSTATs its target path.
func (s *sftpPusher) prepare(it *item, op proto.OpKind, isDir bool) (string, *config.GroupView, transport.RemoteStat, bool) {
	tp, tg, err := s.targetPath(it, isDir)
	if err == nil {
		err = s.parents(tg, tp, it.path)
	}
	var r transport.RemoteStat
	if err == nil {
		r, err = s.t.Lstat(tp)
	}
	if err != nil {
		s.fail(it, op, err)
		return "", nil, r, false
	}
	return tp, tg, r, true
}

// behind reports (and logs) a target object that is not what this node
// last left there: a slave loses, but the admin hears of it.
func (s *sftpPusher) behind(it *item, tp string, r transport.RemoteStat) bool {
	if !r.Exists {
		return false
	}
	if it.hasBase && statMatches(r, &it.base) {
		return false
	}
	s.log.Warn("the SFTP target's copy changed behind this node's back; a slave loses: replacing it",
		"path", tp, "size", r.Size, "mtime", time.Unix(r.MtimeSec, 0).UTC().Format(time.RFC3339))
	return true
}

// clear removes what is in the way of a new object at tp: a directory
// only if empty (never recursively), anything else after a backup.
func (s *sftpPusher) clear(tg *config.GroupView, tp string, r transport.RemoteStat) error {
	switch {
	case !r.Exists:
		return nil
	case r.IsDir():
		return s.t.Rmdir(tp)
	case r.IsRegular():
		moved, err := s.backup(tg, tp, r, true)
		if err != nil || moved {
			return err
		}
	}
	return s.t.Remove(tp)
}

func (s *sftpPusher) file(it *item, open *scan.Opener) {
	op := sftpOp(it)
	tp, tg, r, ok := s.prepare(it, op, false)
	if !ok {
		return
	}
	rec := it.cur
	// Same content there already: only the metadata may need work.
	if r.IsRegular() && statMatches(r, &it.cur) && (it.hasBase && it.base.SameContent(&it.cur) && statMatches(r, &it.base) || s.sameHash(tp, &it.cur)) {
		if s.metaMatches(r, &it.cur) {
			s.settle(it, op, outSame, &rec, "")
			return
		}
		if err := s.setAttrs(tp, s.attrs(&it.cur, &r)); err != nil {
			s.fail(it, op, err)
			return
		}
		s.settle(it, proto.OpMeta, outUpdated, &rec, "")
		return
	}
	if r.IsRegular() && it.hasBase && it.base.SameContent(&it.cur) && statMatches(r, &it.base) {
		// Only metadata changed here, and the target has the base.
		if err := s.setAttrs(tp, s.attrs(&it.cur, &r)); err != nil {
			s.fail(it, op, err)
			return
		}
		s.settle(it, proto.OpMeta, outUpdated, &rec, "")
		return
	}
	op = proto.OpFile
	s.behind(it, tp, r)
	if r.Exists && !r.IsRegular() {
		if err := s.clear(tg, tp, r); err != nil {
			s.fail(it, op, err)
			return
		}
	}
	if tmp, ok := s.hardlink(it, tp); ok {
		if tmp != "" {
			if err := s.replace(tg, tp, tmp, r); err != nil {
				s.fail(it, proto.OpHardlink, err)
				return
			}
			s.settle(it, proto.OpHardlink, outUpdated, &rec, "")
		}
		return
	}
	// Through O_NOFOLLOW dir fds, and only the inode the scan recorded, as
	// sendFile does.
	f, now, err := open.Open(it.path)
	if err != nil {
		s.linkDone(it, "")
		s.settle(it, op, outFailed, nil, fmt.Sprintf("%v: not sent (it stays dirty; the next check looks again)", err))
		return
	}
	defer f.Close()
	if now.Dev != it.cur.Dev || now.Ino != it.cur.Ino || now.Kind != state.KindReg {
		s.linkDone(it, "")
		s.settle(it, op, outFailed, nil, "not the file that was scanned (replaced since); it stays dirty and the next check sees it")
		return
	}
	h := sha256.New()
	src := func() (io.Reader, error) {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		h.Reset()
		return &io.LimitedReader{R: io.TeeReader(f, h), N: it.cur.Size}, nil
	}
	tmp, n, err := s.putFile(path.Dir(tp), src, s.attrs(&it.cur, &r))
	if err != nil {
		s.linkDone(it, "")
		s.fail(it, op, err)
		return
	}
	// The sender sends what it scanned: a file that changed while it was
	// sent stays dirty, and the target keeps what it had.
	if now, err := statFile(f); err != nil || now.StatChanged(&it.cur) || n != it.cur.Size {
		s.t.Discard(tmp)
		s.linkDone(it, "")
		s.settle(it, op, outFailed, nil, "changed while it was sent; the next sync sends it again")
		return
	}
	h.Sum(rec.Hash[:0])
	if err := s.replace(tg, tp, tmp, r); err != nil {
		s.t.Discard(tmp)
		s.linkDone(it, "")
		s.fail(it, op, err)
		return
	}
	s.linkDone(it, tp)
	s.mu.Lock()
	s.res.DataBytes += n
	s.mu.Unlock()
	s.settle(it, op, outUpdated, &rec, "")
}

// replace renames tmp over tp, keeping a backup of the regular file there.
func (s *sftpPusher) replace(tg *config.GroupView, tp, tmp string, old transport.RemoteStat) error {
	if old.IsRegular() {
		if _, err := s.backup(tg, tp, old, false); err != nil {
			return err
		}
	}
	if err := s.t.Rename(tmp, tp); err != nil {
		return err
	}
	s.touch(path.Dir(tp))
	return nil
}

// sameHash reads the target's file and compares its sha256 with rec's:
// for a file whose size and mtime match but that no base vouches for
// (first push, or after a failover).
func (s *sftpPusher) sameHash(tp string, rec *state.FileRecord) bool {
	if rec.Hash == (state.Hash{}) {
		return false
	}
	f, err := s.t.Open(tp)
	if err != nil {
		return false
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, rec.Size+1)); err != nil {
		return false
	}
	var sum state.Hash
	h.Sum(sum[:0])
	return sum == rec.Hash
}

// hardlink makes it another name of an inode this run already sent, when
// the server can (hardlink@openssh.com). ok false: send it as a file.
// tmp "" with ok: the item was settled already.
func (s *sftpPusher) hardlink(it *item, tp string) (tmp string, ok bool) {
	if it.cur.Nlink < 2 || !s.t.CanHardlink() {
		return "", false
	}
	key := [2]uint64{it.cur.Dev, it.cur.Ino}
	s.mu.Lock()
	l, seen := s.links[key]
	if !seen {
		s.links[key] = &sftpLink{done: make(chan struct{})}
	}
	s.mu.Unlock()
	if !seen {
		return "", false // the first name: sent as a file
	}
	<-l.done
	if l.tpath == "" {
		return "", false
	}
	tmp, err := s.t.PutLink(path.Dir(tp), l.tpath)
	if err != nil {
		s.log.Info("hardlink on the SFTP target failed; sending a copy", "path", tp, "error", err)
		return "", false
	}
	return tmp, true
}

// linkDone publishes where the first name of a hardlinked inode went.
func (s *sftpPusher) linkDone(it *item, tp string) {
	if it.cur.Nlink < 2 {
		return
	}
	s.mu.Lock()
	l, ok := s.links[[2]uint64{it.cur.Dev, it.cur.Ino}]
	s.mu.Unlock()
	if ok {
		select {
		case <-l.done:
		default:
			l.tpath = tp
			close(l.done)
		}
	}
}

func (s *sftpPusher) symlink(it *item) {
	tp, tg, r, ok := s.prepare(it, proto.OpSymlink, false)
	if !ok {
		return
	}
	rec := it.cur
	if r.IsSymlink() {
		if t, err := s.t.Readlink(tp); err == nil && t == it.cur.Target {
			s.settle(it, proto.OpSymlink, outSame, &rec, "")
			return
		}
	}
	s.behind(it, tp, r)
	if r.IsDir() {
		if err := s.t.Rmdir(tp); err != nil {
			s.fail(it, proto.OpSymlink, err)
			return
		}
	}
	tmp, err := s.t.PutSymlink(path.Dir(tp), it.cur.Target)
	if err == nil {
		err = s.replace(tg, tp, tmp, r)
		if err != nil {
			s.t.Discard(tmp)
		}
	}
	if err != nil {
		s.fail(it, proto.OpSymlink, err)
		return
	}
	if !s.ignore.UID || !s.ignore.GID {
		if now, err := s.t.Lstat(tp); err == nil && (now.UID != it.cur.UID || now.GID != it.cur.GID) {
			msg := fmt.Sprintf("%s: symlink owner %d:%d cannot be set over SFTP (no lchown); it is %d:%d on %s", it.path, it.cur.UID, it.cur.GID, now.UID, now.GID, s.peer)
			s.mu.Lock()
			s.res.Problems = append(s.res.Problems, msg)
			s.mu.Unlock()
			// The base stays what this node has, so it is not re-sent forever.
			s.log.Warn("symlink owner cannot be set over SFTP", "path", tp, "want", fmt.Sprintf("%d:%d", it.cur.UID, it.cur.GID))
		}
	}
	s.settle(it, proto.OpSymlink, outUpdated, &rec, "")
}

// mkdir makes sure a directory exists with its owner and mode; its mtime
// comes last (dirMeta).
func (s *sftpPusher) mkdir(it *item) {
	tp, tg, r, ok := s.prepare(it, proto.OpMkdir, true)
	if !ok {
		return
	}
	rd := &remoteDir{mtimeSec: r.MtimeSec}
	switch {
	case r.IsDir():
	case r.IsSymlink() && !(it.hasBase && it.base.Kind == state.KindSymlink):
		s.settle(it, proto.OpMkdir, outRefused, nil, fmt.Sprintf("a symlink stands where the directory %s goes on %s; ocf-csync never writes through a symlinked directory (remove it there)", tp, s.peer))
		s.mu.Lock()
		s.dirs[tp] = &remoteDir{err: &apply.RefusedError{Path: tp, Reason: "it is a symlink on " + s.peer}}
		s.mu.Unlock()
		return
	default:
		s.behind(it, tp, r)
		err := s.clear(tg, tp, r)
		if err == nil {
			err = s.t.Mkdir(tp)
		}
		if err != nil {
			s.fail(it, proto.OpMkdir, err)
			s.mu.Lock()
			s.dirs[tp] = &remoteDir{err: err}
			s.mu.Unlock()
			return
		}
		s.touch(path.Dir(tp))
		rd.created = true
		r = transport.RemoteStat{}
	}
	if !r.Exists || !s.metaMatches(r, &it.cur) {
		a := s.attrs(&it.cur, &r)
		a.SetMtime = false
		if err := s.setAttrs(tp, a); err != nil {
			s.fail(it, proto.OpMkdir, err)
			return
		}
	}
	s.mu.Lock()
	if prev, ok := s.dirs[tp]; ok && prev.err == nil && !rd.created {
		rd = prev // seen on the way to a deletion: keep what it knew
	}
	s.dirs[tp] = rd
	s.mu.Unlock()
}

// dirMeta sets a directory's mode and mtime after its entries are done.
func (s *sftpPusher) dirMeta(it *item) {
	tp, _, err := s.targetPath(it, true)
	if err != nil {
		return // settled by mkdir
	}
	s.mu.Lock()
	rd, ok := s.dirs[tp]
	if ok && rd.err == nil {
		s.metaDirs[tp] = true
	}
	s.mu.Unlock()
	if !ok || rd.err != nil {
		return // mkdir failed or was refused: settled there
	}
	rec := it.cur
	if err := s.setAttrs(tp, s.attrs(&it.cur, nil)); err != nil {
		s.fail(it, proto.OpDirMeta, err)
		return
	}
	out := outUpdated
	if !rd.created && !rd.touched && rd.mtimeSec == time.Unix(0, it.cur.MtimeNs).Unix() && it.hasBase && it.base.SameSyncState(&it.cur, s.ignore) {
		out = outSame
	}
	s.settle(it, proto.OpDirMeta, out, &rec, "")
}

// delete removes what it was on the target: never recursively; a regular
// file goes to the backup directory when the group keeps backups.
func (s *sftpPusher) delete(it *item) {
	// Gone already (perhaps with its directory): nothing to write, so
	// nothing to confine.
	tp, tg, err := s.targetPath(it, it.base.Kind == state.KindDir)
	var r transport.RemoteStat
	if err == nil {
		r, err = s.t.Lstat(tp)
	}
	if err == nil && !r.Exists {
		s.settle(it, proto.OpDelete, outDeleted, nil, "")
		return
	}
	if err == nil {
		err = s.parents(tg, tp, it.path)
	}
	if err != nil {
		s.fail(it, proto.OpDelete, err)
		return
	}
	switch {
	case r.IsDir():
		if err = s.t.Rmdir(tp); err != nil {
			// A temp dir a killed sender left behind is ours to clear.
			if s.t.ClearLeftover(tp) == nil {
				err = s.t.Rmdir(tp)
			}
		}
	case r.IsRegular():
		s.behind(it, tp, r)
		var moved bool
		if moved, err = s.backup(tg, tp, r, true); err == nil && !moved {
			err = s.t.Remove(tp)
		}
	default:
		err = s.t.Remove(tp)
	}
	if err != nil {
		s.fail(it, proto.OpDelete, err)
		return
	}
	s.touch(path.Dir(tp))
	if r.IsDir() {
		s.mu.Lock()
		if rd, ok := s.dirs[tp]; ok {
			rd.touched = false // gone: no mtime to put back
		}
		s.mu.Unlock()
	}
	s.settle(it, proto.OpDelete, outDeleted, nil, "")
}

// backup keeps the target's regular file tp as generation 1 in the
// group's backup directory on the target (layout as apply.BackupPath),
// when the group keeps backups. move: it is about to be deleted, so it is
// renamed there; otherwise it is hardlinked (it is about to be replaced by
// a rename). Either falls back to a copy across file systems.
func (s *sftpPusher) backup(tg *config.GroupView, tp string, r transport.RemoteStat, move bool) (moved bool, err error) {
	if !tg.BackupsEnabled() {
		return false, nil
	}
	return s.keep(tg, tp, r, move)
}

// keep does backup's work; moved: tp was renamed into the backups (a copy
// across file systems leaves it in place).
func (s *sftpPusher) keep(tg *config.GroupView, tp string, r transport.RemoteStat, move bool) (moved bool, err error) {
	gens := tg.BackupGenerations
	dst := apply.BackupPath(tg.BackupDir, tp, 1)
	if err := s.mkdirAll(path.Dir(dst)); err != nil {
		return false, fmt.Errorf("back up %s on %s: %w", tp, s.peer, err)
	}
	if err := s.t.Remove(apply.BackupPath(tg.BackupDir, tp, gens)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("back up %s on %s: drop oldest generation: %w", tp, s.peer, err)
	}
	for g := gens - 1; g >= 1; g-- {
		from := apply.BackupPath(tg.BackupDir, tp, g)
		if st, err := s.t.Lstat(from); err != nil || !st.Exists {
			continue
		}
		if err := s.t.Rename(from, apply.BackupPath(tg.BackupDir, tp, g+1)); err != nil {
			return false, fmt.Errorf("back up %s: rotate generation %d: %w", tp, g, err)
		}
	}
	if move {
		err = s.t.Rename(tp, dst)
	} else {
		err = s.t.Link(tp, dst)
	}
	if err == nil {
		return move, nil
	}
	if errors.Is(err, transport.ErrUnreachable) {
		return false, err
	}
	// Another file system (or no hardlink extension): copy.
	in, oerr := s.t.Open(tp)
	if oerr != nil {
		return false, fmt.Errorf("back up %s on %s: %w", tp, s.peer, oerr)
	}
	defer in.Close()
	tmp, _, perr := s.t.Put(path.Dir(dst), in, transport.Attrs{SetOwner: true, UID: r.UID, GID: r.GID,
		SetMode: true, Mode: r.Mode & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky),
		SetMtime: true, MtimeSec: r.MtimeSec}, false)
	if perr == nil {
		if perr = s.t.Rename(tmp, dst); perr != nil {
			s.t.Discard(tmp)
		}
	}
	if perr != nil {
		return false, fmt.Errorf("back up %s on %s: %w", tp, s.peer, perr)
	}
	return false, nil
}

// mkdirAll makes the backup directory tree (0700, as apply does).
func (s *sftpPusher) mkdirAll(d string) error {
	if d == "/" || d == "." {
		return nil
	}
	r, err := s.t.Lstat(d)
	if err != nil {
		return err
	}
	if r.IsDir() {
		return nil
	}
	if r.Exists {
		return fmt.Errorf("%s is not a directory", d)
	}
	if err := s.mkdirAll(path.Dir(d)); err != nil {
		return err
	}
	if err := s.t.Mkdir(d); err != nil {
		if r, lerr := s.t.Lstat(d); lerr == nil && r.IsDir() {
			return nil // another worker made it
		}
		return err
	}
	return s.t.SetAttrs(d, transport.Attrs{SetMode: true, Mode: 0o700})
}

// catchUp compares the target with this node's records when this node has
// just become active: the previous active node may have pushed there what
// this node never did, or left it behind. Every synced path the target
// lacks or holds differently (type, size, mtime, mode, owner), or for
// which no base says it is ours, is marked dirty; the push then sends it,
// or finds by content hash that the target has it already.
func (s *sftpPusher) catchUp(ctx context.Context, f planFilter) error {
	listings := map[string]map[string]transport.RemoteStat{}
	b := s.o.Store.NewBatch()
	defer b.Cancel()
	now := time.Now().UnixNano()
	marked := 0
	for _, root := range s.o.View.Roots() {
		err := s.o.Store.WalkFiles(root, func(p string, rec *state.FileRecord) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			g := groupFor(s.o.View, p, s.peer)
			if g == nil || g.IsSlave(s.o.View.Name) || (f.groups != nil && !f.groups[g.Name]) || f.skip[g.Name] {
				return nil
			}
			wire, _ := g.WireName(p)
			it := &item{path: p, wire: wire, group: g}
			tp, _, err := s.targetPath(it, rec.Kind == state.KindDir)
			if err != nil {
				return nil // the push reports it if it ever becomes dirty
			}
			dir := path.Dir(tp)
			l, ok := listings[dir]
			if !ok {
				l, err = s.t.ReadDir(dir)
				if err != nil && errors.Is(err, transport.ErrUnreachable) {
					return err
				}
				listings[dir] = l // nil when missing or unreadable: all dirty
			}
			r := l[path.Base(tp)]
			base, hasBase, err := s.o.Store.GetBase(s.peer, p)
			if err != nil {
				return err
			}
			same := statMatches(r, rec) && (rec.Kind == state.KindSymlink || s.metaMatches(r, rec)) &&
				hasBase && base.SameContent(rec)
			if !same {
				b.MarkDirty(s.peer, p, state.DirtyRecord{MarkedNs: now})
				marked++
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("compare SFTP target %s with this node: %w", s.peer, err)
		}
	}
	if err := b.Commit(); err != nil {
		return fmt.Errorf("mark paths for SFTP target %s: %w", s.peer, err)
	}
	s.log.Info("newly active: compared the SFTP target with this node", "pending", marked)
	return nil
}

// sftpUnsupported is what compare, diff and fetch say for an SFTP target.
func sftpUnsupported(peer, what string) error {
	return fmt.Errorf("peer %s is an SFTP receive-only target (ssh sftp-hosts): it runs no ocf-csync, so %s cannot ask it; compare by hand, e.g. with sftp or rsync -n", peer, what)
}
