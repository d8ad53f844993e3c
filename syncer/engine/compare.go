package engine

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"ocf-csync/syncer/config"
	"ocf-csync/syncer/proto"
	"ocf-csync/syncer/scan"
	"ocf-csync/syncer/state"
)

// Compare and fetch (csync2 -T, -TT, -TI) read the real current state of
// both sides: the peer answers proto.Request messages from a fresh walk of
// its tree, never from its DB (csync2 -T compares the two DBs).

// walkSynced calls fn for root and, if recursive, everything below it that g
// syncs. A missing root is not an error. Receiver temp files are skipped.
func walkSynced(g *config.GroupView, root string, recursive bool, fn func(path string) error) error {
	fi, err := os.Lstat(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !recursive {
		if synced, _ := g.Match(root, fi.IsDir()); synced {
			return fn(root)
		}
		return nil
	}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil // vanished during the walk
			}
			return err
		}
		if p != root && scan.IsTempName(d.Name()) {
			return nil
		}
		synced, descend := g.Match(p, d.IsDir())
		if synced {
			if err := fn(p); err != nil {
				return err
			}
		}
		if d.IsDir() && !descend {
			return filepath.SkipDir
		}
		return nil
	})
}

// localRecord describes path now, reusing the recorded hash when the stat
// fields did not change since it was recorded.
func localRecord(st *state.Store, path string) (state.FileRecord, bool, error) {
	rec, err := scan.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return rec, false, nil
	}
	if err != nil || rec.Kind != state.KindReg {
		return rec, err == nil, err
	}
	if st != nil {
		if old, ok, err := st.GetFile(path); err == nil && ok && !old.StatChanged(&rec) {
			rec.Hash = old.Hash
			return rec, true, nil
		}
	}
	rec.Hash, err = scan.HashFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return rec, false, nil
	}
	return rec, err == nil, err
}

// request answers a compare/diff Request (receiver side).
func (r *receiver) request(m *proto.Request) error {
	g, local, t, err := r.resolve(m.Group, m.Path)
	if err != nil {
		return r.fatal(fmt.Sprintf("%s refuses %q: %v", r.o.View.Name, m.Path, err))
	}
	if msg := r.checkRoot(g, local); msg != "" {
		// An unmounted data disk would list as "everything deleted here";
		// a reconciliation must not read that as stranded deletions.
		return r.fatal(msg)
	}
	entry := func(p string) (proto.Entry, error) {
		rec, ok, err := r.current(t, p)
		if err != nil {
			return proto.Entry{}, fmt.Errorf("%s: %w", p, err)
		}
		wire, _ := g.WireName(p)
		e := proto.Entry{Seq: m.Seq, Path: []byte(wire), Exists: ok}
		if ok {
			e.Record = proto.RecordFrom(rec)
		}
		return e, nil
	}
	switch m.Kind {
	case proto.RequestStat:
		e, err := entry(local)
		if err != nil {
			return r.fatal(err.Error())
		}
		if err := r.c.Send(e); err != nil {
			return err
		}
	case proto.RequestList:
		err := walkSynced(g, local, m.Recursive, func(p string) error {
			e, err := entry(p)
			if err != nil || !e.Exists {
				return err
			}
			return r.c.Send(e)
		})
		if err != nil {
			return r.fatal(fmt.Sprintf("list %s on %s: %v", local, r.o.View.Name, err))
		}
		if err := r.c.Send(proto.Entry{Seq: m.Seq}); err != nil {
			return err
		}
	case proto.RequestFetch:
		e, err := entry(local)
		if err != nil {
			return r.fatal(err.Error())
		}
		if err := r.c.Send(e); err != nil {
			return err
		}
		var sum [32]byte
		if e.Exists && e.Record.Kind == state.KindReg {
			f, err := t.OpenBasis(local)
			if err != nil {
				return r.fatal(fmt.Sprintf("open %s on %s: %v", local, r.o.View.Name, err))
			}
			h := sha256.New()
			dw := &dataWriter{c: r.c, seq: m.Seq}
			_, err = io.Copy(dw, io.TeeReader(f, h))
			f.Close()
			if err == nil {
				err = dw.flush()
			}
			if err != nil {
				return fmt.Errorf("send %s: %w", local, err)
			}
			h.Sum(sum[:0])
		}
		if err := r.c.Send(proto.DataEnd{Seq: m.Seq, SHA256: sum}); err != nil {
			return err
		}
	default:
		return r.fatal(fmt.Sprintf("unknown request kind %d", m.Kind))
	}
	return r.c.Flush()
}

