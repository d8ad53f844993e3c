package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// The host mount points (/etc/ocf-csync, …) are shared by every cluster on
// the machine, also those of other test processes. Removing one while another
// cluster runs would detach that cluster's bind mounts (rmdir of a mount
// point in another mount namespace succeeds and unmounts it there). So:
// HostMountsMutex serialises setup and teardown, every running cluster holds a
// shared lock on usersPath, and whoever closes last removes the directories
// recorded in recordPath, which lists those created by any cluster.
const (
	// HostMountsMutex serialises setup and teardown of every harness that
	// uses the host mount points.
	HostMountsMutex = "/run/ocf-csync-cluster.mutex"
	usersPath       = "/run/ocf-csync-cluster.users"
	recordPath      = "/run/ocf-csync-cluster.created"
)

// HostMounts is one cluster's share of the host mount points.
type HostMounts struct {
	users *os.File // shared lock held while the cluster runs
}

// AcquireHostMounts makes sure the directories exist, recording the ones it
// had to create, and registers the calling cluster as a user. The caller
// holds HostMountsMutex.
func AcquireHostMounts(dirs []string) (*HostMounts, error) {
	users, err := LockFile(usersPath, syscall.LOCK_SH)
	if err != nil {
		return nil, fmt.Errorf("host mount points: %w", err)
	}
	var created []string
	for _, mp := range dirs {
		c, err := mkdirAll(mp)
		created = append(created, c...)
		if err != nil {
			users.Close()
			return nil, fmt.Errorf("host mount point: %w", err)
		}
	}
	if len(created) > 0 {
		f, err := os.OpenFile(recordPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err == nil {
			_, err = f.WriteString(strings.Join(created, "\n") + "\n")
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			users.Close()
			return nil, fmt.Errorf("record created host mount points in %s: %w", recordPath, err)
		}
	}
	return &HostMounts{users: users}, nil
}

// mkdirAll creates dir and missing parents and returns what it created,
// parents first. An existing non-directory is an error.
func mkdirAll(dir string) ([]string, error) {
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return nil, fmt.Errorf("%s exists and is not a directory; move it away", dir)
		}
		return nil, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	created, err := mkdirAll(filepath.Dir(dir))
	if err != nil {
		return created, err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return created, err
	}
	return append(created, dir), nil
}

// Release unregisters the cluster; the last one out removes the recorded
// directories (only while empty). It reports whether it was the last.
func (h *HostMounts) Release() (last bool, err error) {
	if h.users == nil {
		return false, nil
	}
	mu, err := LockFile(HostMountsMutex, syscall.LOCK_EX)
	if err != nil {
		h.users.Close()
		h.users = nil
		return false, fmt.Errorf("host mount points: %w", err)
	}
	defer mu.Close()
	// Upgrading succeeds only when no other cluster holds its shared lock.
	last = Flock(h.users, syscall.LOCK_EX|syscall.LOCK_NB) == nil
	h.users.Close()
	h.users = nil
	if !last {
		return false, nil
	}
	b, err := os.ReadFile(recordPath)
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return true, fmt.Errorf("read %s: %w", recordPath, err)
	}
	dirs := strings.Fields(string(b))
	slices.Reverse(dirs) // children before parents
	var keep []string
	for _, d := range dirs {
		if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
			keep = append(keep, d) // not empty: someone put files there; leave it
		}
	}
	if len(keep) > 0 {
		slices.Reverse(keep)
		return true, os.WriteFile(recordPath, []byte(strings.Join(keep, "\n")+"\n"), 0o644)
	}
	if err := os.Remove(recordPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return true, fmt.Errorf("remove %s: %w", recordPath, err)
	}
	return true, nil
}

// HideHostBashrc is a line of a holder script that hides the host's
// /root/.bashrc inside the node's mount namespace. sshd runs every command
// through `bash -c`, and Debian's bash then sources ~/.bashrc: a slow or
// locked rc file on the host (a pyenv rehash lock left by a killed shell
// made every session wait 60 s) must not slow every session of a node.
const HideHostBashrc = "if [ -f /root/.bashrc ]; then mount --bind /dev/null /root/.bashrc; fi\n"
