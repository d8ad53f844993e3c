package apply

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

const (
	crashEnvPath  = "OCF_APPLY_CRASH_PATH"
	crashEnvPoint = "OCF_APPLY_CRASH_POINT"
	crashSize     = 32 << 20
)

// TestMain lets the test binary act as the child that is killed mid-write.
func TestMain(m *testing.M) {
	if p := os.Getenv(crashEnvPath); p != "" {
		crashChild(p, os.Getenv(crashEnvPoint))
		return
	}
	os.Exit(m.Run())
}

// crashChild writes a big new version of p and stops, at the given point, to
// wait for SIGKILL: "fill" blocks inside fill after most of the data,
// "rename" blocks with the temp complete and synced, just before the rename.
func crashChild(p, point string) {
	content := bytes.Repeat([]byte("N"), crashSize)
	rec := regRec(string(content), 0644, 0, 0, mtime)
	ready := func() {
		os.Stdout.WriteString("ready\n")
		select {}
	}
	if point == "rename" {
		beforeRename = ready
	}
	err := New(Options{}).WriteFile(p, rec, func(w io.Writer) error {
		if point == "fill" {
			w.Write(content[:crashSize-1])
			ready()
		}
		_, err := w.Write(content)
		return err
	})
	os.Stderr.WriteString("child: WriteFile returned: " + errString(err) + "\n")
	os.Exit(3)
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

func TestCrashDuringWrite(t *testing.T) {
	needRoot(t)
	for _, point := range []string{"fill", "rename"} {
		t.Run(point, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "big")
			old := strings.Repeat("old content\n", 100000)
			if err := os.WriteFile(p, []byte(old), 0640); err != nil {
				t.Fatal(err)
			}
			before := lstat(t, p)

			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), crashEnvPath+"="+p, crashEnvPoint+"="+point)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			killed := false
			defer func() {
				if !killed {
					cmd.Process.Kill()
					cmd.Wait()
				}
			}()
			lineCh := make(chan string, 1)
			go func() {
				l, _ := bufio.NewReader(out).ReadString('\n')
				lineCh <- l
			}()
			select {
			case l := <-lineCh:
				if l != "ready\n" {
					t.Fatalf("child did not get ready: %q; stderr: %s", l, stderr.String())
				}
			case <-time.After(60 * time.Second):
				t.Fatalf("child not ready after 60s; stderr: %s", stderr.String())
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			killed = true

			after := lstat(t, p)
			if after.Ino != before.Ino || after.Size != before.Size || after.MtimeNs != before.MtimeNs {
				t.Errorf("target changed: %+v -> %+v", before, after)
			}
			if readFile(t, p) != old {
				t.Error("old content not intact")
			}
			left := temps(t, dir)
			if len(left) != 1 {
				t.Fatalf("want exactly one leftover temp file, got %v", left)
			}
			if point == "rename" {
				// The complete temp already carries the final metadata.
				if r := lstat(t, filepath.Join(dir, left[0])); r.Size != crashSize || r.MtimeNs != mtime || r.Mode != 0644 {
					t.Errorf("complete temp %+v", r)
				}
			}
			n, err := New(Options{}).CleanTempsOlder(dir, 0)
			if err != nil || n != 1 {
				t.Errorf("CleanTempsOlder = %d, %v; want 1", n, err)
			}
			if l := temps(t, dir); len(l) != 0 {
				t.Errorf("temp files left after CleanTemps: %v", l)
			}
		})
	}
}
