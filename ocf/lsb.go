package ocf

import "strconv"

// LSB init-script exit codes (LSB core 20.2) that differ from the OCF ones.
// For every action but status the LSB codes 0–7 mean what the OCF ones do;
// status answers 0 running, 1 dead with a pid file left, 3 not running.
const (
	LSBRunning       Status = 0
	LSBDeadPidFile   Status = 1
	LSBNotRunning    Status = 3
	LSBStatusUnknown Status = 4
)

// CheckLevel is OCF_CHECK_LEVEL (0, 10, 20) and whether it was set. A
// malformed value counts as unset.
func (e Env) CheckLevel() (int, bool) {
	v, ok := e.Lookup("OCF_CHECK_LEVEL")
	if !ok || v == "" {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}
