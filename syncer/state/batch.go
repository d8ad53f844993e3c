package state

import (
	"errors"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"
)

// Batch collects writes into a badger WriteBatch. The first error is
// remembered, later writes are dropped, and Commit returns it. badger splits
// a batch larger than one transaction (15% of the memtable) into several,
// so a big batch is not atomic: a crash can keep a prefix of it. A Batch is
// for one goroutine.
type Batch struct {
	s    *Store
	wb   *badger.WriteBatch
	err  error
	n    int
	done bool
}

// NewBatch starts a batch.
func (s *Store) NewBatch() *Batch {
	b := &Batch{s: s}
	if err := s.writable(); err != nil {
		b.err = err
		return b
	}
	b.wb = s.db.NewWriteBatch()
	return b
}

// Len is the number of writes queued so far.
func (b *Batch) Len() int { return b.n }

func (b *Batch) fail(err error) {
	if b.err == nil {
		b.err = fmt.Errorf("state db %q: batch write: %w", b.s.dir, err)
	}
}

func (b *Batch) ok() bool {
	if b.done && b.err == nil {
		b.err = errors.New("state db batch used after Commit or Cancel")
	}
	return b.err == nil
}

func (b *Batch) set(k, v []byte) {
	if err := b.wb.Set(k, v); err != nil {
		b.fail(err)
	}
	b.n++
}

func (b *Batch) del(k []byte) {
	if err := b.wb.Delete(k); err != nil {
		b.fail(err)
	}
	b.n++
}

func (b *Batch) path(p string) bool {
	if err := checkPath(p); err != nil {
		b.fail(err)
		return false
	}
	return true
}

func (b *Batch) peerPath(peer, p string) bool {
	if err := checkName("peer", peer); err != nil {
		b.fail(err)
		return false
	}
	return b.path(p)
}

func (b *Batch) record(rec *FileRecord) []byte {
	v, err := rec.MarshalBinary()
	if err != nil {
		b.fail(err)
		return nil
	}
	return v
}

// PutFile stores this node's record of path.
func (b *Batch) PutFile(path string, rec *FileRecord) {
	if b.ok() && b.path(path) {
		if v := b.record(rec); v != nil {
			b.set(fileKey(path), v)
		}
	}
}

// DeleteFile forgets path.
func (b *Batch) DeleteFile(path string) {
	if b.ok() && b.path(path) {
		b.del(fileKey(path))
	}
}

// MarkDirty records that path must be pushed to peer.
func (b *Batch) MarkDirty(peer, path string, d DirtyRecord) {
	if b.ok() && b.peerPath(peer, path) {
		b.set(pairKey(pfxDirty, peer, path), d.marshal())
	}
}

// ClearDirty removes path from peer's dirty set.
func (b *Batch) ClearDirty(peer, path string) {
	if b.ok() && b.peerPath(peer, path) {
		b.del(pairKey(pfxDirty, peer, path))
	}
}

// PutBase records what this node and peer now agree on for path.
func (b *Batch) PutBase(peer, path string, rec *FileRecord) {
	if b.ok() && b.peerPath(peer, path) {
		if v := b.record(rec); v != nil {
			b.set(pairKey(pfxBase, peer, path), v)
		}
	}
}

// DeleteBase forgets the base of path for peer.
func (b *Batch) DeleteBase(peer, path string) {
	if b.ok() && b.peerPath(peer, path) {
		b.del(pairKey(pfxBase, peer, path))
	}
}

// Commit writes the batch without fsync: a crash may lose it, never
// corrupt it. Use CommitDurable for "peer P now has version V".
func (b *Batch) Commit() error {
	if b.done {
		if b.err != nil {
			return b.err
		}
		return errors.New("state db batch committed or cancelled twice")
	}
	b.done = true
	if b.err != nil {
		if b.wb != nil {
			b.wb.Cancel()
		}
		return b.err
	}
	if err := b.wb.Flush(); err != nil {
		b.err = fmt.Errorf("state db %q: commit batch: %w", b.s.dir, err)
		return b.err
	}
	return nil
}

// CommitDurable is Commit followed by an fsync of badger's logs.
func (b *Batch) CommitDurable() error {
	if err := b.Commit(); err != nil {
		return err
	}
	return b.s.Sync()
}

// Cancel drops the writes not yet flushed. It is a no-op after Commit, so
// `defer b.Cancel()` is fine.
func (b *Batch) Cancel() {
	if b.done {
		return
	}
	b.done = true
	if b.wb != nil {
		b.wb.Cancel()
	}
}
