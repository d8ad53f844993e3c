package engine

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"

	"ocf-csync/syncer/apply"
	"ocf-csync/syncer/scan"
	"ocf-csync/syncer/state"
)

// maxTakeFetch bounds a peer's copy held in memory by TakeRemote.
const maxTakeFetch = 1 << 30

// TakeRemote copies the peer's version of path here (a deletion deletes
// it), records that both sides agree on it, and marks it dirty for the
// other peers. o.Store must be set; tempDir is the config's tempdir.
func TakeRemote(ctx context.Context, o CompareOptions, tempDir, peer, path string) error {
	st := o.Store
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	f, err := Fetch(ctx, o, peer, path, maxTakeFetch)
	if err != nil {
		return fmt.Errorf("fetch %s from %s: %w", DisplayPath(path), peer, err)
	}
	t := apply.New(apply.Options{Ignore: o.Ignore, TempDir: tempDir, Logger: o.Log})
	switch {
	case !f.Exists:
		err = t.Delete(path)
	case f.Record.Kind == state.KindReg:
		if err = t.MkdirParents(path); err == nil {
			err = t.WriteFile(path, f.Record, func(w io.Writer) error {
				_, err := io.Copy(w, bytes.NewReader(f.Content))
				return err
			})
		}
	case f.Record.Kind == state.KindSymlink:
		err = t.Symlink(path, f.Record)
	case f.Record.Kind == state.KindDir:
		err = t.Mkdir(path, f.Record)
	default:
		err = t.Special(path, f.Record)
	}
	if err != nil {
		return fmt.Errorf("take %s's version of %s: %w", peer, DisplayPath(path), err)
	}
	b := st.NewBatch()
	if f.Exists {
		b.PutBase(peer, path, &f.Record)
	} else {
		b.DeleteBase(peer, path)
	}
	if err := b.CommitDurable(); err != nil {
		return err
	}
	// The check marks the new version dirty for every peer; this one has it.
	if _, err := scan.Check(ctx, st, o.View, []string{path}, false, scan.Options{Ignore: o.Ignore, Logger: o.Log}); err != nil {
		return err
	}
	b = st.NewBatch()
	b.ClearDirty(peer, path)
	return b.CommitDurable()
}
