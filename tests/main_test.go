// Package tests holds the multi-node acceptance tests of ocf-csync: real
// nodes in network namespaces (see tests/cluster) with real sshd, driven
// through the ocf-csync binary as an administrator would.
package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// binary is the ocf-csync binary every node runs: $OCF_CSYNC_BIN (make test
// sets it) or one built by TestMain into a temp dir.
var binary string

// helperEnv makes the test binary act as a helper program instead of
// running tests (the "test binary doubles as helper" pattern): the hostile
// sender of TestRefusesHostileSender runs inside a node this way.
const helperEnv = "OCF_CSYNC_TEST_HELPER"

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		os.Exit(runHelper(h))
	}
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	binary = os.Getenv("OCF_CSYNC_BIN")
	if binary == "" {
		// /tmp is shared with every node; the per-node directories are not.
		dir, err := os.MkdirTemp("/tmp", "ocf-csync-tests-bin-")
		if err == nil {
			// Pacemaker reads the agent's meta-data as hacluster.
			err = os.Chmod(dir, 0o755)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "tests: create build dir: %v\n", err)
			return 1
		}
		defer os.RemoveAll(dir)
		binary = filepath.Join(dir, "ocf-csync")
		cmd := exec.Command(goTool(), "build", "-o", binary, "ocf-csync/cmd/ocf-csync")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "tests: build ocf-csync (set OCF_CSYNC_BIN to use a built one): %v\n", err)
			return 1
		}
	}
	abs, err := filepath.Abs(binary)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tests: OCF_CSYNC_BIN %q: %v\n", binary, err)
		return 1
	}
	binary = abs
	return m.Run()
}

// goTool finds the go command: on PATH, else where the Makefile expects it.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

// runHelper runs the helper named by $OCF_CSYNC_TEST_HELPER and returns the
// process exit code.
func runHelper(name string) int {
	switch name {
	case "hostile-sender":
		if err := hostileSender(); err != nil {
			fmt.Fprintf(os.Stderr, "hostile sender: %v\n", err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown %s=%q\n", helperEnv, name)
	return 2
}
