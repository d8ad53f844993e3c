package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"
)

// DirtyRecord says a path must be pushed to a peer.
type DirtyRecord struct {
	Forced   bool  // push even if the peer's copy looks newer (csync2 -f)
	MarkedNs int64 // when it was marked, unix ns
}

func (d DirtyRecord) marshal() []byte {
	b := make([]byte, 1, 1+binary.MaxVarintLen64)
	if d.Forced {
		b[0] = 1
	}
	return binary.AppendVarint(b, d.MarkedNs)
}

func (d *DirtyRecord) unmarshal(b []byte) error {
	if len(b) < 2 || b[0] > 1 {
		return errBadRecord
	}
	v, n := binary.Varint(b[1:])
	if n <= 0 || n != len(b)-1 {
		return errBadRecord
	}
	*d = DirtyRecord{Forced: b[0] == 1, MarkedNs: v}
	return nil
}

// GetFile returns the record of an absolute path.
func (s *Store) GetFile(path string) (FileRecord, bool, error) {
	if err := checkPath(path); err != nil {
		return FileRecord{}, false, fmt.Errorf("state db get: %w", err)
	}
	return s.getRecord(fileKey(path), path)
}

// ListDir calls fn for the direct children of dir (not dir itself), in
// byte order of their names.
func (s *Store) ListDir(dir string, fn func(name string, rec *FileRecord) error) error {
	if err := checkPath(dir); err != nil {
		return fmt.Errorf("state db list: %w", err)
	}
	pfx := dirPrefix(dir)
	return s.scan(pfx, false, func(k, v []byte) error {
		name := string(k[len(pfx):])
		if name == "" { // "/" itself sits under the prefix of "/"
			return nil
		}
		rec := new(FileRecord)
		if err := rec.UnmarshalBinary(v); err != nil {
			return corruptError(s.dir, fmt.Sprintf("undecodable record %q", joinPath(dir, name)))
		}
		return fn(name, rec)
	})
}

// WalkFiles calls fn for root and every path below it ("/" = all), in no
// particular order. It reads one consistent snapshot.
func (s *Store) WalkFiles(root string, fn func(path string, rec *FileRecord) error) error {
	if err := checkPath(root); err != nil {
		return fmt.Errorf("state db walk: %w", err)
	}
	each := func(k, v []byte) error {
		p, ok := pathFromFileKey(k)
		rec := new(FileRecord)
		if !ok || rec.UnmarshalBinary(v) != nil {
			return corruptError(s.dir, fmt.Sprintf("undecodable file record %q", k))
		}
		return fn(p, rec)
	}
	if root == "/" {
		return s.scan([]byte{pfxFile}, false, each)
	}
	// Below /a lie the keys "f/a\0…" (children) and "f/a/…" (deeper); a
	// prefix "f/a" alone would also match "/ab".
	deeper := append([]byte{pfxFile}, root...)
	deeper = append(deeper, '/')
	return s.view(func(txn *badger.Txn, g *guard) error {
		key := fileKey(root)
		_, err := getIn(txn, key, func(v []byte) error {
			g.inFn = true // not deferred: a panic must leave it set
			err := each(key, v)
			g.inFn = false
			return err
		})
		if err != nil {
			return err
		}
		if err := iterate(txn, g, dirPrefix(root), false, each); err != nil {
			return err
		}
		return iterate(txn, g, deeper, false, each)
	})
}

// CountFiles counts all file records.
func (s *Store) CountFiles() (int, error) {
	return s.count([]byte{pfxFile})
}

func (s *Store) count(pfx []byte) (int, error) {
	n := 0
	err := s.scan(pfx, true, func(_, _ []byte) error {
		n++
		return nil
	})
	return n, err
}

// GetBase returns what this node and peer last agreed on for path.
func (s *Store) GetBase(peer, path string) (FileRecord, bool, error) {
	if err := checkName("peer", peer); err != nil {
		return FileRecord{}, false, fmt.Errorf("state db get base: %w", err)
	}
	if err := checkPath(path); err != nil {
		return FileRecord{}, false, fmt.Errorf("state db get base: %w", err)
	}
	return s.getRecord(pairKey(pfxBase, peer, path), path)
}

// HasBases reports whether any base is recorded with peer (one seek).
func (s *Store) HasBases(peer string) (bool, error) {
	if err := checkName("peer", peer); err != nil {
		return false, fmt.Errorf("state db bases: %w", err)
	}
	pfx := peerPrefix(pfxBase, peer)
	found := false
	err := s.view(func(txn *badger.Txn, _ *guard) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: pfx})
		defer it.Close()
		it.Seek(pfx)
		found = it.ValidForPrefix(pfx)
		return nil
	})
	return found, err
}

