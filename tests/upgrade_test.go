package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ocf-csync/tests/cluster"
)

// previousRelease is the commit the upgrade test builds as "the previous
// release": main before the state schema 2 and the csync2 personality.
const previousRelease = "b624410"

// TestUpgradeOldAndNewNodes runs a node on the previous release next to a
// node on this build: each pushes to the other (their Hello versions must
// overlap, or the refusal must say why), then the new binary migrates the
// old node's state database forward and the old binary refuses it with a
// clear message instead of misreading it.
func TestUpgradeOldAndNewNodes(t *testing.T) {
	oldBin := buildPreviousRelease(t)
	e := newEnv(t, 2)
	n1, n2 := e.node(1), e.node(2)
	// Each node's config names the helper its peer runs: node1 has the old
	// release, node2 this one.
	remote := map[*cluster.Node]string{n1: binary, n2: oldBin}
	for _, n := range []*cluster.Node{n1, n2} {
		text := strings.Replace(e.configText(), fmt.Sprintf("remote-command \"%s serve\"", binary),
			fmt.Sprintf("remote-command \"%s serve\"", remote[n]), 1)
		e.writeFile(n, cfgPath, text, 0o644)
	}
	run := func(n *cluster.Node, bin string, args ...string) result {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
		defer cancel()
		full := append([]string{"--config", cfgPath, "--node", n.Name}, args...)
		return runCmd(t, n.Command(ctx, bin, full...), full)
	}
	// pushed checks that a push between the releases either synced the
	// file or was refused with the versioned Hello's message.
	pushed := func(from, to *cluster.Node, bin, rel, content string) {
		t.Helper()
		e.writeFile(from, filepath.Join(dataDir, rel), content, 0o644)
		r := run(from, bin, "sync")
		if r.code != 0 {
			if strings.Contains(r.stderr, "protocol version mismatch") && strings.Contains(r.stderr, "install the same ocf-csync version") {
				t.Logf("%s refused %s with a clear message:\n%s", from.Name, to.Name, r.stderr)
				return
			}
			t.Fatalf("push from %s to %s between releases failed without saying why:\n%s", from.Name, to.Name, r)
		}
		got, err := os.ReadFile(data(to, rel))
		if err != nil || string(got) != content {
			t.Fatalf("%s's %s after the push from %s: %q, %v; want %q", to.Name, rel, from.Name, got, err, content)
		}
	}
	pushed(n1, n2, oldBin, "from-old.txt", "written on the previous release\n")
	pushed(n2, n1, binary, "from-new.txt", "written on this build\n")
	pushed(n1, n2, oldBin, "from-old.txt", "edited on the previous release\n")

	// A big file goes as a delta between the releases, each way: this
	// build's receiver sends the old sender the SHA-256 signature it reads,
	// and this build's sender matches the old receiver's as it arrives.
	big := make([]byte, 3<<20)
	rand.NewChaCha8([32]byte{12}).Read(big)
	for i, dir := range []struct {
		from, to *cluster.Node
		bin      string
	}{{n1, n2, oldBin}, {n2, n1, binary}} {
		rel := fmt.Sprintf("big-%d.bin", i)
		for _, flip := range []int{-1, len(big) / 2} {
			if flip >= 0 {
				big[flip] ^= 0xff
			}
			e.writeFile(dir.from, filepath.Join(dataDir, rel), string(big), 0o644)
			r := run(dir.from, dir.bin, "sync")
			if r.code != 0 || strings.Contains(r.stderr, "bad signature") {
				t.Fatalf("big file from %s to %s between releases:\n%s", dir.from.Name, dir.to.Name, r)
			}
			if got, err := os.ReadFile(data(dir.to, rel)); err != nil || !bytes.Equal(got, big) {
				t.Fatalf("%s's %s after the push from %s differs (%v)", dir.to.Name, rel, dir.from.Name, err)
			}
		}
	}

	// node1's state database was written by the previous release (schema
	// 1). This build migrates it forward; the old binary then refuses it.
	r := run(n1, binary, "-v", "status")
	if r.code != 0 || !strings.Contains(r.stderr, "state db migrated") {
		t.Fatalf("status with this build on the old node's database did not migrate it:\n%s", r)
	}
	r = run(n1, oldBin, "status")
	if r.code == 0 || !strings.Contains(r.stderr, "newer than this ocf-csync") || !strings.Contains(r.stderr, "install the newer ocf-csync") {
		t.Fatalf("the previous release on a migrated database did not refuse it clearly:\n%s", r)
	}
	// This build goes on with it: the migration kept the records.
	pushed(n1, n2, binary, "from-old.txt", "edited after the upgrade\n")
}

// runCmd runs a command prepared with Node.Command and says what it did;
// only a failure to run it at all fails the test.
func runCmd(t *testing.T, cmd *exec.Cmd, args []string) result {
	t.Helper()
	var o, er bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &er
	err := cmd.Run()
	r := result{args: args, stdout: o.String(), stderr: er.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %s: %v", strings.Join(cmd.Args, " "), err)
	}
	return r
}

// buildPreviousRelease builds previousRelease from this repository's
// history (git archive, go build through the module proxy or cache) into a
// directory the nodes can read.
func buildPreviousRelease(t *testing.T) string {
	t.Helper()
	fail := t.Skipf
	if os.Getenv("CI") == "true" {
		fail = t.Fatalf // CI clones the whole history: the old release must build there
	}
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		fail("not in a git checkout, cannot build the previous release: %v", err)
	}
	src := t.TempDir()
	archive := exec.Command("sh", "-c", fmt.Sprintf("git -C %s archive %s | tar -x -C %s",
		strings.TrimSpace(string(top)), previousRelease, src))
	if out, err := archive.CombinedOutput(); err != nil {
		fail("git archive %s (a shallow clone lacks it): %v\n%s", previousRelease, err, out)
	}
	dir, err := os.MkdirTemp("/tmp", "ocf-csync-old-") // /tmp is shared with the nodes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "ocf-csync")
	start := time.Now()
	build := exec.Command(goTool(), "build", "-o", bin, "./cmd/ocf-csync")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the previous release %s: %v\n%s", previousRelease, err, out)
	}
	t.Logf("built the previous release %s in %v", previousRelease, time.Since(start).Round(time.Millisecond))
	return bin
}
