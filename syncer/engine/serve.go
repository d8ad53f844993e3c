package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"ocf-csync/syncer/apply"
	"ocf-csync/syncer/config"
	"ocf-csync/syncer/delta"
	"ocf-csync/syncer/proto"
	"ocf-csync/syncer/scan"
	"ocf-csync/syncer/state"
)

// ServeOptions drive the receiver (`ocf-csync serve`).
type ServeOptions struct {
	View   *config.NodeView
	Config *config.Config
	// Store is the state database; when nil, OpenStore opens it once the
	// sender has authenticated, so an unauthenticated connection never
	// holds the lock that check, sync and the daemon wait for.
	Store     *state.Store
	OpenStore func(ctx context.Context) (*state.Store, error)
	// KeepStoreOpen leaves a store from OpenStore open when Serve returns
	// (tests); by default Serve closes it.
	KeepStoreOpen bool
	In            io.Reader
	Out           io.Writer
	Log           *slog.Logger
	// HandshakeTimeout bounds the whole handshake; IdleTimeout ends a
	// session in which the sender sends nothing (not even a Keepalive)
	// for that long. Zero means the defaults below.
	HandshakeTimeout time.Duration
	IdleTimeout      time.Duration
	// CheckPeer, when set, vets the sender's claimed node name before any
	// group proof is made (the SSH_CONNECTION check, CheckPeerAddress).
	CheckPeer func(claimed string) error
	// AcceptHandoff, if set, decides whether a handoff record the sender
	// claims is recorded (the failover decision lives above the engine);
	// a non-nil error refuses it with that message.
	AcceptHandoff func(st *state.Store, h state.Handoff) error
	// Quit, when it closes, ends a persistent session while it idles
	// between batches (the daemon that runs this serve stops).
	Quit <-chan struct{}
}

// Deadlines of a session on the receiver. The idle one is long because a
// sender computing a delta of a huge unchanged file may go minutes without
// filling a frame; a sender keeping a session open between batches sends
// Keepalive frames instead.
const (
	DefaultHandshakeTimeout = 30 * time.Second
	DefaultIdleTimeout      = 10 * time.Minute
)

// Acks wait until the changes they report are durable; these bound how
// much is applied before one syncfs makes a whole group of files durable.
const (
	ackBatchFiles = 1000
	ackBatchBytes = 256 << 20
)

type receiver struct {
	o       ServeOptions
	c       *proto.Conn
	log     *slog.Logger
	sender  string
	dry     bool
	groups  map[string]*config.GroupView // only the groups the sender proved
	targets map[string]*apply.Target

	acks     []proto.Ack
	ackBytes int64
	flight   *flight // acks being made durable in the background
	// noneDirtyBack: this node had nothing dirty toward the sender when the
	// session took the state db (which it holds until release).
	noneDirtyBack bool
	// noBases: no base with the sender was recorded when the session took
	// the state db, so agreedBefore has nothing to find.
	noBases   bool
	copyBuf   []byte     // reused by every whole-file copy
	sigs      *sigWorker // answers SigRequests (lazily started)
	fastSig   bool       // the sender reads XXH3 signatures
	batch     *state.Batch
	pending   actionQueue                 // actions of changes not yet acknowledged
	queued    []state.QueuedAction        // actions stored durably, run at EndBatch
	conflicts map[string]bool             // recorded conflicts with the sender (lazy)
	dirMtimes map[string]dirTouch         // dirs we changed, with their mtime before
	dirWant   map[string]state.FileRecord // directory metadata the sender sent
	roots     map[string]*rootVerdict     // include roots judged in this session
	canWrite  bool                        // the store took writes when the first op came
	unclean   bool                        // an earlier owner of the db died (state.Unclean)
	batches   int                         // EndBatch requests answered
	// session: the sender keeps the session open between batches
	// (FlagSession); the state db is taken per batch (take, release).
	session bool
	given   *state.Store // ServeOptions.Store, or one kept open (KeepStoreOpen)
	owned   bool         // o.Store was opened by take and is closed by release
	told    bool         // an Error went to the sender
}

// dirTouch is a directory whose entries a session changed.
type dirTouch struct {
	mtimeNs int64
	g       *config.GroupView // a proved group that syncs the directory
}

// authorizeFor returns the handshake's authorize callback: a group is
// offered a proof only if this node is in it, the sender is one of its
// hosts and not a slave there, and the sender's claim passed check.
func authorizeFor(view *config.NodeView, check func(string) error) func(sender, group string) ([]byte, error) {
	var checked = map[string]error{}
	return func(sender, group string) ([]byte, error) {
		if check != nil {
			err, ok := checked[sender]
			if !ok {
				err = check(sender)
				checked[sender] = err
			}
			if err != nil {
				return nil, err
			}
		}
		g := view.Group(group)
		if g == nil {
			return nil, fmt.Errorf("group %s is unknown here, or node %s is not one of its hosts", group, view.Name)
		}
		if _, member := g.Host(sender); !member {
			return nil, fmt.Errorf("sender %s is not a host of group %s", sender, group)
		}
		if g.IsSlave(sender) {
			return nil, fmt.Errorf("permission denied for slave: %s is a slave in group %s and may not push", sender, group)
		}
		return proto.ReadKeyFile(g.Key)
	}
}

