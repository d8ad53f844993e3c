package ra

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// State is the content of $HA_RSCTMP/ocf-csync-<instance>.state. The file
// exists from the moment start spawned the daemon until stop removed it.
type State struct {
	Pid      int       `json:"pid"`
	PidStart uint64    `json:"pid_start"` // /proc/<pid>/stat starttime, against pid reuse
	Epoch    uint64    `json:"epoch"`
	Config   string    `json:"config"`
	Node     string    `json:"node"`
	StateDir string    `json:"state_dir"`
	Started  time.Time `json:"started"`
}

// ReadState reads a state file; a missing file is an error matching
// os.ErrNotExist.
func ReadState(path string) (*State, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("read agent state file %s: %w (remove it if no ocf-csync daemon runs)", path, err)
	}
	return &s, nil
}

// writeJSONFile replaces path atomically (write a temp file, fsync, rename).
func writeJSONFile(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(append(data, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// WriteState writes a state file atomically.
func WriteState(path string, s *State) error { return writeJSONFile(path, s) }

// procStart returns the start time of process pid (field 22 of
// /proc/<pid>/stat), and false if there is no such live process. A zombie
// counts as gone: a detached daemon may wait for a reaper that never comes.
func procStart(pid int) (uint64, bool) {
	if pid <= 0 {
		return 0, false
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// comm may hold spaces and parentheses: fields start after the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return 0, false
	}
	st, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, false
	}
	return st, true
}

// alive reports whether the state's daemon still runs (same pid, same
// start time).
func (s *State) alive() bool {
	st, ok := procStart(s.Pid)
	return ok && (s.PidStart == 0 || st == s.PidStart)
}
