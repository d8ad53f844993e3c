package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestInstallDeb installs the .deb that make test built ($OCF_CSYNC_DEB)
// into a root file system of its own and checks it as an administrator
// would (tests/testdata/install.sh): an overlayfs over / with its upper
// layer on a tmpfs, in a mount namespace of its own (unshare -m), so dpkg
// never writes this machine's /usr or dpkg database. A debootstrap chroot
// would need a Debian mirror and minutes per run; the overlay takes seconds
// and installs into exactly the system the other tests run on.
func TestInstallDeb(t *testing.T) {
	deb := os.Getenv("OCF_CSYNC_DEB")
	if deb == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("OCF_CSYNC_DEB is not set: make test builds the .deb (make deb) and names it")
		}
		t.Skip("OCF_CSYNC_DEB is not set (make test builds the .deb and sets it)")
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the install test needs root (mount namespaces, overlayfs, chroot)")
		}
		t.Skip("the install test needs root")
	}
	for _, tool := range []string{"unshare", "dpkg", "man", "ocf-tester"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (make deps installs util-linux, man-db, resource-agents)", tool)
		}
	}
	// The cmd tests link the agent into the real /usr/lib/ocf while they
	// run; the overlay's lower layer is the live /, so wait for them.
	lock, err := os.OpenFile("/run/ocf-csync-agent-link.lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	top, err := os.MkdirTemp("", "ocf-csync-install-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(top)
	script, err := filepath.Abs("testdata/install.sh")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cmd := exec.Command("unshare", "--mount", "--", "bash", script, deb, top)
	out, err := cmd.CombinedOutput()
	t.Logf("install test (%v):\n%s", time.Since(start).Round(time.Millisecond), out)
	if err != nil {
		t.Fatalf("install test failed: %v", err)
	}
	if !strings.Contains(string(out), "install test passed") {
		t.Fatal("the install script ended before its last step")
	}
}