// Serve runs the receiver side of one session on In/Out.
func Serve(ctx context.Context, o ServeOptions) (err error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	dl := &deadlines{}
	defer dl.stop()
	r := &receiver{o: o, c: proto.NewConn(dl.reader(o.In), dl.writer(o.Out)), log: o.Log, groups: map[string]*config.GroupView{},
		targets:   map[string]*apply.Target{},
		dirMtimes: map[string]dirTouch{}, dirWant: map[string]state.FileRecord{}, roots: map[string]*rootVerdict{}}

	dl.absolute(time.Now().Add(o.HandshakeTimeout), "handshake deadline: the sender did not complete the handshake within "+o.HandshakeTimeout.String())
	sender, proved, flags, err := proto.ServerHandshake(r.c, o.View.Name, authorizeFor(o.View, o.CheckPeer))
	if err != nil {
		return err
	}
	dl.idle(o.IdleTimeout, fmt.Sprintf("idle deadline: sender %s sent nothing (or read nothing) for %v; session ended", sender, o.IdleTimeout))
	// The handshake proved these groups, and authorize admitted only
	// groups where the sender is a non-slave host; every later operation is
	// checked against this set alone (resolve).
	for _, name := range proved {
		if g := o.View.Group(name); g != nil {
			r.groups[name] = g
		}
	}
	r.sender = sender
	r.dry = flags&proto.FlagDryRun != 0
	r.fastSig = flags&proto.FlagFastSig != 0
	r.log = r.log.With("peer", sender)

	// A persistent session (FlagSession: the daemon's session per peer)
	// takes the state db per batch and holds nothing while it idles; a
	// one-shot session takes it now, as it works right away.
	r.session = flags&proto.FlagSession != 0
	r.given, r.o.Store = o.Store, nil
	if !r.session {
		if err := r.take(ctx); err != nil {
			return err
		}
	}
	err = r.loop(ctx)
	if serr := r.sigs.finish(err == nil); err == nil {
		err = serr
	}
	if rerr := r.release(err); err == nil {
		err = rerr
	}
	if err != nil {
		r.tell(err)
	}
	return err
}

// tell sends err to the sender, once, unless it came from the sender or
// the sender was told already: otherwise it only sees the connection close.
func (r *receiver) tell(err error) {
	var perr *proto.Error
	var told *toldError
	if r.told || errors.As(err, &perr) || errors.As(err, &told) {
		return
	}
	r.told = true
	_ = r.c.Send(proto.Error{Message: fmt.Sprintf("%s: %v", r.o.View.Name, err)})
	_ = r.c.Flush()
}

// toldError is an error the sender was already told about.
type toldError struct{ error }

func (e *toldError) Unwrap() error { return e.error }

// take makes the state db this session's until release: the one the
// caller gave (the daemon's), or one opened now.
func (r *receiver) take(ctx context.Context) error {
	if r.o.Store != nil {
		return nil
	}
	st := r.given
	if st == nil {
		var err error
		if st, err = r.o.OpenStore(ctx); err != nil {
			_ = r.c.Send(proto.Error{Message: fmt.Sprintf("receiver %s: %v", r.o.View.Name, err)})
			_ = r.c.Flush()
			return &toldError{err}
		}
		if r.o.KeepStoreOpen {
			r.given = st
		} else {
			r.owned = true
		}
	}
	r.o.Store = st
	if r.dry {
		return nil
	}
	if u, ok, uerr := st.Unclean(); uerr == nil && ok {
		r.unclean = true
		if !u.TempsRemoved && r.cleanLeftovers() {
			u.TempsRemoved = true
			if perr := st.PutUnclean(u); perr != nil {
				r.log.Warn("note the leftover temp files removed", "error", perr)
			}
		}
	}
	r.batch = st.NewBatch()
	// Nothing pending toward the sender: no path needs its dirty entry
	// cleared, and a delete per received file is not written for nothing.
	if peers, err := st.DirtyPeers(); err == nil && !slices.Contains(peers, r.sender) {
		r.noneDirtyBack = true
	}
	// No base with the sender: nothing was agreed before, and a read per
	// received file (a tenth of a new node's receive time) is skipped.
	if has, err := st.HasBases(r.sender); err == nil {
		r.noBases = !has
	}
	// Actions a crashed run left behind run with this session's.
	if err := st.Actions(func(a state.QueuedAction) error {
		r.queued = append(r.queued, a)
		return nil
	}); err != nil {
		r.log.Error("read queued actions", "error", err)
	}
	return nil
}

// release finishes what the session did with the state db (every ack
// durable, roots and records committed, actions run) and lets go of it;
// loopErr is how the session's work ended.
func (r *receiver) release(loopErr error) error {
	if r.o.Store == nil {
		return nil
	}
	err := r.flushAcks()
	r.recordRoots()
	if r.batch != nil {
		if cerr := r.batch.CommitDurable(); err == nil && cerr != nil {
			err = cerr
		}
		r.batch = nil
	}
	if e := cmp.Or(loopErr, err); e != nil {
		// Tell the sender now, not after the actions ran.
		r.tell(e)
	}
	// The files changed whatever ended the session: their actions run now
	// (csync2 runs them at the end of the process, too).
	if len(r.queued) > 0 {
		runQueued(r.o.Store, r.log, r.o.View.Name, r.queued)
		r.queued = nil
	}
	if err == nil && loopErr == nil && r.unclean && r.batches > 0 {
		// The sender's retry found what the dead owner applied.
		if cerr := r.o.Store.ClearUnclean(); cerr != nil {
			r.log.Warn("clear the unclean-end record", "error", cerr)
		}
	}
	if r.owned {
		if cerr := r.o.Store.Close(); err == nil && cerr != nil {
			err = cerr
		}
		r.owned = false
	}
	r.o.Store = nil
	r.unclean, r.noneDirtyBack, r.noBases, r.canWrite, r.batches = false, false, false, false, 0
	r.conflicts, r.roots = nil, map[string]*rootVerdict{}
	r.targets = map[string]*apply.Target{}
	return err
}

