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

// Watch timing (DESIGN §6): events are hints, debounced, then re-checked
// by lstat; the periodic rescan keeps correctness independent of inotify.
var (
	watchDebounce = 200 * time.Millisecond
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
		pending := map[string]bool{}
		full := false
		var first time.Time
		timer := time.NewTimer(time.Hour)
		timer.Stop()
		flush := func() {
			var batch []string
			if !full {
				batch = make([]string, 0, len(pending))
				for p := range pending {
					batch = append(batch, p)
				}
			}
			select {
			case out <- batch:
			case <-ctx.Done():
			}
			pending, full, first = map[string]bool{}, false, time.Time{}
		}
		for {
			select {
			case <-ctx.Done():
				return
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
				pending[ev.Name] = true
				if ev.Has(fsnotify.Create) {
					if rec, err := scan.Lstat(ev.Name); err == nil && rec.Kind == state.KindDir {
						if !add(ev.Name) {
							full = true
						}
					}
				}
				if first.IsZero() {
					first = time.Now()
				}
				wait := min(watchDebounce, time.Until(first.Add(watchMaxDelay)))
				timer.Reset(max(wait, 0))
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				if errors.Is(err, fsnotify.ErrEventOverflow) {
					log.Warn("inotify queue overflow: full rescan")
				} else {
					log.Warn("watch error: full rescan", "err", err)
				}
				full = true
				flush()
			case <-timer.C:
				flush()
			}
		}
	}()
	return out, nil
}
