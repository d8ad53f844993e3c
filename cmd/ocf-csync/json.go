package main

import (
	"encoding/json"
	"io"
	"time"
)

// One JSON style for every --json output (README "Output for scripts"):
// one document per run, snake_case keys, durations as float seconds in
// *_seconds, sizes in bytes in *_bytes, times in RFC 3339, [] for empty
// lists, and a failure as {"error": {"kind", "message", "exit_code"}}.

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// errorJSON is a failure as scripts see it; kind is kindNames' word.
type errorJSON struct {
	Kind     string `json:"kind"`
	Message  string `json:"message"`
	ExitCode int    `json:"exit_code"`
}

var kindNames = map[kind]string{
	kindGeneric:     "failed",
	kindUsage:       "usage",
	kindConfig:      "config",
	kindBusy:        "busy",
	kindStateBroken: "state",
	kindInterrupted: "interrupted",
}

// errorObject describes err with its CLI exit code; nil for success.
func errorObject(err error) *errorJSON {
	if err == nil {
		return nil
	}
	k := classify(err)
	return &errorJSON{Kind: kindNames[k], Message: err.Error(), ExitCode: exitCodes[k].cli}
}

// reported wraps an error that is already part of the command's JSON
// output: ExitCode maps it to its exit code without printing it again.
func reported(err error) error {
	if err == nil {
		return nil
	}
	return reportedError{err}
}

type reportedError struct{ err error }

func (e reportedError) Error() string   { return e.err.Error() }
func (e reportedError) Unwrap() []error { return []error{errSilent, e.err} }

// wantsJSON reports whether the command line asks for --json (before any
// "--"), so an error is printed as JSON even when parsing failed.
func wantsJSON(args []string) bool {
	for _, a := range args[min(1, len(args)):] {
		switch a {
		case "--":
			return false
		case "--json", "-json", "--json=true", "-json=true":
			return true
		}
	}
	return false
}

func seconds(d time.Duration) float64 { return d.Seconds() }

// rfc3339 formats t in UTC, or "" for the zero time.
func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// orEmpty makes a nil slice encode as [].
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func errorStrings(errs []error) []string {
	out := make([]string, 0, len(errs))
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

// jsonArray streams a list as one JSON array, one element per line, so a
// list of 100k files is never held in memory; Close writes [] when empty.
type jsonArray struct {
	w io.Writer
	n int
}

func (a *jsonArray) Add(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	sep := ",\n  "
	if a.n == 0 {
		sep = "[\n  "
	}
	a.n++
	_, err = io.WriteString(a.w, sep+string(b))
	return err
}

func (a *jsonArray) Close() error {
	end := "\n]\n"
	if a.n == 0 {
		end = "[]\n"
	}
	_, err := io.WriteString(a.w, end)
	return err
}