// cleanLeftovers removes the temp files an earlier owner of the state db
// left when it died mid-write (kill -9, power loss): below every include
// root of the groups the sender proved, their backup directories, and in
// the tempdir. Only files from before this process took the db go: any
// later one is a write in progress.
// It reports whether it looked below every root of this node (the sender
// proved every group).
func (r *receiver) cleanLeftovers() bool {
	cutoff := r.o.Store.OwnedSince()
	n := 0
	for _, g := range r.groups {
		t := r.target(g)
		dirs := g.Roots()
		for _, d := range []string{r.o.Config.Tempdir, g.BackupDir} {
			if d != "" {
				dirs = append(dirs, d) // a backup is staged under a temp name too
			}
		}
		for _, root := range dirs {
			_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
				if err != nil || !d.IsDir() {
					return nil
				}
				k, cerr := t.CleanTempsBefore(p, cutoff)
				n += k
				if cerr != nil {
					r.log.Warn("remove leftover temp files", "dir", p, "error", cerr)
				}
				return nil
			})
		}
	}
	if n > 0 {
		r.log.Warn("removed temp files left by an earlier run that did not end cleanly", "count", n)
	}
	return len(r.groups) == len(r.o.View.Groups)
}

// unrecorded reports whether this node holds cur at path (nil: nothing)
// without having recorded it: after an owner of the db died, a copy equal
// to what the sender sends again (or a deletion it repeats) may be one that
// owner applied but never recorded, and its actions never ran.
func (r *receiver) unrecorded(path string, cur *state.FileRecord) bool {
	if !r.unclean || (cur != nil && cur.Kind == state.KindDir) {
		return false
	}
	rec, ok, err := r.o.Store.GetFile(path)
	if cur == nil { // gone: a deletion that owner applied but never recorded
		return err == nil && ok && rec.Kind != state.KindDir
	}
	return err == nil && (!ok || !rec.SameContent(cur))
}

func (r *receiver) loop(ctx context.Context) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		m, err := r.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("sender closed the connection before the end of the session")
			}
			return err
		}
		switch m.(type) {
		case *proto.Op, *proto.SigRequest, *proto.EndBatch, *proto.Request, *proto.Handoff:
			if err := r.take(ctx); err != nil {
				return err
			}
		}
		switch m := m.(type) {
		case *proto.Op:
			if err := r.op(m); err != nil {
				return err
			}
		case *proto.SigRequest:
			if err := r.sig(m); err != nil {
				return err
			}
		case *proto.EndBatch:
			if err := r.endBatch(m); err != nil {
				return err
			}
			if r.session {
				// Between batches a persistent session holds nothing:
				// this node's own status, sync and check go ahead.
				if err := r.release(nil); err != nil {
					return err
				}
			}
		case *proto.Request:
			if err := r.request(m); err != nil {
				return err
			}
		case *proto.Handoff:
			if err := r.handoff(m); err != nil {
				return err
			}
			if r.session && m.Clean {
				// The final sync's last word: no batch follows.
				if err := r.release(nil); err != nil {
					return err
				}
			}
		case *proto.Keepalive:
		case *proto.Bye:
			return nil
		case *proto.Error:
			return m
		default:
			return fmt.Errorf("protocol: unexpected %s from sender", m.Type())
		}
	}
}

// errQuit ends a persistent session between batches when the daemon
// running this serve stops.
var errQuit = errors.New("the daemon of this node is stopping: session ended between batches (the sender opens a new one)")

// next reads the sender's next message. A persistent session idling
// between batches also ends when Quit closes.
func (r *receiver) next() (proto.Message, error) {
	if !r.session || r.o.Store != nil || r.o.Quit == nil {
		return r.c.Recv()
	}
	type got struct {
		m   proto.Message
		err error
	}
	ch := make(chan got, 1)
	go func() {
		m, err := r.c.Recv()
		ch <- got{m, err}
	}()
	select {
	case g := <-ch:
		return g.m, g.err
	case <-r.o.Quit:
		return nil, errQuit
	}
}

func (r *receiver) target(g *config.GroupView) *apply.Target {
	if t, ok := r.targets[g.Name]; ok {
		return t
	}
	t := apply.New(apply.Options{
		Ignore: r.o.Config.Ignore,
		// Only the include set itself: a directory on the way to an
		// include (etc for include etc/ha.d/x, every home for
		// home/*/public_html) is never chmod-, chown-, utime- or rmdir-ed
		// for a peer; a missing one is created by MkdirParents.
		Allowed: func(p string, isDir bool) bool {
			synced, _ := g.Match(p, isDir)
			return synced
		},
		TempDir:   r.o.Config.Tempdir,
		Backup:    apply.Backup{Dir: g.BackupDir, Generations: g.BackupGenerations},
		Logger:    r.log,
		DeferSync: true,
		CacheDir:  true,
	})
	r.targets[g.Name] = t
	return t
}

// resolve maps a wire name to a local path the receiver may touch: the
// group must be one the sender proved in this session (and is a non-slave
// host of), and the path must be in that group's include set here.
func (r *receiver) resolve(group string, wire []byte) (*config.GroupView, string, *apply.Target, error) {
	g := r.groups[group]
	if g == nil {
		why := fmt.Sprintf("group %s is not a group of %s", group, r.o.View.Name)
		if r.o.View.Group(group) != nil {
			why = fmt.Sprintf("sender %s did not prove group %s in this session", r.sender, group)
		}
		return nil, "", nil, errors.New(why)
	}
	local, err := g.LocalPath(string(wire))
	if err != nil {
		return nil, "", nil, err
	}
	t := r.target(g)
	if err := t.Check(local); err != nil {
		return nil, "", nil, err
	}
	return g, local, t, nil
}

