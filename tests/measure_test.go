package tests

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"ocf-csync/tests/cluster"
)

// rsyncDir is where rsync copies to on node2: node-private, outside the
// synced tree, so the two tools never see each other's files.
const rsyncDir = cluster.VarDir + "/rsync-copy"

// TestMeasureAgainstRsync logs ocf-csync's and rsync's time and link bytes
// for the same transfers between the same namespaces. Figures are logged,
// not asserted; the test asserts only that both copies are right.
func TestMeasureAgainstRsync(t *testing.T) {
	if os.Getenv("OCF_CSYNC_MEASURE") != "1" {
		t.Skip("measurement only: set OCF_CSYNC_MEASURE=1 to compare ocf-csync with rsync (takes about a minute)")
	}
	if _, err := exec.LookPath("rsync"); err != nil {
		t.Skip("rsync not installed (Debian package rsync)")
	}
	e := newEnv(t, 2)
	n1, n2 := e.node(1), e.node(2)
	if err := os.MkdirAll(n2.Path(rsyncDir), 0o755); err != nil {
		t.Fatal(err)
	}

	// 10k small files in 100 directories.
	rnd := rand.New(rand.NewPCG(11, 11))
	for d := range 100 {
		dir := data(n1, fmt.Sprintf("small/d%02d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := range 100 {
			b := make([]byte, 512+rnd.IntN(1536))
			for i := range b {
				b[i] = byte(rnd.Uint32())
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", f)), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	ocf := e.measure(n2, "ocf-csync sync, 10k small files", func() { e.mustSync(n1) })
	rs := e.measure(n2, "rsync -a, 10k small files", func() { e.rsync(n1, "small/", "small/") })
	e.sameTree(data(n1, "small"), data(n2, "small"), n2.Path(rsyncDir+"/small"))

	// 256 MiB, then one byte changed in the middle.
	writeRandom(t, data(n1, "disk.img"), bigFileSize, 1)
	e.measure(n2, "ocf-csync sync, 256 MiB new file", func() { e.mustSync(n1) })
	e.measure(n2, "rsync -a, 256 MiB new file", func() { e.rsync(n1, "disk.img", "disk.img") })
	flipByte(t, data(n1, "disk.img"), bigFileSize/2+12345)
	ocfD := e.measure(n2, "ocf-csync sync, 256 MiB one byte changed", func() { e.mustSync(n1) })
	rsD := e.measure(n2, "rsync -a --no-whole-file, 256 MiB one byte changed", func() { e.rsync(n1, "disk.img", "disk.img", "--no-whole-file") })
	want := mustSHA256(t, data(n1, "disk.img"))
	for _, p := range []string{data(n2, "disk.img"), n2.Path(rsyncDir + "/disk.img")} {
		if s := mustSHA256(t, p); s != want {
			t.Errorf("%s has sha256 %s, node1's disk.img %s", p, s, want)
		}
	}
	t.Logf("ratios ocf-csync/rsync: 10k files time %.2f bytes %.2f; 256 MiB delta time %.2f bytes %.2f",
		ocf.wall.Seconds()/rs.wall.Seconds(), float64(ocf.bytes)/float64(rs.bytes),
		ocfD.wall.Seconds()/rsD.wall.Seconds(), float64(ocfD.bytes)/float64(rsD.bytes))
}

type figure struct {
	wall  time.Duration
	bytes uint64
}

// measure runs f and logs its wall time and the bytes over n's link.
func (e *env) measure(n *cluster.Node, what string, f func()) figure {
	e.t.Helper()
	b0 := e.linkBytes(n)
	t0 := time.Now()
	f()
	fig := figure{time.Since(t0), e.linkBytes(n) - b0}
	e.t.Logf("MEASURE %-52s %8.3f s %12d bytes over %s's link", what, fig.wall.Seconds(), fig.bytes, n.Name)
	return fig
}

// rsync copies node1's data/src to node2's rsyncDir/dst over ssh with the
// cluster key, as an administrator would.
func (e *env) rsync(n1 *cluster.Node, src, dst string, extra ...string) {
	e.t.Helper()
	ssh := "ssh -F none -i " + cluster.ClientKey + " -o UserKnownHostsFile=" + cluster.KnownHosts +
		" -o StrictHostKeyChecking=yes -o BatchMode=yes"
	args := append([]string{"-a", "-e", ssh}, extra...)
	args = append(args, filepath.Join(dataDir, src)+suffixSlash(src), "root@node2:"+filepath.Join(rsyncDir, dst)+suffixSlash(dst))
	cmd := n1.Command(e.t.Context(), "rsync", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		e.t.Fatalf("rsync %q on node1: %v\n%s", args, err, out.String())
	}
}

func suffixSlash(p string) string {
	if len(p) > 0 && p[len(p)-1] == '/' {
		return "/"
	}
	return ""
}

// sameTree fails unless every copy has want's content and metadata.
func (e *env) sameTree(want string, copies ...string) {
	e.t.Helper()
	m := manifest(e.t, want)
	for _, c := range copies {
		if d := diffManifests(want, m, c, manifest(e.t, c)); d != "" {
			e.t.Errorf("copy differs: %s", d)
		}
	}
}
