// Package mountns lets a test mount file systems (a tmpfs data disk that
// fills up or goes away, a bind mount) without touching the host: the test
// re-runs itself inside a private mount namespace (unshare -m).
package mountns

import (
	"os"
	"os/exec"
	"testing"
)

// env marks the re-run inside the namespace.
const env = "OCF_CSYNC_MOUNTNS"

// Enter returns true inside the re-run; outside it runs the test there,
// reports its output and returns false (the caller returns at once).
// Without root it skips, unless CI=true, where it fails.
func Enter(t *testing.T) bool {
	t.Helper()
	if os.Getenv(env) != "" {
		return true
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("mount tests need root (CI=true: not skipped)")
		}
		t.Skip("mount tests need root to mount file systems in a private mount namespace")
	}
	cmd := exec.Command("unshare", "-m", "--propagation", "private", os.Args[0],
		"-test.run", "^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), env+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("in a private mount namespace:\n%s", out)
	if err != nil {
		t.Fatalf("%s: %v", t.Name(), err)
	}
	return false
}

// Mount runs mount(8) with args.
func Mount(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
		t.Fatalf("mount %q: %v: %s", args, err, out)
	}
}

// Umount unmounts path.
func Umount(t testing.TB, path string) {
	t.Helper()
	if out, err := exec.Command("umount", path).CombinedOutput(); err != nil {
		t.Fatalf("umount %s: %v: %s", path, err, out)
	}
}

// Tmpfs mounts a tmpfs of size (mount's syntax: 2M) at dir, creating dir,
// and unmounts it at the end of the test.
func Tmpfs(t testing.TB, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	Mount(t, "-t", "tmpfs", "-o", "size="+size+",mode=755", "testdisk", dir)
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
}

// Resize grows or shrinks a tmpfs.
func Resize(t testing.TB, dir, size string) {
	t.Helper()
	Mount(t, "-o", "remount,size="+size, dir)
}