// current describes the local copy, reusing the recorded hash when the stat
// fields did not change since this node last recorded the file.
func (r *receiver) current(t *apply.Target, path string) (state.FileRecord, bool, error) {
	st, ok, err := t.Lstat(path)
	if err != nil || !ok {
		return st, false, err
	}
	if st.Kind != state.KindReg {
		return st, true, nil
	}
	if rec, ok, err := r.o.Store.GetFile(path); err == nil && ok && !rec.StatChanged(&st) {
		st.Hash = rec.Hash
		return st, true, nil
	}
	return t.Current(path)
}

// matchesBase reports whether our copy is the version the sender builds on,
// so its change may replace it.
func (r *receiver) matchesBase(op *proto.Op, g *config.GroupView, local string, cur *state.FileRecord, exists bool) bool {
	if op.HasBase && op.Base.Kind != state.KindNone {
		if !exists {
			return false
		}
		base := op.Base.FileRecord()
		return cur.SameContent(&base)
	}
	if !exists {
		return true
	}
	// The sender never agreed on this path with us: a node that just took
	// over from another active node. Our copy is not a change of ours to
	// protect when it is exactly what some node of the group synced to us.
	for _, h := range g.Hosts {
		if h.Name == r.o.View.Name {
			continue
		}
		if b, ok, err := r.o.Store.GetBase(h.Name, local); err == nil && ok && cur.SameContent(&b) {
			return true
		}
	}
	return false
}

// addsData reports whether an op can take space on the receiver's disks.
func addsData(k proto.OpKind) bool {
	switch k {
	case proto.OpDelete, proto.OpMeta, proto.OpDirMeta:
		return false
	}
	return true
}

// agreedBefore reports whether rec is the version this node last agreed on
// with the sender for path.
func (r *receiver) agreedBefore(path string, rec *state.FileRecord) bool {
	if r.noBases {
		return false
	}
	b, ok, err := r.o.Store.GetBase(r.sender, path)
	return err == nil && ok && b.Kind != state.KindNone && b.SameContent(rec)
}

func (r *receiver) queueAck(a proto.Ack, bytes int64) error {
	r.acks = append(r.acks, a)
	r.ackBytes += bytes
	if len(r.acks) >= ackBatchFiles || r.ackBytes >= ackBatchBytes {
		return r.startFlight()
	}
	return nil
}

// syncTarget makes a target's received files durable (a variable so a
// test can make it fail).
var syncTarget = (*apply.Target).Sync

// flight is a group of acks whose changes a background goroutine makes
// durable while the receiver applies the next ones: the wait for the disk
// overlaps work instead of stopping the session. The goroutine keeps the
// order a crash needs: the files first (syncfs of the targets), then the
// actions (durable, so a record never exists without its action), then the
// records (durable). The acks go out only once it is done.
type flight struct {
	acks   []proto.Ack
	queued []state.QueuedAction // the actions it stored
	done   chan error
}

// startFlight hands the acks so far, their actions and their records to a
// background goroutine; first the previous flight lands, so at most one is
// in the air and records are committed in order.
func (r *receiver) startFlight() error {
	if err := r.landFlight(); err != nil {
		return err
	}
	if r.dry {
		return r.flushAcks()
	}
	f := &flight{acks: r.acks, done: make(chan error, 1)}
	pending, batch := r.pending, r.batch
	r.batch = r.o.Store.NewBatch()
	r.acks, r.ackBytes, r.pending = nil, 0, actionQueue{}
	targets := make([]*apply.Target, 0, len(r.targets))
	for _, t := range r.targets {
		targets = append(targets, t)
	}
	st := r.o.Store
	go func() {
		f.done <- func() error {
			for _, t := range targets {
				if err := syncTarget(t); err != nil {
					batch.Cancel()
					return fmt.Errorf("make received files durable: %w", err)
				}
			}
			q, err := pending.persist(st)
			f.queued = q
			if err != nil {
				batch.Cancel()
				return err
			}
			if err := batch.CommitDurable(); err != nil {
				return fmt.Errorf("record received files: %w", err)
			}
			return nil
		}()
	}()
	r.flight = f
	return r.c.Flush()
}

// landFlight waits for the flight in the air, if any, and sends its acks.
func (r *receiver) landFlight() error {
	f := r.flight
	if f == nil {
		return nil
	}
	r.flight = nil
	err := <-f.done
	r.queued = append(r.queued, f.queued...)
	if err != nil {
		return err
	}
	for _, a := range f.acks {
		if err := r.c.Send(a); err != nil {
			return err
		}
	}
	return nil
}

// flushAcks makes everything applied so far durable, then reports it:
// through a flight, so a failure on the way leaves the same state as one
// in the background (nothing recorded of what was not made durable).
func (r *receiver) flushAcks() error {
	if r.dry {
		// Nothing was written: nothing to make durable.
		if err := r.landFlight(); err != nil {
			return err
		}
		for _, a := range r.acks {
			if err := r.c.Send(a); err != nil {
				return err
			}
		}
		r.acks, r.ackBytes = r.acks[:0], 0
		return r.c.Flush()
	}
	if len(r.acks) > 0 {
		if err := r.startFlight(); err != nil {
			return err
		}
	}
	if err := r.landFlight(); err != nil {
		return err
	}
	return r.c.Flush()
}

// drain skips the content frames of an op that will not be applied.
func (r *receiver) drain(op *proto.Op) error {
	if op.Content == proto.ContentNone {
		return nil
	}
	dr := &dataReader{c: r.c, seq: op.Seq}
	_, err := io.Copy(io.Discard, dr)
	return err
}

