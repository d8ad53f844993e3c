package engine

import (
	"context"
	"fmt"
	"log/slog"

	"ocf-csync/syncer/config"
	"ocf-csync/syncer/scan"
	"ocf-csync/syncer/state"
)

// Rebuild is `ocf-csync rebuild` on a store opened with AllowRebuild: it
// drops everything and records the tree as it is, every entry pending
// toward its peers without a base. Each peer then judges each entry against
// what it last agreed with this node: a copy equal to that (or none) takes
// ours, so a change made here before the loss still goes out; a later
// change of the peer's own is kept, not a conflict (see serve's
// agreedBefore). Nothing can be marked deleted: the records of what existed
// are gone. It returns how many entries it recorded.
func Rebuild(ctx context.Context, st *state.Store, view *config.NodeView, ignore state.Ignore, log *slog.Logger) (int, error) {
	if err := st.Reset(); err != nil {
		return 0, fmt.Errorf("reset state db %q: %w", st.Dir(), err)
	}
	res, err := scan.Check(ctx, st, view, nil, true, scan.Options{Ignore: ignore, Logger: log})
	if err != nil {
		return 0, err
	}
	if err := st.Sync(); err != nil {
		return 0, err
	}
	return res.Scanned, nil
}
