package engine

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"

	"ocf-csync/syncer/apply"
	"ocf-csync/syncer/config"
	"ocf-csync/syncer/proto"
	"ocf-csync/syncer/scan"
	"ocf-csync/syncer/state"
)

// PullResult is what Pull did.
type PullResult struct {
	Pulled   []string // now as on the peer (created, replaced or deleted here)
	Problems []string // path: why it was not pulled
}

// Pull makes this node's copy of each path equal to the peer's, over one
// session: an entry only the peer has is created, one that differs is
// replaced (the receiver's backup rules apply), and one the peer lacks is
// deleted. Each pulled entry is recorded as agreed with the peer (its
// base) and in the file records. Directories come first, parents before
// children; deletions deepest first; directory metadata last. o.Store must
// be set; tempDir is the config's tempdir. A failed path is a problem, not
// an error; the error is for a session that cannot be used.
func Pull(ctx context.Context, o CompareOptions, tempDir, peer string, paths []string) (PullResult, error) {
	var out PullResult
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	byGroup := map[*config.GroupView][]string{}
	var groups []*config.GroupView
	for _, p := range paths {
		g := groupFor(o.View, p, peer)
		if g == nil {
			out.Problems = append(out.Problems, fmt.Sprintf("%s: not synced with %s", p, peer))
			continue
		}
		if _, ok := byGroup[g]; !ok {
			groups = append(groups, g)
		}
		byGroup[g] = append(byGroup[g], p)
	}
	if len(groups) == 0 {
		return out, nil
	}
	s, err := openSession(ctx, o.View, o.Connect, peer, groups)
	if err != nil {
		return out, fmt.Errorf("peer %s: %w", peer, err)
	}
	defer s.ch.Close()
	stop := context.AfterFunc(ctx, func() { s.ch.Close() })
	defer stop()
	t := apply.New(apply.Options{Ignore: o.Ignore, TempDir: tempDir, Logger: o.Log})
	b := o.Store.NewBatch()
	defer b.Cancel()
	var dirs []dirMeta
	var gone []string
	for _, g := range groups {
		ps := byGroup[g]
		sort.Strings(ps) // parents before children
		for _, p := range ps {
			wire, _ := g.WireName(p)
			rec, exists, err := s.pullOne(g, wire, p, t)
			switch {
			case err != nil && isSessionErr(err):
				return out, fmt.Errorf("peer %s: %w", peer, err)
			case err != nil:
				out.Problems = append(out.Problems, fmt.Sprintf("%s: %v", p, err))
				continue
			case !exists:
				gone = append(gone, p)
				continue
			case rec.Kind == state.KindDir:
				dirs = append(dirs, dirMeta{p, rec})
			}
			now, err := scan.Lstat(p)
			if err != nil {
				out.Problems = append(out.Problems, fmt.Sprintf("%s: %v", p, err))
				continue
			}
			if now.Kind == state.KindReg {
				now.Hash = rec.Hash
			}
			b.PutFile(p, &now)
			b.PutBase(peer, p, &rec)
			out.Pulled = append(out.Pulled, p)
		}
	}
	for i := len(gone) - 1; i >= 0; i-- { // deepest first
		p := gone[i]
		if err := t.Delete(p); err != nil {
			out.Problems = append(out.Problems, fmt.Sprintf("%s: %v", p, err))
			continue
		}
		b.DeleteFile(p)
		b.DeleteBase(peer, p)
		out.Pulled = append(out.Pulled, p)
	}
	for i := len(dirs) - 1; i >= 0; i-- { // children changed their parents' mtimes
		if err := t.SetDirMeta(dirs[i].path, dirs[i].rec); err != nil {
			out.Problems = append(out.Problems, fmt.Sprintf("%s: %v", dirs[i].path, err))
		}
	}
	if err := t.Sync(); err != nil {
		return out, fmt.Errorf("make pulled files durable: %w", err)
	}
	if err := b.CommitDurable(); err != nil {
		return out, fmt.Errorf("record pulled files: %w", err)
	}
	return out, s.close()
}

type dirMeta struct {
	path string
	rec  state.FileRecord
}

// sessionErr marks a failure of the session itself (not of one path).
type sessionErr struct{ error }

func (e sessionErr) Unwrap() error { return e.error }

func isSessionErr(err error) bool { _, ok := err.(sessionErr); return ok }

// pullOne fetches wire from the peer and installs it at path. It returns
// the peer's record and whether the peer has the entry at all (nothing is
// installed when it has not).
func (s *session) pullOne(g *config.GroupView, wire, path string, t *apply.Target) (state.FileRecord, bool, error) {
	seq, err := s.ask(proto.RequestFetch, g.Name, wire, false)
	if err != nil {
		return state.FileRecord{}, false, sessionErr{err}
	}
	m, err := s.recv(seq)
	if err != nil {
		return state.FileRecord{}, false, sessionErr{err}
	}
	e, ok := m.(*proto.Entry)
	if !ok {
		return state.FileRecord{}, false, sessionErr{fmt.Errorf("protocol: %s instead of an entry", m.Type())}
	}
	rec := e.Record.FileRecord()
	r := &fetchReader{s: s, seq: seq}
	var applyErr error
	switch {
	case !e.Exists:
	case rec.Kind == state.KindReg:
		if applyErr = t.MkdirParents(path); applyErr == nil {
			applyErr = t.WriteFileExpect(path, rec, func(w io.Writer) error {
				_, err := io.Copy(w, r)
				return err
			}, func() state.Hash { return r.sum })
		}
		rec.Hash = r.sum
	case rec.Kind == state.KindDir:
		if applyErr = t.MkdirParents(path); applyErr == nil {
			applyErr = t.Mkdir(path, rec)
		}
	case rec.Kind == state.KindSymlink:
		if applyErr = t.MkdirParents(path); applyErr == nil {
			applyErr = t.Symlink(path, rec)
		}
	default:
		if applyErr = t.MkdirParents(path); applyErr == nil {
			applyErr = t.Special(path, rec)
		}
	}
	// Read the rest of the entry's data, whatever happened, so the session
	// stays in step.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return rec, e.Exists, sessionErr{err}
	}
	if r.err != nil {
		return rec, e.Exists, sessionErr{r.err}
	}
	return rec, e.Exists, applyErr
}

// fetchReader reads the Data frames of one fetch up to its DataEnd.
type fetchReader struct {
	s     *session
	seq   uint64
	cur   []byte
	sum   state.Hash
	ended bool
	err   error
}

func (r *fetchReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.ended {
			return 0, io.EOF
		}
		m, err := r.s.recv(r.seq)
		if err != nil {
			r.err = err
			return 0, err
		}
		switch m := m.(type) {
		case *proto.Data:
			r.cur = m.Bytes
		case *proto.DataEnd:
			r.ended, r.sum = true, m.SHA256
		default:
			r.err = fmt.Errorf("protocol: %s inside file data", m.Type())
			return 0, r.err
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}
