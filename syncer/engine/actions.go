package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"ocf-csync/syncer/config"
	"ocf-csync/syncer/state"
)

// Actions (csync2.md §3.8, DESIGN §6): each distinct (command, logfile) runs
// once with every changed file in %% (real local paths). Before a receiver
// acknowledges a change, the actions it triggers are queued durably in the
// state DB, and deleted only after they ran, so a crash in between runs them
// at the next `serve` or `sync` start.
//
// On the origin, do-local and do-local-only actions run at the end of a
// push, for the files that reached at least one peer (or that the peer
// already had). csync2 runs them at check time, even when the push then
// fails; running them after the push means a local action sees the change
// that the cluster now shares, and a failed push runs it on the retry.

type actionKey struct{ command, logfile string }

// actionQueue gathers files per (command, logfile), in first-seen order.
type actionQueue struct {
	order []actionKey
	files map[actionKey][]string
	seen  map[actionKey]map[string]bool
	group map[actionKey]string
}

func (q *actionQueue) addFiles(k actionKey, group string, files ...string) {
	if q.files == nil {
		q.files = map[actionKey][]string{}
		q.seen = map[actionKey]map[string]bool{}
		q.group = map[actionKey]string{}
	}
	if _, ok := q.files[k]; !ok {
		q.order = append(q.order, k)
		q.seen[k] = map[string]bool{}
		q.group[k] = group
		q.files[k] = nil
	}
	for _, f := range files {
		if !q.seen[k][f] {
			q.seen[k][f] = true
			q.files[k] = append(q.files[k], f)
		}
	}
}

// add queues the actions of g that path triggers; origin selects the
// do-local ones (the node where the change was made), else the ones a
// receiver runs (all but do-local-only).
func (q *actionQueue) add(g *config.GroupView, path string, origin bool) {
	for _, a := range g.ActionsFor(path) {
		if origin && !a.DoLocal && !a.DoLocalOnly {
			continue
		}
		if !origin && a.DoLocalOnly {
			continue
		}
		for _, cmd := range a.Exec {
			q.addFiles(actionKey{cmd, a.Logfile}, g.Name, path)
		}
	}
}

func (q *actionQueue) empty() bool { return len(q.order) == 0 }

// persist stores the queue durably and empties it.
func (q *actionQueue) persist(st *state.Store) ([]state.QueuedAction, error) {
	var out []state.QueuedAction
	for _, k := range q.order {
		a := state.QueuedAction{Group: q.group[k], Command: k.command, Logfile: k.logfile, Files: q.files[k]}
		seq, err := st.QueueAction(a)
		if err != nil {
			return out, fmt.Errorf("queue action %q: %w", k.command, err)
		}
		a.Seq = seq
		out = append(out, a)
	}
	*q = actionQueue{}
	return out, nil
}

// runQueued runs queued actions once per (command, logfile), merging their
// files, then deletes them from the queue. It returns one line per failure.
func runQueued(st *state.Store, log *slog.Logger, node string, queued []state.QueuedAction) (ran int, failures []string) {
	var q actionQueue
	for _, a := range queued {
		q.addFiles(actionKey{a.Command, a.Logfile}, a.Group, a.Files...)
	}
	for _, k := range q.order {
		ran++
		code, err := runAction(k, q.files[k])
		if err != nil {
			log.Error("action failed", "command", k.command, "exit_code", code, "logfile", k.logfile, "error", err)
			failures = append(failures, fmt.Sprintf("action %q on %s: %v", k.command, node, err))
			if rerr := recordActionFailure(st, ActionFailure{TimeNs: time.Now().UnixNano(), Node: node, Group: q.group[k],
				Command: k.command, Logfile: k.logfile, Files: q.files[k], ExitCode: code, Error: err.Error()}); rerr != nil {
				log.Error("record action failure", "error", rerr)
			}
		}
	}
	for _, a := range queued {
		if a.Seq == 0 {
			continue
		}
		if err := st.DeleteAction(a.Seq); err != nil {
			log.Error("delete queued action after it ran (it may run again at the next start)", "command", a.Command, "error", err)
		}
	}
	return ran, failures
}

// RunLeftoverActions runs the actions a crashed `serve` or `sync` queued
// but did not run. Serve and Push call it at their start.
func RunLeftoverActions(st *state.Store, log *slog.Logger, node string) (ran int, failures []string, err error) {
	var queued []state.QueuedAction
	if err := st.Actions(func(a state.QueuedAction) error {
		queued = append(queued, a)
		return nil
	}); err != nil {
		return 0, nil, fmt.Errorf("read queued actions: %w", err)
	}
	if len(queued) == 0 {
		return 0, nil, nil
	}
	log.Warn("running actions left over from an interrupted run", "count", len(queued))
	ran, failures = runQueued(st, log, node, queued)
	return ran, failures, nil
}

// runAction runs one csync2 action with %% replaced by the changed files
// (real local paths, shell-quoted), output appended to its logfile. It
// returns the exit code (-1 if the command did not run or was killed).
func runAction(k actionKey, files []string) (int, error) {
	quoted := make([]string, len(files))
	for i, f := range files {
		quoted[i] = shellQuote(f)
	}
	cmdline := strings.ReplaceAll(k.command, "%%", strings.Join(quoted, " "))
	logfile := k.logfile
	if logfile == "" {
		logfile = "/dev/null"
	}
	out, err := os.OpenFile(logfile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return -1, fmt.Errorf("open action logfile %s: %w", logfile, err)
	}
	defer out.Close()
	cmd := exec.Command("/bin/sh", "-c", cmdline)
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		return ee.ExitCode(), fmt.Errorf("exited with code %d (output in %s)", ee.ExitCode(), logfile)
	}
	return -1, err
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ActionFailure is a failed action, kept for `status`.
type ActionFailure struct {
	TimeNs   int64    `json:"time_ns"`
	Node     string   `json:"node"`
	Group    string   `json:"group"`
	Command  string   `json:"command"`
	Logfile  string   `json:"logfile"`
	Files    []string `json:"files"`
	ExitCode int      `json:"exit_code"`
	Error    string   `json:"error"`
}

// The state package has no record type for failures yet, so they live in a
// small JSON file in the state directory (the DB's owner lock covers it).
const (
	failuresFile = "action-failures.json"
	maxFailures  = 50
)

var failuresMu sync.Mutex

func recordActionFailure(st *state.Store, f ActionFailure) error {
	failuresMu.Lock()
	defer failuresMu.Unlock()
	list, err := ActionFailures(st)
	if err != nil {
		list = nil // a damaged list is replaced, not fatal
	}
	list = append(list, f)
	if len(list) > maxFailures {
		list = list[len(list)-maxFailures:]
	}
	data, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	p := filepath.Join(st.Dir(), failuresFile)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("record action failure: %w", err)
	}
	return os.Rename(tmp, p)
}

// ActionFailures returns the recorded action failures, oldest first.
func ActionFailures(st *state.Store) ([]ActionFailure, error) {
	data, err := os.ReadFile(filepath.Join(st.Dir(), failuresFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read action failures: %w", err)
	}
	var list []ActionFailure
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("read action failures %s: %w", filepath.Join(st.Dir(), failuresFile), err)
	}
	return list, nil
}