// fatal reports a problem to the sender and ends the session.
func (r *receiver) fatal(msg string) error {
	if err := r.flushAcks(); err != nil {
		return err
	}
	_ = r.c.Send(proto.Error{Message: msg})
	_ = r.c.Flush()
	return errors.New(msg)
}

// CompareOptions drive Compare and Fetch.
type CompareOptions struct {
	View    *config.NodeView
	Store   *state.Store // optional: recorded hashes are reused for unchanged files
	Connect Connector
	Ignore  state.Ignore
	Peers   []string // only these peers; empty = every peer
	Paths   []string // local absolute paths; empty = every root of the node
	Log     *slog.Logger
	// Observe, when set, hears how many local entries were compared with
	// each peer so far, and (Finished) when that peer is done.
	Observe func(CompareProgress)
}

// CompareProgress is how far the comparison with one peer is.
type CompareProgress struct {
	Peer     string
	Entries  int // local entries compared so far
	Finished bool
	Err      error // with Finished: why the comparison failed
}

// Difference is one line of `compare`: Kind "L" (only here), "R" (only on
// the peer) or "X" (both have it, but it differs).
type Difference struct {
	Kind   string
	Peer   string
	Group  string
	Path   string // local path
	Wire   string // name between the nodes (%prefix%/...)
	Local  *state.FileRecord
	Remote *state.FileRecord
}

// CompareResult lists the differences with every peer that answered, and
// the peers that could not be compared.
type CompareResult struct {
	Diffs  []Difference
	Errors []error
}

// session is a read-only connection to a peer's `serve`.
type session struct {
	ch  Channel
	c   *proto.Conn
	seq uint64
}

func openSession(ctx context.Context, view *config.NodeView, connect Connector, peer string, groups []*config.GroupView) (*session, error) {
	host, ok := hostOf(view, peer)
	if !ok {
		return nil, fmt.Errorf("%s is not a peer of %s in any group", peer, view.Name)
	}
	if isSFTPTarget(view, peer) {
		return nil, sftpUnsupported(peer, "compare, diff and fetch")
	}
	keys := map[string][]byte{}
	for _, g := range groups {
		k, err := proto.ReadKeyFile(g.Key)
		if err != nil {
			return nil, fmt.Errorf("group %s: %w", g.Name, err)
		}
		keys[g.Name] = k
	}
	ch, err := connect(ctx, host)
	if err != nil {
		return nil, err
	}
	c := proto.NewConn(ch, ch)
	// Dry run: the peer writes nothing, not even leftover actions.
	if _, err := proto.ClientHandshake(c, view.Name, keys, proto.FlagDryRun); err != nil {
		ch.Close()
		return nil, withRemoteStderr(fmt.Errorf("handshake: %w", err), ch)
	}
	return &session{ch: ch, c: c}, nil
}

func (s *session) close() error {
	_ = s.c.Send(proto.Bye{})
	err := s.c.Flush()
	_ = s.ch.CloseWrite()
	if werr := s.ch.Wait(); werr != nil && err == nil {
		err = fmt.Errorf("remote helper: %w", werr)
	}
	s.ch.Close()
	return err
}

func (s *session) ask(kind proto.RequestKind, group, wire string, recursive bool) (uint64, error) {
	s.seq++
	if err := s.c.Send(proto.Request{Seq: s.seq, Kind: kind, Group: group, Path: []byte(wire), Recursive: recursive}); err != nil {
		return 0, err
	}
	return s.seq, s.c.Flush()
}

func (s *session) recv(seq uint64) (proto.Message, error) {
	m, err := s.c.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = errors.New("the remote helper closed the connection")
		}
		return nil, withRemoteStderr(err, s.ch)
	}
	switch m := m.(type) {
	case *proto.Error:
		return nil, fmt.Errorf("peer: %s", m.Message)
	case *proto.Entry:
		if m.Seq != seq {
			return nil, fmt.Errorf("protocol: entry for seq %d, expected %d", m.Seq, seq)
		}
	case *proto.Data:
		if m.Seq != seq {
			return nil, fmt.Errorf("protocol: data for seq %d, expected %d", m.Seq, seq)
		}
	case *proto.DataEnd:
		if m.Seq != seq {
			return nil, fmt.Errorf("protocol: end of data for seq %d, expected %d", m.Seq, seq)
		}
	default:
		return nil, fmt.Errorf("protocol: unexpected %s from the peer", m.Type())
	}
	return m, nil
}