func (r *receiver) refuse(op *proto.Op, status proto.AckStatus, msg string) error {
	if err := r.drain(op); err != nil {
		return err
	}
	r.log.Warn("not applied", "path", string(op.Path), "status", status.String(), "reason", msg)
	return r.queueAck(proto.Ack{Seq: op.Seq, Status: status, Message: msg}, 0)
}

func (r *receiver) conflict(op *proto.Op, g *config.GroupView, local string, cur *state.FileRecord, exists bool) error {
	if err := r.drain(op); err != nil {
		return err
	}
	msg := "changed on both sides since they last agreed"
	switch {
	case !exists:
		msg = "deleted here, changed on the sender"
	case op.Kind == proto.OpDelete:
		msg = "deleted on the sender, changed here"
	}
	if !r.dry {
		c := state.Conflict{Path: local, Peer: r.sender, Group: g.Name, Local: *cur, Remote: op.New.FileRecord(),
			RemoteExists: op.Kind != proto.OpDelete, DetectedNs: time.Now().UnixNano(), Reason: msg}
		if err := r.o.Store.PutConflict(c); err != nil {
			r.log.Error("record conflict", "path", local, "error", err)
		} else if r.conflicts != nil {
			r.conflicts[local] = true
		}
	}
	a := proto.Ack{Seq: op.Seq, Status: proto.AckConflict, Message: msg, HasCurrent: exists}
	if exists {
		a.Current = proto.RecordFrom(*cur)
	}
	return r.queueAck(a, 0)
}

// touchDir remembers a directory's mtime before we change its entries, so
// it can be put back when the sender does not send a new one. Only a
// directory inside g's include set: one above it is never changed on
// purpose (its mtime moves with its entries, as with any local write).
func (r *receiver) touchDir(g *config.GroupView, path string) {
	dir := filepath.Dir(path)
	if _, ok := r.dirMtimes[dir]; ok {
		return
	}
	if synced, _ := g.Match(dir, true); !synced {
		return
	}
	if st, err := scan.Lstat(dir); err == nil && st.Kind == state.KindDir {
		r.dirMtimes[dir] = dirTouch{mtimeNs: st.MtimeNs, g: g}
	}
}

