package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/rogpeppe/go-internal/testscript"

	"ocf-csync/syncer/state"
)

var update = flag.Bool("update", false, "rewrite the golden files (cmp targets) inside testdata/script/*.txtar")

// TestMain lets the test binary act as ocf-csync and as the helper
// processes the scripts start with exec.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"ocf-csync": func() {
			// A fake root for the default config paths (defaults.txtar).
			if r := os.Getenv("OCF_CSYNC_TEST_ROOT"); r != "" {
				sysRoot = r
			}
			os.Exit(run())
		},
		"csync2":   func() { os.Exit(run()) }, // the personality (DESIGN §1), never the system's csync2
		"holddb":   func() { os.Exit(holdDB(os.Args[1:])) },
		"holdlock": func() { os.Exit(holdLock(os.Args[1:])) },
	})
}

func TestScript(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		UpdateScripts:       *update,
		Setup: func(e *testscript.Env) error {
			// Everything the CLI would take from the real system points
			// into $WORK; crm_node is never asked because --node is set.
			e.Setenv("OCF_CSYNC_NODE", "node1")
			e.Setenv("OCF_CSYNC_STATE_DIR", filepath.Join(e.WorkDir, "state"))
			e.Setenv("OCF_CSYNC_CONFIG", filepath.Join(e.WorkDir, "ocf-csync.cfg"))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exitcode":     cmdExitcode,
			"envsubst":     cmdEnvsubst,
			"mkfiles":      cmdMkfiles,
			"chtime":       cmdChtime,
			"waitfile":     cmdWaitfile,
			"dropsentinel": cmdDropSentinel,
			"validjson":    cmdValidJSON,
			"jsonnorm":     cmdJSONNorm,
		},
	})
}

// cmdExitcode runs a program like exec but asserts its exact exit code:
// exitcode N program [args...]. Its stdout and stderr are kept for the
// stdout/stderr/cmp commands that follow.
func cmdExitcode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exitcode N program [args...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exitcode: bad code %q", args[0])
	}
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		got = ee.ExitCode()
	case err != nil:
		ts.Fatalf("exitcode: run %s: %v", args[1], err)
	}
	if got != want {
		ts.Fatalf("%s exited with code %d, want %d", args[1], got, want)
	}
}

// cmdValidJSON checks that a file (or stdout/stderr) is a stream of one
// or more JSON values: validjson FILE.
func cmdValidJSON(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: validjson file")
	}
	dec := json.NewDecoder(strings.NewReader(ts.ReadFile(args[0])))
	n := 0
	var err error
	for {
		var v any
		if err = dec.Decode(&v); err != nil {
			break
		}
		n++
	}
	ok := errors.Is(err, io.EOF) && n > 0
	switch {
	case ok && neg:
		ts.Fatalf("%s is valid JSON", args[0])
	case !ok && !neg:
		ts.Fatalf("%s is not a stream of JSON values (%d decoded): %v", args[0], n, err)
	}
}

// cmdJSONNorm rewrites the JSON document in FILE (or stdout) into OUT
// with the values that change from run to run replaced, keys sorted and
// indented and $WORK written as such, for cmp against a golden file (which
// go test -update rewrites): jsonnorm FILE OUT. Numbers
// under *_seconds keys and pids become 0, RFC 3339 times become
// 2000-01-01T00:00:00Z, the Go version "go". It fails on anything that is
// not one JSON document, or on a key that is not snake_case.
func cmdJSONNorm(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: jsonnorm file out")
	}
	dec := json.NewDecoder(strings.NewReader(ts.ReadFile(args[0])))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		ts.Fatalf("%s: %v", args[0], err)
	}
	if dec.More() {
		ts.Fatalf("%s holds more than one JSON document", args[0])
	}
	snake := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	var norm func(key string, v any) any
	norm = func(key string, v any) any {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if !snake.MatchString(k) {
					ts.Fatalf("key %q is not snake_case", k)
				}
				x[k] = norm(k, e)
			}
		case []any:
			for i, e := range x {
				x[i] = norm(key, e)
			}
		case json.Number:
			if strings.HasSuffix(key, "_seconds") || strings.HasSuffix(key, "pid") {
				return json.Number("0")
			}
		case string:
			if _, err := time.Parse(time.RFC3339Nano, x); err == nil {
				return "2000-01-01T00:00:00Z"
			}
			if key == "go" {
				return "go"
			}
			return strings.ReplaceAll(x, ts.Getenv("WORK"), "$WORK")
		}
		return v
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	ts.Check(enc.Encode(norm("", v)))
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), out.Bytes(), 0o644))
}

// cmdEnvsubst replaces $VAR and ${VAR} in files with the script's
// environment, so configs in the archive can name paths under $WORK.
func cmdEnvsubst(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: envsubst file...")
	}
	for _, f := range args {
		path := ts.MkAbs(f)
		data, err := os.ReadFile(path)
		ts.Check(err)
		ts.Check(os.WriteFile(path, []byte(os.Expand(string(data), ts.Getenv)), 0o644))
	}
}

// cmdMkfiles creates files whose names are Go-quoted strings, for names a
// txtar archive cannot hold (newline, trailing space, invalid UTF-8):
// mkfiles DIR "name"... Each file holds its own name.
func cmdMkfiles(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: mkfiles dir quoted-name...")
	}
	dir := ts.MkAbs(args[0])
	ts.Check(os.MkdirAll(dir, 0o755))
	for _, q := range args[1:] {
		name, err := strconv.Unquote(q)
		if err != nil {
			ts.Fatalf("mkfiles: %s is not a Go-quoted string: %v", q, err)
		}
		ts.Check(os.WriteFile(filepath.Join(dir, name), []byte(name+"\n"), 0o644))
	}
}

