package ra

import (
	"path/filepath"
	"strings"
)

// Running is a started resource found on this host.
type Running struct {
	State      *State
	StatusFile string
}

// FindDaemon looks in rscTmp (DefaultRscTmp when empty) for a started
// resource whose daemon runs with config, so the CLI can talk to it.
func FindDaemon(rscTmp, config string) (*Running, bool) {
	if rscTmp == "" {
		rscTmp = DefaultRscTmp
	}
	want, err := filepath.Abs(config)
	if err != nil {
		return nil, false
	}
	matches, _ := filepath.Glob(filepath.Join(rscTmp, "ocf-csync-*.state"))
	for _, m := range matches {
		s, err := ReadState(m)
		if err != nil || !s.alive() {
			continue
		}
		if got, err := filepath.Abs(s.Config); err != nil || got != want {
			continue
		}
		return &Running{State: s, StatusFile: strings.TrimSuffix(m, ".state") + ".status"}, true
	}
	return nil, false
}