func (r *receiver) op(op *proto.Op) error {
	if !r.dry && !r.canWrite {
		// A change this node cannot record would be applied unrecorded,
		// and its actions would never run: take none.
		if err := r.o.Store.Writable(); err != nil {
			msg := fmt.Sprintf("%s takes no changes: %v", r.o.View.Name, err)
			_ = r.c.Send(proto.Error{Message: msg})
			_ = r.c.Flush()
			return errors.New(msg)
		}
		r.canWrite = true
	}
	g, local, t, err := r.resolve(op.Group, op.Path)
	if err != nil {
		return r.refuse(op, proto.AckRefused, fmt.Sprintf("%s: %v", r.o.View.Name, err))
	}
	if !r.dry && addsData(op.Kind) {
		// Stop while the state db can still record what was applied.
		if err := r.o.Store.Room(); err != nil {
			return r.refuse(op, proto.AckError, fmt.Sprintf("%s: not applied: %v", r.o.View.Name, err))
		}
	}
	if msg := r.checkRoot(g, local); msg != "" {
		// Logged once per root by checkRoot, not once per file.
		if err := r.drain(op); err != nil {
			return err
		}
		return r.queueAck(proto.Ack{Seq: op.Seq, Status: proto.AckRefused, Message: msg}, 0)
	}
	cur, exists, err := r.current(t, local)
	if err != nil {
		return r.refuse(op, proto.AckError, err.Error())
	}
	newRec := op.New.FileRecord()
	ig := r.o.Config.Ignore
	refuseDevices := r.o.Config.SafetyFor(g.Name).RefuseDevices
	if refuseDevices && op.Kind != proto.OpDelete && (isDevice(newRec.Kind) || (exists && isDevice(cur.Kind))) {
		d := &newRec
		if !isDevice(d.Kind) {
			d = &cur
		}
		return r.refuse(op, proto.AckRefused, fmt.Sprintf("%s: devices refuse (safety block of group %s): no device node is created or changed here (%s %d:%d at %s)",
			r.o.View.Name, g.Name, d.Kind, unix.Major(d.Rdev), unix.Minor(d.Rdev), local))
	}

	if op.Kind == proto.OpDelete {
		if !exists {
			return r.done(op, g, local, nil, proto.AckSame, r.unrecorded(local, nil), 0)
		}
		if !op.Forced && !r.matchesBase(op, g, local, &cur, exists) {
			return r.conflict(op, g, local, &cur, exists)
		}
		if !r.dry {
			r.touchDir(g, local)
			if err := t.Delete(local); err != nil {
				return r.refuse(op, proto.AckError, err.Error())
			}
			r.rootDeleted(local)
		}
		return r.done(op, g, local, nil, proto.AckOK, true, 0)
	}

	sameObject := exists && cur.SameContent(&newRec)
	if op.Kind == proto.OpDirMeta {
		sameObject = exists && cur.Kind == state.KindDir
	}
	if sameObject {
		if err := r.drain(op); err != nil {
			return err
		}
		status := proto.AckSame
		if !cur.SameMeta(&newRec, ig) || op.Kind == proto.OpDirMeta {
			if !r.dry {
				if op.Kind == proto.OpDirMeta || cur.Kind == state.KindDir {
					err = t.SetDirMeta(local, newRec)
					r.dirWant[local] = newRec
				} else {
					err = t.SetMeta(local, newRec)
				}
				if err != nil {
					return r.refuse(op, proto.AckError, err.Error())
				}
			}
			status = proto.AckOK
		}
		return r.done(op, g, local, &cur, status, r.unrecorded(local, &cur), 0)
	}
	if op.Kind == proto.OpMeta {
		// The sender thinks we hold its content; we do not.
		if op.Forced || r.matchesBase(op, g, local, &cur, exists) {
			return r.queueAck(proto.Ack{Seq: op.Seq, Status: proto.AckRetry, Message: "content differs: send it whole"}, 0)
		}
		return r.conflict(op, g, local, &cur, exists)
	}
	if !op.HasBase && !op.Forced && r.agreedBefore(local, &newRec) {
		// The sender lost its record of what we agreed (a rebuilt or new
		// state db) and offers that very version again: our copy is a
		// later change of this node's, not a conflict. Keep it; the
		// sender records the version as agreed.
		if err := r.drain(op); err != nil {
			return err
		}
		return r.queueAck(proto.Ack{Seq: op.Seq, Status: proto.AckSame}, 0)
	}
	if !op.Forced && !r.matchesBase(op, g, local, &cur, exists) {
		return r.conflict(op, g, local, &cur, exists)
	}
	// A hardlink's other name is confined like the path itself, before
	// anything (even a parent directory) is created.
	var linkTo string
	if op.Kind == proto.OpHardlink {
		var lerr error
		if linkTo, lerr = g.LocalPath(string(op.LinkTo)); lerr == nil {
			lerr = t.Check(linkTo)
		}
		if msg := r.checkRoot(g, linkTo); lerr == nil && msg != "" {
			if err := r.drain(op); err != nil {
				return err
			}
			return r.queueAck(proto.Ack{Seq: op.Seq, Status: proto.AckRefused, Message: msg}, 0)
		}
		if lerr != nil {
			return r.refuse(op, proto.AckRefused, fmt.Sprintf("%s refuses a hardlink to %q: %v", r.o.View.Name, op.LinkTo, lerr))
		}
		if st, err := scan.Lstat(linkTo); err == nil && refuseDevices && isDevice(st.Kind) {
			return r.refuse(op, proto.AckRefused, fmt.Sprintf("%s: devices refuse (safety block of group %s): no second name for the device node %s", r.o.View.Name, g.Name, linkTo))
		}
	}
	if r.dry {
		if err := r.drain(op); err != nil {
			return err
		}
		return r.done(op, g, local, &newRec, proto.AckOK, true, 0)
	}
	r.touchDir(g, local)
	if err := t.MkdirParents(local); err != nil {
		return r.refuse(op, proto.AckError, err.Error())
	}
	if exists && cur.Kind == state.KindDir && newRec.Kind != state.KindDir {
		if err := t.Delete(local); err != nil {
			return r.refuse(op, proto.AckError, err.Error())
		}
	}
	var n int64
	switch op.Kind {
	case proto.OpMkdir, proto.OpDirMeta:
		if exists && cur.Kind != state.KindDir {
			if err := t.Delete(local); err != nil {
				return r.refuse(op, proto.AckError, err.Error())
			}
		}
		err = t.Mkdir(local, newRec)
		if op.Kind == proto.OpDirMeta && err == nil {
			err = t.SetDirMeta(local, newRec)
			r.dirWant[local] = newRec
		}
	case proto.OpSymlink:
		err = t.Symlink(local, newRec)
	case proto.OpSpecial:
		err = t.Special(local, newRec)
	case proto.OpHardlink:
		err = t.Link(local, linkTo, newRec)
	case proto.OpFile:
		newRec, n, err = r.receiveFile(op, t, local, newRec)
		if errors.Is(err, errRetry) {
			return r.queueAck(proto.Ack{Seq: op.Seq, Status: proto.AckRetry, Message: err.Error()}, 0)
		}
	default:
		err = fmt.Errorf("unknown operation %s", op.Kind)
	}
	if err != nil {
		if op.Kind != proto.OpFile {
			return r.refuse(op, proto.AckError, err.Error())
		}
		return r.queueAck(proto.Ack{Seq: op.Seq, Status: proto.AckError, Message: err.Error()}, 0)
	}
	return r.done(op, g, local, &newRec, proto.AckOK, true, n)
}

var errRetry = errors.New("content did not verify; send it whole")

func isDevice(k state.Kind) bool { return k == state.KindChr || k == state.KindBlk }

// receiveFile writes the content frames of op into place.
func (r *receiver) receiveFile(op *proto.Op, t *apply.Target, local string, rec state.FileRecord) (state.FileRecord, int64, error) {
	dr := &dataReader{c: r.c, seq: op.Seq}
	var basis *os.File
	if op.Content == proto.ContentDelta {
		var err error
		basis, err = t.OpenBasis(local)
		if err != nil {
			io.Copy(io.Discard, dr)
			return rec, 0, fmt.Errorf("%w (%v)", errRetry, err)
		}
		// The last close of a replaced big basis frees its blocks and
		// page cache (0.4 s for 1 GiB): not on the session's path.
		defer func() { go basis.Close() }()
	}
	// Nothing beyond the size the sender announced is written: a small
	// delta could otherwise expand into any size (copies of the basis),
	// and a whole file could fill the disk.
	fill := func(w io.Writer) error {
		var err error
		if basis != nil {
			err = delta.PatchLimit(basis, dr, w, rec.Size)
		} else {
			var n int64
			if r.copyBuf == nil {
				r.copyBuf = make([]byte, 32<<10)
			}
			n, err = io.CopyBuffer(w, io.LimitReader(dr, rec.Size), r.copyBuf)
			if err == nil && n == rec.Size {
				var one [1]byte
				if k, _ := io.ReadFull(dr, one[:]); k > 0 {
					err = fmt.Errorf("content longer than the %d bytes announced (changed while it was sent?)", rec.Size)
				}
			}
		}
		// Read to the end of the stream whatever happened, so the session
		// stays in step.
		if _, derr := io.Copy(io.Discard, dr); err == nil {
			err = derr
		}
		return err
	}
	err := t.WriteFileExpect(local, rec, fill, func() state.Hash { return dr.sum })
	if errors.Is(err, apply.ErrHashMismatch) || (err != nil && basis != nil && dr.ended) {
		return rec, dr.n, fmt.Errorf("%w (%v)", errRetry, err)
	}
	if err != nil {
		if !dr.ended {
			if _, derr := io.Copy(io.Discard, dr); derr != nil {
				return rec, dr.n, derr
			}
		}
		return rec, dr.n, err
	}
	rec.Hash = dr.sum
	return rec, dr.n, nil
}