// Dirty calls fn for every path dirty for peer, sorted by path bytes.
func (s *Store) Dirty(peer string, fn func(path string, d DirtyRecord) error) error {
	if err := checkName("peer", peer); err != nil {
		return fmt.Errorf("state db dirty: %w", err)
	}
	pfx := peerPrefix(pfxDirty, peer)
	return s.scan(pfx, false, func(k, v []byte) error {
		var d DirtyRecord
		p := string(k[len(pfx):])
		if err := d.unmarshal(v); err != nil {
			return corruptError(s.dir, fmt.Sprintf("undecodable dirty record %q for peer %q", p, peer))
		}
		return fn(p, d)
	})
}

// DirtyEntry is a path dirty for a peer with this node's record of it and
// the base this node and the peer last agreed on.
type DirtyEntry struct {
	Path    string
	Dirty   DirtyRecord
	File    FileRecord
	Exists  bool // File is set
	Base    FileRecord
	HasBase bool // Base is set
}

// DirtyEntries is Dirty with each path's file record and base, read in the
// same transaction by two more iterators that move along with the dirty
// one: bases are in the same (path) order; file records are grouped by
// directory, so the file iterator seeks once per directory and steps
// within it. A push reads its dirty set this way instead of two lookups
// (each through every level of the tree) per path. e is reused between
// calls.
func (s *Store) DirtyEntries(peer string, fn func(e *DirtyEntry) error) error {
	if err := checkName("peer", peer); err != nil {
		return fmt.Errorf("state db dirty: %w", err)
	}
	dpfx, bpfx := peerPrefix(pfxDirty, peer), peerPrefix(pfxBase, peer)
	err := s.view(func(txn *badger.Txn, g *guard) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: dpfx})
		defer it.Close()
		bit := txn.NewIterator(badger.IteratorOptions{Prefix: bpfx})
		defer bit.Close()
		bit.Seek(bpfx)
		basesDone := !bit.ValidForPrefix(bpfx)
		fit := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pfxFile}})
		defer fit.Close()
		fit.Seek([]byte{pfxFile})
		var e DirtyEntry
		var bkey, fkey []byte
		for it.Seek(dpfx); it.ValidForPrefix(dpfx); it.Next() {
			item := it.Item()
			e = DirtyEntry{Path: string(item.Key()[len(dpfx):])}
			if err := item.Value(e.Dirty.unmarshal); err != nil {
				return corruptError(s.dir, fmt.Sprintf("undecodable dirty record %q for peer %q", e.Path, peer))
			}
			fkey = appendFileKey(fkey[:0], e.Path)
			found, err := seekTo(fit, fkey, []byte{pfxFile}, e.File.UnmarshalBinary)
			if err != nil {
				return s.readErr([]byte(e.Path), err)
			}
			e.Exists = found
			// Base keys sort as the dirty ones do (same path after a prefix
			// of one length): once bit has run out, no later path has a
			// base, and a Seek per path (a first push: no bases at all)
			// would only find that out again.
			if !basesDone {
				bkey = append(append(bkey[:0], bpfx...), e.Path...)
				if e.HasBase, err = seekTo(bit, bkey, bpfx, e.Base.UnmarshalBinary); err != nil {
					return s.readErr([]byte(e.Path), err)
				}
				basesDone = !bit.ValidForPrefix(bpfx)
			}
			g.inFn = true
			err = fn(&e)
			g.inFn = false
			if err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

// seekTo moves it to key: a few Next calls when key is just ahead (the
// usual case), a Seek otherwise. If key is there, decode gets its value.
func seekTo(it *badger.Iterator, key, pfx []byte, decode func([]byte) error) (bool, error) {
	for steps := 0; steps < 8 && it.ValidForPrefix(pfx); steps++ {
		c := bytes.Compare(it.Item().Key(), key)
		if c == 0 {
			return true, it.Item().Value(decode)
		}
		if c > 0 {
			if steps > 0 {
				return false, nil // stepped from below key to above it: absent
			}
			break // key is behind the iterator
		}
		it.Next()
	}
	it.Seek(key)
	if it.ValidForPrefix(pfx) && bytes.Equal(it.Item().Key(), key) {
		return true, it.Item().Value(decode)
	}
	return false, nil
}

// DirtyCount counts the paths dirty for peer.
func (s *Store) DirtyCount(peer string) (int, error) {
	if err := checkName("peer", peer); err != nil {
		return 0, fmt.Errorf("state db dirty count: %w", err)
	}
	return s.count(peerPrefix(pfxDirty, peer))
}

// DirtyPeers lists the peers with at least one dirty path, sorted. It
// seeks past each peer's keys instead of reading them all.
func (s *Store) DirtyPeers() ([]string, error) {
	var peers []string
	pfx := []byte{pfxDirty}
	err := s.view(func(txn *badger.Txn, _ *guard) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: pfx})
		defer it.Close()
		for it.Seek(pfx); it.ValidForPrefix(pfx); {
			peer, _, ok := splitPair(it.Item().Key())
			if !ok {
				return corruptError(s.dir, fmt.Sprintf("malformed dirty key %q", it.Item().Key()))
			}
			peers = append(peers, peer)
			next := peerPrefix(pfxDirty, peer)
			next[len(next)-1] = 1 // just past every "d peer \0 …" key
			it.Seek(next)
		}
		return nil
	})
	return peers, err
}
