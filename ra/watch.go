package ra

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"ocf-csync/syncer/config"
	"ocf-csync/syncer/scan"
	"ocf-csync/syncer/state"
)

// Watch timing (DESIGN §6, §11): events are hints, coalesced, then
// re-checked by lstat; the periodic rescan keeps correctness independent
// of inotify. A batch goes once no hint came for watchQuiet, or
// watchMaxDelay after its first hint under a steady burst; hints that come
// while the daemon is busy join the batch waiting for it.
var (
	watchQuiet    = 20 * time.Millisecond
	watchMaxDelay = 2 * time.Second
)

// watchTrees watches every synced directory and sends batches of changed
// paths. A nil batch asks for a full rescan (queue overflow, a failed
// watch). The channel closes when ctx ends.
func watchTrees(ctx context.Context, view *config.NodeView, log *slog.Logger) (<-chan []string, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	add := func(root string) bool {
		ok := true
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			if _, descend := view.Match(p, true); !descend && p != root {
				return filepath.SkipDir
			}
			if err := w.Add(p); err != nil {
				log.Warn("watch failed; relying on rescans", "path", p, "err", err)
				ok = false
				return filepath.SkipAll
			}
			return nil
		})
		return ok
	}
	for _, r := range view.Roots() {
		add(r)
	}
	out := make(chan []string)
	go func() {
		defer close(out)
		defer w.Close()
		var (
			b     hintBatch
			ready bool // the batch waits for the daemon to take it
			first time.Time
		)
		timer := time.NewTimer(time.Hour)
		timer.Stop()
		for {
			var send chan<- []string
			if ready {
				send = out
			}
			select {
			case <-ctx.Done():
				return
			case send <- b.paths():
				b, ready, first = hintBatch{}, false, time.Time{}
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if scan.IsTempName(filepath.Base(ev.Name)) {
					continue
				}
				synced, descend := view.Match(ev.Name, ev.Has(fsnotify.Create))
				if !synced && !descend {
					continue
				}
				b.add(ev.Name)
				if ev.Has(fsnotify.Create) {
					if rec, err := scan.Lstat(ev.Name); err == nil && rec.Kind == state.KindDir {
						if !add(ev.Name) {
							b.full = true
						}
					}
				}
				if ready {
					continue // joins the batch the daemon has not taken yet
				}
				if first.IsZero() {
					first = time.Now()
				}
				timer.Reset(max(min(watchQuiet, time.Until(first.Add(watchMaxDelay))), 0))
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				if errors.Is(err, fsnotify.ErrEventOverflow) {
					log.Warn("inotify queue overflow: full rescan")
				} else {
					log.Warn("watch error: full rescan", "err", err)
				}
				b.full, ready = true, true
				timer.Stop()
			case <-timer.C:
				ready = true
			}
		}
	}()
	return out, nil
}

// hintBatch collects the changed paths of one batch, each once.
type hintBatch struct {
	seen map[string]bool
	list []string
	full bool // a full rescan instead
}

func (b *hintBatch) add(p string) {
	if b.full || b.seen[p] {
		return
	}
	if b.seen == nil {
		b.seen = map[string]bool{}
	}
	b.seen[p] = true
	b.list = append(b.list, p)
}

// paths is what goes to the daemon: the list, or nil for a full rescan.
func (b *hintBatch) paths() []string {
	if b.full {
		return nil
	}
	return b.list
}
