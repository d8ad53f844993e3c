package state

import (
	"encoding/json"
	"fmt"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Program is the ocf-csync version recorded in the sentinel by a DB's
// creation or migration (set by the binary; "" in library tests).
var Program string

// migrations[n] brings a DB from schema n to n+1 inside one write
// transaction; the sentinel is rewritten by migrate itself. Add a step
// and bump SchemaVersion together; never change a released step.
var migrations = map[int]func(txn *badger.Txn) error{
	// 1 → 2: the sentinel records the program that wrote it (Writer) and
	// the migrations applied (Migrated); no record layout changed.
	1: func(*badger.Txn) error { return nil },
}

// migrate brings an older DB forward to SchemaVersion: every step and the
// new sentinel in one durable transaction, so a crash leaves the old
// schema or the new one. A read-only open never migrates.
func (s *Store) migrate(sen Sentinel) (Sentinel, error) {
	if sen.Schema >= SchemaVersion {
		return sen, nil
	}
	if s.readOnly {
		return sen, &dbError{ErrSchema, fmt.Sprintf(
			"state db %q has schema %d, older than this ocf-csync's %d; open it once read-write to migrate it", s.dir, sen.Schema, SchemaVersion)}
	}
	from := sen.Schema
	for v := from; v < SchemaVersion; v++ {
		if migrations[v] == nil {
			return sen, &dbError{ErrSchema, fmt.Sprintf(
				"state db %q has schema %d, which this ocf-csync cannot migrate (no step %d→%d); run `ocf-csync rebuild`", s.dir, from, v, v+1)}
		}
	}
	next := sen
	next.Schema = SchemaVersion
	next.Writer = Program
	next.Migrated = append(append([]Migration(nil), sen.Migrated...),
		Migration{From: from, To: SchemaVersion, At: time.Now().UTC(), By: Program})
	err := s.db.Update(func(txn *badger.Txn) error {
		for v := from; v < SchemaVersion; v++ {
			if err := migrations[v](txn); err != nil {
				return fmt.Errorf("schema %d→%d: %w", v, v+1, err)
			}
		}
		data, err := json.Marshal(next)
		if err != nil {
			return err
		}
		return txn.Set([]byte{pfxSentinel}, data)
	})
	if err == nil {
		err = s.db.Sync()
	}
	if err != nil {
		return sen, fmt.Errorf("state db %q: migrate from schema %d to %d: %w (nothing was changed)", s.dir, from, SchemaVersion, err)
	}
	s.log.Info("state db migrated", "dir", s.dir, "from", from, "to", SchemaVersion)
	return next, s.writeUsed(next)
}
