package ra

import (
	"context"
	"fmt"
	"log/slog"
	"time"

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
	epoch, err := st.Epoch()
	if err != nil {
		return 0, err
	}
	hs, err := st.Handoffs()
	if err != nil {
		return 0, err
	}
	for _, h := range hs {
		epoch = max(epoch, h.Epoch)
	}
	epoch++
	if err := st.SetEpoch(epoch); err != nil {
		return 0, fmt.Errorf("record epoch %d in %s: %w", epoch, st.Dir(), err)
	}
	return epoch, st.Close()
}
