package state

import (
	"encoding/json"
	"errors"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"
)

// errStop ends an iteration early without an error.
var errStop = errors.New("stop iteration")

// guard tells the recover in view whether a panic came from badger (a
// damaged table: report ErrCorrupt) or from the caller's callback
// (re-panic: it is not ours to hide).
type guard struct{ inFn bool }

// view runs fn in a read transaction and turns badger panics into ErrCorrupt.
func (s *Store) view(fn func(txn *badger.Txn, g *guard) error) (err error) {
	if s.closed.Load() {
		return ErrClosed
	}
	g := &guard{}
	defer func() {
		if r := recover(); r != nil {
			if g.inFn {
				panic(r)
			}
			s.log.Error("badger panicked reading the state db", "panic", shortCause(r))
			err = corruptError(s.dir, r)
		}
	}()
	return s.db.View(func(txn *badger.Txn) error { return fn(txn, g) })
}

// iterate calls fn for every key with prefix, in key order. k and v are
// only valid during fn. With keysOnly, v is nil.
func iterate(txn *badger.Txn, g *guard, prefix []byte, keysOnly bool, fn func(k, v []byte) error) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		item := it.Item()
		k := item.Key()
		var err error
		if keysOnly {
			g.inFn = true
			err = fn(k, nil)
			g.inFn = false
		} else {
			err = item.Value(func(v []byte) error {
				g.inFn = true
				e := fn(k, v)
				g.inFn = false
				return e
			})
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// scan is iterate in its own transaction; errStop ends it quietly.
func (s *Store) scan(prefix []byte, keysOnly bool, fn func(k, v []byte) error) error {
	err := s.view(func(txn *badger.Txn, g *guard) error {
		return iterate(txn, g, prefix, keysOnly, fn)
	})
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

// getIn reads one key; fn sees the value only if it exists.
func getIn(txn *badger.Txn, key []byte, fn func(v []byte) error) (bool, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, item.Value(fn)
}

func (s *Store) get(key []byte, fn func(v []byte) error) (found bool, err error) {
	err = s.view(func(txn *badger.Txn, _ *guard) error {
		found, err = getIn(txn, key, fn)
		return err
	})
	return found, err
}

func (s *Store) getJSON(key []byte, v any) (bool, error) {
	found, err := s.get(key, func(b []byte) error { return json.Unmarshal(b, v) })
	if err != nil {
		return false, s.readErr(key, err)
	}
	return found, nil
}

func (s *Store) getRecord(key []byte, name string) (FileRecord, bool, error) {
	var rec FileRecord
	found, err := s.get(key, rec.UnmarshalBinary)
	if err != nil {
		return FileRecord{}, false, s.readErr([]byte(name), err)
	}
	return rec, found, nil
}

// readErr wraps a read failure; a value we cannot decode is damage.
func (s *Store) readErr(what []byte, err error) error {
	if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrClosed) {
		return err
	}
	var se *json.SyntaxError
	if errors.Is(err, errBadRecord) || errors.As(err, &se) {
		return corruptError(s.dir, fmt.Sprintf("undecodable record %q", what))
	}
	return fmt.Errorf("read state db %q: %w", s.dir, err)
}

// hasKeys reports whether the DB holds any key at all.
func (s *Store) hasKeys() (bool, error) {
	any := false
	err := s.scan(nil, true, func(k, _ []byte) error {
		any = true
		return errStop
	})
	return any, err
}