// hasConflict reports whether a conflict with the sender is recorded for
// path; the set is read once per session, so a forced push of a big tree
// does not pay a durable delete per file.
func (r *receiver) hasConflict(path string) bool {
	if r.conflicts == nil {
		r.conflicts = map[string]bool{}
		err := r.o.Store.Conflicts(func(c state.Conflict) error {
			if c.Peer == r.sender {
				r.conflicts[c.Path] = true
			}
			return nil
		})
		if err != nil {
			r.log.Warn("read conflicts", "error", err)
		}
	}
	return r.conflicts[path]
}

// done records an applied (or already equal) op and queues its ack.
func (r *receiver) done(op *proto.Op, g *config.GroupView, local string, rec *state.FileRecord, status proto.AckStatus, changed bool, n int64) error {
	a := proto.Ack{Seq: op.Seq, Status: status}
	if r.dry {
		return r.queueAck(a, n)
	}
	if op.Kind == proto.OpDelete {
		r.batch.DeleteFile(local)
		r.batch.DeleteBase(r.sender, local)
	} else {
		now, ok, err := r.target(g).Lstat(local)
		if err == nil && !ok {
			err = fmt.Errorf("%s is gone right after it was applied", local)
		}
		if err != nil {
			return r.queueAck(proto.Ack{Seq: op.Seq, Status: proto.AckError, Message: err.Error()}, n)
		}
		if now.Kind == state.KindReg && rec != nil {
			now.Hash = rec.Hash
		}
		r.batch.PutFile(local, &now)
		r.batch.PutBase(r.sender, local, &now)
		a.HasCurrent = true
		a.Current = proto.RecordFrom(now)
	}
	if !r.noneDirtyBack {
		r.batch.ClearDirty(r.sender, local)
	}
	if g.IsSlave(r.o.View.Name) {
		// A slave's own change to this path is overwritten now: nothing
		// of it is left to report as pending toward any peer (csync2's FLUSH).
		for _, h := range g.Peers() {
			r.batch.ClearDirty(h.Name, local)
		}
	}
	if r.hasConflict(local) {
		// Both sides agree again (the sender's version won, or someone
		// made them equal): the conflict is settled here too.
		if err := r.o.Store.DeleteConflict(local, r.sender); err != nil {
			r.log.Warn("clear settled conflict", "path", local, "error", err)
		}
	}
	if changed && op.Kind != proto.OpDirMeta {
		r.pending.add(g, local, false)
	}
	return r.queueAck(a, n)
}

// sig queues a SigRequest for the signature goroutine, which answers them
// in order while this loop goes on applying: the delta of a big file then
// arrives (and is patched) while its signature is still being computed.
func (r *receiver) sig(m *proto.SigRequest) error {
	g, local, t, err := r.resolve(m.Group, m.Path)
	if err == nil && r.checkRoot(g, local) != "" {
		err = errors.New("include root refused") // no basis: the op that follows is refused
	}
	j := sigJob{seq: m.Seq}
	if err == nil {
		j.local, j.t = local, t
	}
	if r.sigs == nil {
		r.sigs = &sigWorker{jobs: make(chan sigJob, 64), done: make(chan struct{})}
		go r.sigs.run(r)
	}
	if err := r.sigs.failed(); err != nil {
		return err
	}
	r.sigs.pending.Add(1)
	r.sigs.jobs <- j
	return nil
}

// sigJob is one SigRequest to answer; t is nil when there is no basis to
// offer.
type sigJob struct {
	seq   uint64
	local string
	t     *apply.Target
}

// sigWorker answers SigRequests one after the other (a signature's frames
// must not interleave with another's).
type sigWorker struct {
	jobs    chan sigJob
	done    chan struct{}
	stop    atomic.Bool
	pending sync.WaitGroup // jobs queued and not answered yet

	mu  sync.Mutex
	err error
}

func (w *sigWorker) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *sigWorker) run(r *receiver) {
	defer close(w.done)
	for j := range w.jobs {
		if w.failed() == nil && !w.stop.Load() { // else the session is ending: only drain
			if err := r.sendSig(j, &w.stop); err != nil {
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
			}
		}
		w.pending.Done()
	}
}

// finish ends the signature goroutine: after a clean session it answers
// what is queued (the sender reads it to the end), otherwise it stops at
// the next block group, without waiting for a peer that may be gone.
func (w *sigWorker) finish(clean bool) error {
	if w == nil {
		return nil
	}
	if !clean {
		w.stop.Store(true)
	}
	close(w.jobs)
	if clean {
		<-w.done
	}
	return w.failed()
}

var errSigStopped = errors.New("session ended")

