package ra

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"ocf-csync/ha"
	"ocf-csync/syncer/state"
)

// Epochs takes the epoch a starting node becomes active with. The ha
// package provides the cluster-wide one (highest epoch known from handoffs
// and the Pacemaker node attribute, published with crm_attribute -l
// forever); StoreEpochs is the local default.
type Epochs interface {
	// Take returns the new epoch (highest known + 1) after recording it
	// durably. It runs before the daemon starts, so it may open the state DB.
	Take(ctx context.Context, p *Params) (uint64, error)
}

// StoreEpochs keeps the epoch in the node's state DB only: the highest of
// the stored epoch and every handoff record's, plus one.
type StoreEpochs struct {
	LockTimeout time.Duration // 0: 5s
	Log         *slog.Logger
}

// Take implements Epochs.
func (e StoreEpochs) Take(ctx context.Context, p *Params) (uint64, error) {
	lt := e.LockTimeout
	if lt <= 0 {
		lt = 5 * time.Second
	}
	st, err := state.Open(ctx, state.Options{Dir: p.stateDir(), Node: p.Node, LockTimeout: lt, Logger: e.Log})
	if err != nil {
		return 0, err
	}
	defer st.Close()
	// Highest of this node's epoch, the handoff records and, when
	// Pacemaker runs, every node's csync-epoch attribute, plus one; then
	// published as this node's attribute (crm_mon -A shows it).
	epoch, err := ha.TakeEpoch(ctx, st, ha.NewCLI(), nil)
	if errors.Is(err, ha.ErrPublish) {
		if e.Log != nil {
			e.Log.Warn("epoch recorded but not published to Pacemaker", "epoch", epoch, "err", err)
		}
		err = nil
	}
	if err != nil {
		return 0, fmt.Errorf("take epoch in %s: %w", st.Dir(), err)
	}
	return epoch, st.Close()
}
