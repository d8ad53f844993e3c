package tests

import (
	"bufio"
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ocf-csync/syncer/scan"
)

// writeRandom writes size deterministic random bytes (from seed) to p.
func writeRandom(t testing.TB, p string, size int64, seed uint64) {
	t.Helper()
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	r := rand.NewChaCha8(s)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		n := min(left, int64(len(buf)))
		r.Read(buf[:n])
		if _, err := w.Write(buf[:n]); err != nil {
			t.Fatalf("write %s: %v", p, err)
		}
		left -= n
	}
	if err := w.Flush(); err != nil {
		t.Fatalf("write %s: %v", p, err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("write %s: %v", p, err)
	}
}

// flipByte inverts the byte at off in p.
func flipByte(t testing.TB, p string, off int64) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func mustSHA256(t testing.TB, p string) string {
	t.Helper()
	s, err := fileSHA256(p)
	if err != nil {
		t.Fatalf("hash: %v", err)
	}
	return s
}

// bigFileSize is the size of the delta test's file.
const bigFileSize = 256 << 20

func TestDeltaOneByteChange(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 256 MiB between nodes; skipped with -short")
	}
	e := newEnv(t, 2)
	n1, n2 := e.node(1), e.node(2)
	src, dst := data(n1, "disk.img"), data(n2, "disk.img")
	writeRandom(t, src, bigFileSize, 1)
	t0 := time.Now()
	e.mustSync(n1)
	t.Logf("initial sync of 256 MiB: %v", time.Since(t0).Round(time.Millisecond))
	if a, b := mustSHA256(t, src), mustSHA256(t, dst); a != b {
		t.Fatalf("after the initial sync node2's disk.img has sha256 %s, node1's %s", b, a)
	}

	flipByte(t, src, bigFileSize/2+12345)
	link0 := e.linkBytes(n2)
	t0 = time.Now()
	pr := e.syncJSON(n1)
	wire := e.linkBytes(n2) - link0
	t.Logf("one-byte change: %d bytes over node2's link, %v; result %+v", wire, time.Since(t0).Round(time.Millisecond), pr.Peers)

	// ~600 KB of signature plus a few blocks of delta.
	if wire >= 1<<20 {
		t.Errorf("syncing a one-byte change of a 256 MiB file moved %d bytes over node2's link, want < 1 MiB", wire)
	}
	if a, b := mustSHA256(t, src), mustSHA256(t, dst); a != b {
		t.Errorf("after the delta sync node2's disk.img has sha256 %s, node1's %s", b, a)
	}
	e.requireSame("node1", manifest(t, n1.Path(dataDir)), 2)
}

func TestKillSenderMidTransfer(t *testing.T) {
	if testing.Short() {
		t.Skip("a throttled 64 MiB transfer; skipped with -short")
	}
	e := newEnv(t, 2)
	n1, n2 := e.node(1), e.node(2)
	src, dst := data(n1, "victim.bin"), data(n2, "victim.bin")
	writeRandom(t, src, 8<<20, 2)
	e.mustSync(n1)
	oldSum := mustSHA256(t, dst)
	if s := mustSHA256(t, src); s != oldSum {
		t.Fatalf("initial sync: node2's victim.bin has sha256 %s, node1's %s", oldSum, s)
	}
	writeRandom(t, src, 64<<20, 3)
	newSum := mustSHA256(t, src)

	// 100 Mbit/s out of node1: the 64 MiB take about 5 s, time enough to
	// kill the sender in the middle.
	ctx := t.Context()
	if _, _, err := n1.Run(ctx, "tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "100mbit", "burst", "32kbit", "latency", "400ms"); err != nil {
		t.Fatalf("throttle node1: %v", err)
	}
	unthrottle := func() {
		if _, _, err := n1.Run(context.Background(), "tc", "qdisc", "del", "dev", "eth0", "root"); err != nil {
			t.Errorf("remove node1's throttle: %v", err)
		}
	}
	rx0, _, err := n2.LinkCounters()
	if err != nil {
		t.Fatal(err)
	}
	cmd := e.csyncCmd(ctx, n1, "sync")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// nsenter execs the command, so the PID is ocf-csync's own (checked
	// below, before the kill).
	pid := cmd.Process.Pid

	const killAt = 16 << 20 // received by node2 when the sender dies
	deadline := time.Now().Add(60 * time.Second)
	var got uint64
	for {
		rx, _, err := n2.LinkCounters()
		if err != nil {
			t.Fatal(err)
		}
		got = rx - rx0
		if got > killAt {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the sync finished (%v) after %d bytes, before it could be killed mid-transfer:\n%s", err, got, out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("node2 received only %d bytes in 60 s; the transfer did not get going:\n%s", got, out.String())
		}
	}
	if exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe"); err != nil || exe != binary {
		t.Fatalf("PID %d runs %q (%v), not %s: cannot kill the sender by PID", pid, exe, err, binary)
	}
	temps := tempFiles(t, data(n2, "."))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", pid, err)
	}
	<-done
	t.Logf("killed the sender after node2 received %d bytes; temp files on node2 then: %q", got, temps)

	if s := mustSHA256(t, dst); s != oldSum {
		t.Errorf("after the sender was killed mid-transfer node2's victim.bin has sha256 %s, want the old content's %s", s, oldSum)
	}

	unthrottle()
	r := e.mustSync(n1)
	t.Logf("sync after the kill: %s", strings.TrimSpace(r.stdout))
	if s := mustSHA256(t, dst); s != newSum {
		t.Errorf("after the next sync node2's victim.bin has sha256 %s, want the new content's %s", s, newSum)
	}
	if left := tempFiles(t, data(n2, ".")); len(left) > 0 {
		t.Errorf("temp files left on node2 after the killed transfer and a good sync: %q", left)
	}
}

// tempFiles lists ocf-csync temp files (.NAME.ocf-csync.XXXXXX) in dir.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if scan.IsTempName(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out
}