// cmdChtime sets a file's mtime without touching its content:
// chtime FILE RFC3339-TIME.
func cmdChtime(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: chtime file rfc3339-time")
	}
	tm, err := time.Parse(time.RFC3339, args[1])
	ts.Check(err)
	ts.Check(os.Chtimes(ts.MkAbs(args[0]), tm, tm))
}

// cmdWaitfile waits up to 30s for FILE to exist with content and sets VAR
// to that content: waitfile FILE VAR. Background helpers write such a file
// once they are ready.
func cmdWaitfile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: waitfile file var")
	}
	path := ts.MkAbs(args[0])
	deadline := time.Now().Add(30 * time.Second)
	for {
		data, err := os.ReadFile(path)
		if err == nil && len(data) > 0 {
			ts.Setenv(args[1], strings.TrimSpace(string(data)))
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("waitfile: %s did not appear within 30s (last error: %v)", path, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cmdDropSentinel deletes the sentinel key straight through badger,
// leaving every other key: a DB that was emptied or damaged in the one
// place that proves it was initialised (DESIGN §5).
func cmdDropSentinel(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: dropsentinel statedir")
	}
	// 's' is state's pfxSentinel; the key is that single byte.
	db, err := badger.Open(badger.DefaultOptions(ts.MkAbs(args[0])).WithLogger(nil).WithValueThreshold(64 << 10))
	ts.Check(err)
	err = db.Update(func(txn *badger.Txn) error {
		if _, err := txn.Get([]byte{'s'}); err != nil {
			return fmt.Errorf("sentinel key: %w", err)
		}
		return txn.Delete([]byte{'s'})
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	ts.Check(err)
}

// holdDB is the "holddb DIR SECONDS READYFILE" helper: it opens the state
// DB as node $OCF_CSYNC_NODE, writes its pid into READYFILE, prints
// "holding" and keeps the DB until SIGINT/SIGTERM or SECONDS pass.
func holdDB(args []string) int {
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: holddb DIR SECONDS READYFILE")
		return 2
	}
	secs, err := strconv.Atoi(args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "holddb: bad SECONDS:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	st, err := state.Open(ctx, state.Options{Dir: args[0], Node: os.Getenv("OCF_CSYNC_NODE"), LockTimeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "holddb:", err)
		return 1
	}
	defer st.Close()
	// Written whole by rename, so waitfile never reads half a pid.
	tmp := args[2] + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "holddb:", err)
		return 1
	}
	if err := os.Rename(tmp, args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "holddb:", err)
		return 1
	}
	fmt.Println("holding")
	select {
	case <-ctx.Done():
	case <-time.After(time.Duration(secs) * time.Second):
	}
	if err := st.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "holddb:", err)
		return 1
	}
	fmt.Println("released")
	return 0
}

// holdLock is the "holdlock FILE SECONDS READYFILE" helper: it takes an
// exclusive flock on FILE (as a sync run holds its run lock), writes its
// pid into READYFILE, prints "holding" and keeps the lock until
// SIGINT/SIGTERM or SECONDS pass.
func holdLock(args []string) int {
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: holdlock FILE SECONDS READYFILE")
		return 2
	}
	secs, err := strconv.Atoi(args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "holdlock: bad SECONDS:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := os.MkdirAll(filepath.Dir(args[0]), 0o700); err != nil {
		fmt.Fprintln(os.Stderr, "holdlock:", err)
		return 1
	}
	f, err := os.OpenFile(args[0], os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, "holdlock:", err)
		return 1
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		fmt.Fprintf(os.Stderr, "holdlock: lock %s: %v\n", args[0], err)
		return 1
	}
	// Written whole by rename, so waitfile never reads half a pid.
	tmp := args[2] + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "holdlock:", err)
		return 1
	}
	if err := os.Rename(tmp, args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "holdlock:", err)
		return 1
	}
	fmt.Println("holding")
	select {
	case <-ctx.Done():
	case <-time.After(time.Duration(secs) * time.Second):
	}
	fmt.Println("released")
	return 0
}

func TestGlobalsFirst(t *testing.T) {
	flags := newApp(Env{}).Flags
	for _, tc := range []struct{ in, want string }{
		{"ocf-csync sync --quiet", "ocf-csync --quiet sync"},
		{"ocf-csync -q sync", "ocf-csync -q sync"},
		{"ocf-csync --config /c sync -P node2 --config=/d -v /x", "ocf-csync --config /c --config=/d -v sync -P node2 /x"},
		{"ocf-csync config check --json --node n1", "ocf-csync --json --node n1 config check"},
		{"ocf-csync list dirty --peer node2", "ocf-csync list dirty --peer node2"},           // a command option stays
		{"ocf-csync check -- --json", "ocf-csync check -- --json"},                           // after "--" nothing moves
		{"ocf-csync --state-dir check list files", "ocf-csync --state-dir check list files"}, // "check" is the value
		{"ocf-csync", "ocf-csync"},
		{"ocf-csync --help", "ocf-csync --help"},
	} {
		got := strings.Join(globalsFirst(flags, strings.Fields(tc.in)), " ")
		if got != tc.want {
			t.Errorf("globalsFirst(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