func (r *receiver) sendSig(j sigJob, stop *atomic.Bool) error {
	none := func() error {
		if err := r.c.Send(proto.Sig{Seq: j.seq}); err != nil {
			return err
		}
		return r.c.Flush()
	}
	if j.t == nil {
		return none()
	}
	st, err := scan.Lstat(j.local)
	if err != nil || st.Kind != state.KindReg || st.Size == 0 {
		return none()
	}
	f, err := j.t.OpenBasis(j.local)
	if err != nil {
		return none()
	}
	defer f.Close()
	if err := r.c.Send(proto.Sig{Seq: j.seq, Have: true, Basis: proto.RecordFrom(st)}); err != nil {
		return err
	}
	dw := &dataWriter{c: r.c, seq: j.seq}
	o := delta.SignatureOptions{Fast: r.fastSig}
	if st.Size >= streamSigMin {
		// A big basis's signature goes out as it is computed, so the
		// sender matches while the rest comes.
		o.Flush = func() error {
			if stop.Load() {
				return errSigStopped
			}
			if err := dw.flush(); err != nil {
				return err
			}
			return r.c.Flush()
		}
	}
	if err := delta.WriteSignatureAt(f, st.Size, dw, o); err != nil {
		return fmt.Errorf("signature of %s: %w", j.local, err)
	}
	if err := dw.flush(); err != nil {
		return err
	}
	if err := r.c.Send(proto.DataEnd{Seq: j.seq}); err != nil {
		return err
	}
	return r.c.Flush()
}

// streamSigMin is the basis size from which a signature is flushed as it
// is computed rather than at its end.
const streamSigMin = 16 << 20

func (r *receiver) endBatch(m *proto.EndBatch) error {
	if r.sigs != nil {
		// Every request before EndBatch is answered before BatchDone.
		r.sigs.pending.Wait()
		if err := r.sigs.failed(); err != nil {
			return err
		}
	}
	if err := r.flushAcks(); err != nil {
		return err
	}
	if !r.dry {
		r.restoreDirTimes()
	}
	r.batches++
	done := proto.BatchDone{Seq: m.Seq}
	if !r.dry && len(r.queued) > 0 {
		ran, failures := runQueued(r.o.Store, r.log, r.o.View.Name, r.queued)
		r.queued = nil
		done.ActionsRun = uint32(ran)
		done.ActionErrors = firstN(failures, proto.MaxErrors-1)
	}
	r.pending = actionQueue{}
	if err := r.c.Send(done); err != nil {
		return err
	}
	return r.c.Flush()
}

// restoreDirTimes gives directories whose entries we changed the mtime the
// sender sent for them, or else the mtime they had before.
func (r *receiver) restoreDirTimes() {
	dirs := make([]string, 0, len(r.dirMtimes))
	for d := range r.dirMtimes {
		dirs = append(dirs, d)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, d := range dirs {
		t := r.target(r.dirMtimes[d].g)
		want, ok := r.dirWant[d]
		if !ok {
			st, err := scan.Lstat(d)
			if err != nil || st.Kind != state.KindDir {
				continue
			}
			want = st
			want.MtimeNs = r.dirMtimes[d].mtimeNs
		}
		if err := t.SetDirMeta(d, want); err != nil {
			r.log.Warn("restore directory mtime", "path", d, "error", err)
			continue
		}
		if now, err := scan.Lstat(d); err == nil {
			if _, known, _ := r.o.Store.GetFile(d); known || r.dirWant[d].Kind == state.KindDir {
				r.batch.PutFile(d, &now)
			}
		}
	}
	r.dirMtimes = map[string]dirTouch{}
	r.dirWant = map[string]state.FileRecord{}
}

// dataReader reads the Data frames of one seq up to its DataEnd.
type dataReader struct {
	c     *proto.Conn
	seq   uint64
	cur   []byte
	ended bool
	sum   [32]byte
	n     int64
}

func (d *dataReader) Read(p []byte) (int, error) {
	for len(d.cur) == 0 {
		if d.ended {
			return 0, io.EOF
		}
		m, err := d.c.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return 0, io.ErrUnexpectedEOF
			}
			return 0, err
		}
		switch m := m.(type) {
		case *proto.Data:
			if m.Seq != d.seq {
				return 0, fmt.Errorf("protocol: data for seq %d inside seq %d", m.Seq, d.seq)
			}
			d.cur = m.Bytes
			d.n += int64(len(m.Bytes))
		case *proto.DataEnd:
			if m.Seq != d.seq {
				return 0, fmt.Errorf("protocol: end of data for seq %d inside seq %d", m.Seq, d.seq)
			}
			d.ended = true
			d.sum = m.SHA256
		default:
			return 0, fmt.Errorf("protocol: %s inside the data of seq %d", m.Type(), d.seq)
		}
	}
	k := copy(p, d.cur)
	d.cur = d.cur[k:]
	return k, nil
}

// handoff records that the sender, a stopping active node, brought this
// node fully up to date: the next start can then skip the failover guard.
func (r *receiver) handoff(m *proto.Handoff) error {
	if err := r.flushAcks(); err != nil {
		return err
	}
	a := proto.Ack{Seq: m.Seq, Status: proto.AckOK}
	h := state.Handoff{Epoch: m.Epoch, From: m.From, Clean: m.Clean, UpToNs: m.UpToNs}
	if m.From != r.sender {
		a.Status, a.Message = proto.AckRefused, fmt.Sprintf("handoff from %s claimed by %s", m.From, r.sender)
	} else if r.o.AcceptHandoff != nil {
		if err := r.o.AcceptHandoff(r.o.Store, h); err != nil {
			a.Status, a.Message = proto.AckRefused, err.Error()
			r.log.Warn("handoff refused", "epoch", m.Epoch, "clean", m.Clean, "reason", err)
		}
	}
	if a.Status == proto.AckOK && !r.dry {
		if err := r.o.Store.PutHandoff(h); err != nil {
			a.Status, a.Message = proto.AckError, err.Error()
		}
	}
	if err := r.c.Send(a); err != nil {
		return err
	}
	return r.c.Flush()
}