// list asks for everything the peer syncs below wire.
func (s *session) list(group, wire string) (map[string]state.FileRecord, error) {
	seq, err := s.ask(proto.RequestList, group, wire, true)
	if err != nil {
		return nil, err
	}
	out := map[string]state.FileRecord{}
	for {
		m, err := s.recv(seq)
		if err != nil {
			return nil, err
		}
		e, ok := m.(*proto.Entry)
		if !ok {
			return nil, fmt.Errorf("protocol: unexpected %s in a listing", m.Type())
		}
		if len(e.Path) == 0 {
			return out, nil
		}
		out[string(e.Path)] = e.Record.FileRecord()
	}
}

func wantPeer(filter []string, name string) bool {
	if len(filter) == 0 {
		return true
	}
	for _, f := range filter {
		if strings.EqualFold(f, name) {
			return true
		}
	}
	return false
}

// compareRoots are the local paths to compare in group g.
func compareRoots(view *config.NodeView, g *config.GroupView, paths []string) []string {
	if len(paths) == 0 {
		paths = view.Roots()
	}
	var out []string
	for _, p := range paths {
		if synced, descend := g.Match(p, true); synced || descend {
			out = append(out, p)
		}
	}
	return out
}

// Compare lists the differences between this node and its peers (csync2 -T,
// but on the real trees of both sides).
func Compare(ctx context.Context, o CompareOptions) CompareResult {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	byPeer := map[string][]*config.GroupView{}
	var peers []string
	for _, g := range o.View.Groups {
		for _, h := range g.Peers() {
			if !wantPeer(o.Peers, h.Name) || len(compareRoots(o.View, g, o.Paths)) == 0 {
				continue
			}
			if len(o.Peers) == 0 && isSFTPTarget(o.View, h.Name) {
				continue // it runs no helper to ask; named with -P it says so
			}
			if _, ok := byPeer[h.Name]; !ok {
				peers = append(peers, h.Name)
			}
			byPeer[h.Name] = append(byPeer[h.Name], g)
		}
	}
	sort.Strings(peers)
	var res CompareResult
	if len(peers) == 0 {
		res.Errors = append(res.Errors, errors.New("no peer shares a group with these paths (check the peer name and the PATH)"))
		return res
	}
	for _, peer := range peers {
		diffs, err := comparePeer(ctx, &o, peer, byPeer[peer])
		if o.Observe != nil {
			o.Observe(CompareProgress{Peer: peer, Finished: true, Err: err})
		}
		res.Diffs = append(res.Diffs, diffs...)
		if err != nil {
			res.Errors = append(res.Errors, fmt.Errorf("peer %s: %w", peer, err))
		}
	}
	return res
}

func comparePeer(ctx context.Context, o *CompareOptions, peer string, groups []*config.GroupView) ([]Difference, error) {
	s, err := openSession(ctx, o.View, o.Connect, peer, groups)
	if err != nil {
		return nil, err
	}
	var diffs []Difference
	seen := map[string]bool{} // a path in two groups is compared once
	entries := 0
	for _, g := range groups {
		for _, root := range compareRoots(o.View, g, o.Paths) {
			wire, _ := g.WireName(root)
			remote, err := s.list(g.Name, wire)
			if err != nil {
				s.ch.Close()
				return diffs, err
			}
			local := map[string]state.FileRecord{}
			localPath := map[string]string{}
			err = walkSynced(g, root, true, func(p string) error {
				rec, ok, err := localRecord(o.Store, p)
				if err != nil || !ok {
					return err
				}
				w, _ := g.WireName(p)
				local[w], localPath[w] = rec, p
				if entries++; o.Observe != nil {
					o.Observe(CompareProgress{Peer: peer, Entries: entries})
				}
				return nil
			})
			if err != nil {
				s.ch.Close()
				return diffs, fmt.Errorf("walk %s: %w", root, err)
			}
			for w, l := range local {
				if seen[w] {
					continue
				}
				seen[w] = true
				d := Difference{Peer: peer, Group: g.Name, Path: localPath[w], Wire: w, Local: &l}
				r, ok := remote[w]
				switch {
				case !ok:
					d.Kind = "L"
				case !l.SameSyncState(&r, o.Ignore):
					d.Kind, d.Remote = "X", &r
				default:
					continue
				}
				diffs = append(diffs, d)
			}
			for w, r := range remote {
				if seen[w] {
					continue
				}
				seen[w] = true
				p, err := g.LocalPath(w)
				if err != nil {
					p = w
				}
				diffs = append(diffs, Difference{Kind: "R", Peer: peer, Group: g.Name, Path: p, Wire: w, Remote: &r})
			}
		}
	}
	sort.Slice(diffs, func(i, j int) bool { return diffs[i].Path < diffs[j].Path })
	return diffs, s.close()
}

