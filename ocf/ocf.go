// Package ocf holds the primitives of the OCF resource agent API (OCF 1.1 as
// Pacemaker 2.1 implements it): exit codes, actions, OCF_RESKEY_* parameters,
// exit reasons and ocf_log-style logging. It imports nothing of ocf-csync.
package ocf

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Status is an OCF exit code.
type Status int

const (
	Success        Status = 0
	ErrGeneric     Status = 1
	ErrArgs        Status = 2
	ErrUnimpl      Status = 3
	ErrPerm        Status = 4
	ErrInstalled   Status = 5
	ErrConfigured  Status = 6
	NotRunning     Status = 7
	RunningPromo   Status = 8
	FailedPromo    Status = 9
	Degraded       Status = 190
	DegradedPromo  Status = 191
	exitReasonLine        = "ocf-exit-reason:"
)

var statusNames = map[Status]string{
	Success: "OCF_SUCCESS", ErrGeneric: "OCF_ERR_GENERIC", ErrArgs: "OCF_ERR_ARGS",
	ErrUnimpl: "OCF_ERR_UNIMPLEMENTED", ErrPerm: "OCF_ERR_PERM", ErrInstalled: "OCF_ERR_INSTALLED",
	ErrConfigured: "OCF_ERR_CONFIGURED", NotRunning: "OCF_NOT_RUNNING", RunningPromo: "OCF_RUNNING_PROMOTED",
	FailedPromo: "OCF_FAILED_PROMOTED", Degraded: "OCF_DEGRADED", DegradedPromo: "OCF_DEGRADED_PROMOTED",
}

func (s Status) String() string {
	if n, ok := statusNames[s]; ok {
		return n
	}
	return "OCF_STATUS_" + strconv.Itoa(int(s))
}

// Actions an agent may be called with.
const (
	ActionStart       = "start"
	ActionStop        = "stop"
	ActionMonitor     = "monitor"
	ActionStatus      = "status"
	ActionMetaData    = "meta-data"
	ActionValidateAll = "validate-all"
	ActionNotify      = "notify"
	ActionReload      = "reload"
	ActionUsage       = "usage"
	ActionMethods     = "methods"
)

// IsAction reports whether s names an action of the OCF API.
func IsAction(s string) bool {
	switch s {
	case ActionStart, ActionStop, ActionMonitor, ActionStatus, ActionMetaData,
		ActionValidateAll, ActionNotify, ActionReload, ActionUsage, ActionMethods,
		"promote", "demote", "migrate_to", "migrate_from", "reload-agent":
		return true
	}
	return false
}

// Error carries an OCF status and the exit reason shown by crm_mon.
type Error struct {
	Status Status
	Reason string
	Err    error
}

func (e *Error) Error() string {
	if e.Err != nil && e.Reason != "" {
		return e.Reason + ": " + e.Err.Error()
	}
	if e.Err != nil {
		return e.Err.Error()
	}
	return e.Reason
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an *Error with a formatted reason.
func Errorf(st Status, format string, args ...any) *Error {
	return &Error{Status: st, Reason: fmt.Sprintf(format, args...)}
}

// WriteExitReason writes the one line Pacemaker stores as exit-reason. The
// reason must be a single line, so newlines are folded.
func WriteExitReason(w io.Writer, prefix, reason string) {
	if prefix == "" {
		prefix = exitReasonLine
	}
	reason = strings.Join(strings.Fields(reason), " ")
	fmt.Fprintf(w, "%s%s\n", prefix, reason)
}

// Env is the OCF view of an environment.
type Env struct {
	vars map[string]string
}

// NewEnv indexes environ ("K=V" strings).
func NewEnv(environ []string) Env {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if i := strings.IndexByte(kv, '='); i > 0 {
			m[kv[:i]] = kv[i+1:]
		}
	}
	return Env{vars: m}
}

// Get returns a variable.
func (e Env) Get(k string) string { return e.vars[k] }

// Lookup returns a variable and whether it is set.
func (e Env) Lookup(k string) (string, bool) { v, ok := e.vars[k]; return v, ok }

// UnderPacemaker reports whether Pacemaker's executor started us (or the
// agent that started us): it always exports OCF_RESKEY_CRM_meta_* or PCMK_*.
func (e Env) UnderPacemaker() bool {
	for k := range e.vars {
		if strings.HasPrefix(k, "OCF_RESKEY_CRM_meta_") || strings.HasPrefix(k, "PCMK_") {
			return true
		}
	}
	return false
}

// Param returns OCF_RESKEY_<name>.
func (e Env) Param(name string) (string, bool) { return e.Lookup("OCF_RESKEY_" + name) }

// Meta returns OCF_RESKEY_CRM_meta_<name>.
func (e Env) Meta(name string) (string, bool) { return e.Lookup("OCF_RESKEY_CRM_meta_" + name) }

// IsOCF reports whether the caller is an OCF executor (Pacemaker, crm_resource,
// ocf-tester): it exports OCF_RA_VERSION_MAJOR or OCF_ROOT.
func (e Env) IsOCF() bool {
	_, a := e.Lookup("OCF_RA_VERSION_MAJOR")
	_, b := e.Lookup("OCF_ROOT")
	return a || b
}

// Instance is OCF_RESOURCE_INSTANCE, "default" when called by hand (as
// ocf-shellfuncs does for init-script use).
func (e Env) Instance() string {
	if v := e.Get("OCF_RESOURCE_INSTANCE"); v != "" {
		return v
	}
	return "default"
}

// IsProbe reports a monitor with no or a zero interval.
func (e Env) IsProbe(action string) bool {
	if action != ActionMonitor {
		return false
	}
	v, ok := e.Meta("interval")
	return !ok || v == "" || v == "0"
}

// TimeoutMs is the operation timeout Pacemaker gives (OCF_RESKEY_CRM_meta_timeout),
// or def when unset or malformed.
func (e Env) TimeoutMs(def int64) int64 {
	v, ok := e.Meta("timeout")
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return def
	}
	return n
}

// IsTrue is ocf_is_true: yes, true, 1, on (any case).
func IsTrue(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "yes", "true", "1", "on", "y":
		return true
	}
	return false
}
