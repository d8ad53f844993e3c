package state

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"
)

// The records in this file are rare, so their values are JSON. Paths and
// file records travel as []byte (base64 in JSON), because JSON strings
// would replace invalid UTF-8.

// Conflict is a path changed on both sides.
type Conflict struct {
	Path, Peer, Group string
	Local, Remote     FileRecord
	RemoteExists      bool
	DetectedNs        int64
	Reason            string
}

type conflictJSON struct {
	Group        string `json:"group"`
	Local        []byte `json:"local"`
	Remote       []byte `json:"remote"`
	RemoteExists bool   `json:"remote_exists"`
	DetectedNs   int64  `json:"detected_ns"`
	Reason       string `json:"reason"`
}

// Stranded is a change found on a peer after a failover that this node
// neither pushed over nor pulled.
type Stranded struct {
	Path, Peer   string
	Remote       FileRecord
	RemoteExists bool
	DetectedNs   int64
}

type strandedJSON struct {
	Remote       []byte `json:"remote"`
	RemoteExists bool   `json:"remote_exists"`
	DetectedNs   int64  `json:"detected_ns"`
}

// QueuedAction is a configured action waiting to run.
type QueuedAction struct {
	Seq                     uint64
	Group, Command, Logfile string
	Files                   []string
}

type actionJSON struct {
	Group   string   `json:"group"`
	Command string   `json:"command"`
	Logfile string   `json:"logfile"`
	Files   [][]byte `json:"files"`
}

// Handoff records a clean (or not) hand-over by the node From.
type Handoff struct {
	Epoch  uint64
	From   string
	Clean  bool
	UpToNs int64
}

type handoffJSON struct {
	Epoch  uint64 `json:"epoch"`
	Clean  bool   `json:"clean"`
	UpToNs int64  `json:"up_to_ns"`
}

// update runs fn in a write transaction, then fsyncs if durable.
func (s *Store) update(durable bool, fn func(txn *badger.Txn) error) error {
	if err := s.writable(); err != nil {
		return err
	}
	if err := s.db.Update(fn); err != nil {
		return fmt.Errorf("write state db %q: %w", s.dir, err)
	}
	if durable {
		return s.Sync()
	}
	return nil
}

func (s *Store) putJSON(key []byte, v any, durable bool) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("state db %q: encode %q: %w", s.dir, key, err)
	}
	return s.update(durable, func(txn *badger.Txn) error { return txn.Set(key, data) })
}

func (s *Store) del(key []byte, durable bool) error {
	return s.update(durable, func(txn *badger.Txn) error { return txn.Delete(key) })
}

func marshalRec(r *FileRecord) []byte {
	b, _ := r.MarshalBinary() // never fails
	return b
}

func (s *Store) undecodable(what string, k []byte) error {
	return corruptError(s.dir, fmt.Sprintf("undecodable %s record %q", what, k))
}

// PutConflict records (or replaces) the conflict of c.Path with c.Peer. It
// is durable: a conflict must not be forgotten in a crash.
func (s *Store) PutConflict(c Conflict) error {
	if err := checkPath(c.Path); err != nil {
		return fmt.Errorf("state db put conflict: %w", err)
	}
	if err := checkName("peer", c.Peer); err != nil {
		return fmt.Errorf("state db put conflict: %w", err)
	}
	return s.putJSON(pairKey(pfxConflict, c.Path, c.Peer), conflictJSON{
		Group: c.Group, Local: marshalRec(&c.Local), Remote: marshalRec(&c.Remote),
		RemoteExists: c.RemoteExists, DetectedNs: c.DetectedNs, Reason: c.Reason,
	}, true)
}

// DeleteConflict forgets the conflict of path with peer.
func (s *Store) DeleteConflict(path, peer string) error {
	return s.del(pairKey(pfxConflict, path, peer), true)
}

// Conflicts calls fn for every conflict, sorted by path, then peer.
func (s *Store) Conflicts(fn func(Conflict) error) error {
	return s.scan([]byte{pfxConflict}, false, func(k, v []byte) error {
		path, peer, ok := splitPair(k)
		var j conflictJSON
		c := Conflict{Path: path, Peer: peer}
		if !ok || json.Unmarshal(v, &j) != nil ||
			c.Local.UnmarshalBinary(j.Local) != nil || c.Remote.UnmarshalBinary(j.Remote) != nil {
			return s.undecodable("conflict", k)
		}
		c.Group, c.RemoteExists, c.DetectedNs, c.Reason = j.Group, j.RemoteExists, j.DetectedNs, j.Reason
		return fn(c)
	})
}

// PutStranded records a stranded change (durable).
func (s *Store) PutStranded(st Stranded) error {
	if err := checkPath(st.Path); err != nil {
		return fmt.Errorf("state db put stranded: %w", err)
	}
	if err := checkName("peer", st.Peer); err != nil {
		return fmt.Errorf("state db put stranded: %w", err)
	}
	return s.putJSON(pairKey(pfxStranded, st.Peer, st.Path), strandedJSON{
		Remote: marshalRec(&st.Remote), RemoteExists: st.RemoteExists, DetectedNs: st.DetectedNs,
	}, true)
}

// DeleteStranded forgets a stranded change.
func (s *Store) DeleteStranded(peer, path string) error {
	return s.del(pairKey(pfxStranded, peer, path), true)
}

// StrandedList calls fn for every stranded change, sorted by peer, then path.
func (s *Store) StrandedList(fn func(Stranded) error) error {
	return s.scan([]byte{pfxStranded}, false, func(k, v []byte) error {
		peer, path, ok := splitPair(k)
		var j strandedJSON
		st := Stranded{Path: path, Peer: peer}
		if !ok || json.Unmarshal(v, &j) != nil || st.Remote.UnmarshalBinary(j.Remote) != nil {
			return s.undecodable("stranded", k)
		}
		st.RemoteExists, st.DetectedNs = j.RemoteExists, j.DetectedNs
		return fn(st)
	})
}

func actionKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{pfxAction}, seq)
}

// QueueAction stores a (durable) action and returns its sequence number;
// a.Seq is ignored. Numbers are never reused, even after DeleteAction.
func (s *Store) QueueAction(a QueuedAction) (uint64, error) {
	j := actionJSON{Group: a.Group, Command: a.Command, Logfile: a.Logfile}
	for _, f := range a.Files {
		j.Files = append(j.Files, []byte(f))
	}
	data, err := json.Marshal(j)
	if err != nil {
		return 0, fmt.Errorf("state db %q: encode action: %w", s.dir, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var seq uint64
	err = s.update(true, func(txn *badger.Txn) error {
		if _, err := getIn(txn, []byte{pfxActSeq}, func(v []byte) error {
			if len(v) != 8 {
				return s.undecodable("action sequence", []byte{pfxActSeq})
			}
			seq = binary.BigEndian.Uint64(v)
			return nil
		}); err != nil {
			return err
		}
		seq++
		if err := txn.Set([]byte{pfxActSeq}, binary.BigEndian.AppendUint64(nil, seq)); err != nil {
			return err
		}
		return txn.Set(actionKey(seq), data)
	})
	if err != nil {
		return 0, err
	}
	return seq, nil
}

// Actions calls fn for every queued action, oldest first.
func (s *Store) Actions(fn func(QueuedAction) error) error {
	return s.scan([]byte{pfxAction}, false, func(k, v []byte) error {
		var j actionJSON
		if len(k) != 9 || json.Unmarshal(v, &j) != nil {
			return s.undecodable("action", k)
		}
		a := QueuedAction{Seq: binary.BigEndian.Uint64(k[1:]), Group: j.Group, Command: j.Command, Logfile: j.Logfile}
		for _, f := range j.Files {
			a.Files = append(a.Files, string(f))
		}
		return fn(a)
	})
}

// DeleteAction removes a queued action (durable).
func (s *Store) DeleteAction(seq uint64) error {
	return s.del(actionKey(seq), true)
}

// Epoch returns the stored epoch, 0 if none.
func (s *Store) Epoch() (uint64, error) {
	var e uint64
	_, err := s.get([]byte{pfxEpoch}, func(v []byte) error {
		if len(v) != 8 {
			return errBadRecord
		}
		e = binary.BigEndian.Uint64(v)
		return nil
	})
	if err != nil {
		return 0, s.readErr([]byte("epoch"), err)
	}
	return e, nil
}

// SetEpoch stores the epoch durably.
func (s *Store) SetEpoch(e uint64) error {
	v := binary.BigEndian.AppendUint64(nil, e)
	return s.update(true, func(txn *badger.Txn) error { return txn.Set([]byte{pfxEpoch}, v) })
}

// PutHandoff stores (durably) the handoff record of h.From, replacing the
// previous one from that node.
func (s *Store) PutHandoff(h Handoff) error {
	if err := checkName("node", h.From); err != nil {
		return fmt.Errorf("state db put handoff: %w", err)
	}
	return s.putJSON(append([]byte{pfxHandoff}, h.From...),
		handoffJSON{Epoch: h.Epoch, Clean: h.Clean, UpToNs: h.UpToNs}, true)
}

// Handoffs returns every handoff record, sorted by node.
func (s *Store) Handoffs() ([]Handoff, error) {
	var hs []Handoff
	err := s.scan([]byte{pfxHandoff}, false, func(k, v []byte) error {
		var j handoffJSON
		if len(k) < 2 || json.Unmarshal(v, &j) != nil {
			return s.undecodable("handoff", k)
		}
		hs = append(hs, Handoff{Epoch: j.Epoch, From: string(k[1:]), Clean: j.Clean, UpToNs: j.UpToNs})
		return nil
	})
	return hs, err
}

// Blocked is a peer the failover guard keeps pushes from: why, and since when.
type Blocked struct {
	Peer    string
	Reason  string
	SinceNs int64
}

type blockedJSON struct {
	Reason  string `json:"reason"`
	SinceNs int64  `json:"since_ns"`
}

// PutBlocked records (durably) that pushes to b.Peer are blocked.
func (s *Store) PutBlocked(b Blocked) error {
	if err := checkName("peer", b.Peer); err != nil {
		return fmt.Errorf("state db put blocked peer: %w", err)
	}
	return s.putJSON(append([]byte{pfxBlocked}, b.Peer...), blockedJSON{Reason: b.Reason, SinceNs: b.SinceNs}, true)
}

// DeleteBlocked lifts the block of peer (durable); no record is no error.
func (s *Store) DeleteBlocked(peer string) error {
	if err := checkName("peer", peer); err != nil {
		return fmt.Errorf("state db delete blocked peer: %w", err)
	}
	return s.del(append([]byte{pfxBlocked}, peer...), true)
}

// BlockedPeers returns every blocked peer, sorted by name.
func (s *Store) BlockedPeers() ([]Blocked, error) {
	var bs []Blocked
	err := s.scan([]byte{pfxBlocked}, false, func(k, v []byte) error {
		var j blockedJSON
		if len(k) < 2 || json.Unmarshal(v, &j) != nil {
			return s.undecodable("blocked peer", k)
		}
		bs = append(bs, Blocked{Peer: string(k[1:]), Reason: j.Reason, SinceNs: j.SinceNs})
		return nil
	})
	return bs, err
}