// MarkDifferences marks what Compare found dirty for its peer (csync2 -TI),
// so the next push makes the peer equal to this node: L and X entries are
// recorded as they are now and get the peer's current copy as their base
// (so the push applies instead of reporting a conflict). With deleteRemote
// (csync2 -TIX) R entries are marked too, so the push deletes them.
func MarkDifferences(st *state.Store, diffs []Difference, deleteRemote bool) (int, error) {
	b := st.NewBatch()
	now := time.Now().UnixNano()
	n := 0
	for _, d := range diffs {
		switch d.Kind {
		case "L", "X":
			rec, ok, err := localRecord(st, d.Path)
			if err != nil {
				b.Cancel()
				return 0, err
			}
			if !ok {
				continue // gone since the compare
			}
			b.PutFile(d.Path, &rec)
		case "R":
			if !deleteRemote {
				continue
			}
			b.DeleteFile(d.Path)
		default:
			continue
		}
		if d.Remote != nil {
			b.PutBase(d.Peer, d.Path, d.Remote)
		} else {
			b.DeleteBase(d.Peer, d.Path)
		}
		b.MarkDirty(d.Peer, d.Path, state.DirtyRecord{MarkedNs: now})
		n++
	}
	if err := b.CommitDurable(); err != nil {
		return 0, fmt.Errorf("mark differences dirty: %w", err)
	}
	return n, nil
}

// Fetched is a peer's copy of one path.
type Fetched struct {
	Peer    string
	Wire    string
	Exists  bool
	Record  state.FileRecord
	Content []byte // regular files only
}

// Fetch reads the peer's copy of a local path (for `diff`, csync2 -TT).
// With peer empty, the first peer of the first group that syncs path.
func Fetch(ctx context.Context, o CompareOptions, peer, path string, maxSize int64) (Fetched, error) {
	var g *config.GroupView
	for _, gv := range o.View.GroupsFor(path) {
		for _, h := range gv.Peers() {
			if peer == "" || strings.EqualFold(h.Name, peer) {
				g, peer = gv, h.Name
				break
			}
		}
		if g != nil {
			break
		}
	}
	if g == nil {
		return Fetched{}, fmt.Errorf("%s is not synced with %s by any group of %s", path, peerOrAny(peer), o.View.Name)
	}
	s, err := openSession(ctx, o.View, o.Connect, peer, []*config.GroupView{g})
	if err != nil {
		return Fetched{}, fmt.Errorf("peer %s: %w", peer, err)
	}
	defer s.ch.Close()
	wire, _ := g.WireName(path)
	out := Fetched{Peer: peer, Wire: wire}
	seq, err := s.ask(proto.RequestFetch, g.Name, wire, false)
	if err != nil {
		return out, err
	}
	m, err := s.recv(seq)
	if err != nil {
		return out, fmt.Errorf("peer %s: %w", peer, err)
	}
	e, ok := m.(*proto.Entry)
	if !ok {
		return out, fmt.Errorf("protocol: peer %s sent %s, expected an entry", peer, m.Type())
	}
	out.Exists, out.Record = e.Exists, e.Record.FileRecord()
	h := sha256.New()
	for {
		m, err := s.recv(seq)
		if err != nil {
			return out, fmt.Errorf("peer %s: %w", peer, err)
		}
		if d, ok := m.(*proto.Data); ok {
			if int64(len(out.Content)+len(d.Bytes)) > maxSize {
				return out, fmt.Errorf("%s on %s is larger than %d bytes", path, peer, maxSize)
			}
			out.Content = append(out.Content, d.Bytes...)
			h.Write(d.Bytes)
			continue
		}
		end, ok := m.(*proto.DataEnd)
		if !ok {
			return out, fmt.Errorf("protocol: peer %s sent %s inside file data", peer, m.Type())
		}
		if out.Exists && out.Record.Kind == state.KindReg && [32]byte(h.Sum(nil)) != end.SHA256 {
			return out, fmt.Errorf("%s from %s changed while it was read; try again", path, peer)
		}
		break
	}
	return out, s.close()
}

func peerOrAny(p string) string {
	if p == "" {
		return "any peer"
	}
	return "peer " + p
}
