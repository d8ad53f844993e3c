package cluster

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"

	"ocf-csync/tests/netns"
)

// Cluster dirs live in a fixed place, not $TMPDIR, so every process finds
// the others' clusters.
const (
	clusterDirBase   = "/tmp"
	clusterDirPrefix = "ocf-csync-cluster-"
	netnsDir         = netns.Dir
)

var (
	tagRe   = regexp.MustCompile(`^[0-9a-f]{5}$`)
	netnsRe = regexp.MustCompile(`^oc([0-9a-f]{5})(hub|n[0-9]+)$`)
)

// Sweep removes what clusters of processes that died without Close (kill -9,
// test timeout) left behind: processes in their namespaces, the namespaces
// and their dirs. A cluster whose owner still runs is never touched. Start
// sweeps by itself; Sweep is for cleanup scripts.
func Sweep(log io.Writer) error {
	if log == nil {
		log = io.Discard
	}
	mu, err := netns.LockFile(netns.HostMountsMutex, syscall.LOCK_EX)
	if err != nil {
		return fmt.Errorf("sweep stale clusters: %w", err)
	}
	defer mu.Close()
	return sweep(log)
}

// sweep does Sweep's work; the caller holds the mutex, so no cluster is
// between creating its dir and locking it.
func sweep(log io.Writer) error {
	var errs []error
	dirs, _ := filepath.Glob(filepath.Join(clusterDirBase, clusterDirPrefix+"*"))
	stale := map[string]bool{}
	live := map[string]bool{}
	for _, dir := range dirs {
		tag := strings.TrimPrefix(filepath.Base(dir), clusterDirPrefix)
		if !tagRe.MatchString(tag) {
			continue
		}
		f, err := os.OpenFile(filepath.Join(dir, "alive"), os.O_RDWR, 0)
		if err == nil {
			if netns.Flock(f, syscall.LOCK_EX|syscall.LOCK_NB) != nil {
				f.Close()
				live[tag] = true
				continue
			}
			defer f.Close() // keep it locked until swept
		} else if !errors.Is(err, os.ErrNotExist) {
			live[tag] = true // cannot tell: leave it alone
			continue
		}
		stale[tag] = true
	}
	// Namespaces whose dir is gone are stale too: a live cluster removes its
	// dir only after its namespaces.
	ents, _ := os.ReadDir(netnsDir)
	var names []string
	for _, e := range ents {
		m := netnsRe.FindStringSubmatch(e.Name())
		if m == nil || live[m[1]] {
			continue
		}
		if _, err := os.Stat(filepath.Join(clusterDirBase, clusterDirPrefix+m[1])); errors.Is(err, os.ErrNotExist) {
			stale[m[1]] = true
		}
		if stale[m[1]] {
			names = append(names, e.Name())
		}
	}
	for _, ns := range names {
		fmt.Fprintf(log, "cluster: sweeping stale network namespace %s\n", ns)
		if err := netns.SweepNetns(ns); err != nil {
			errs = append(errs, err)
		}
	}
	for tag := range stale {
		dir := filepath.Join(clusterDirBase, clusterDirPrefix+tag)
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		fmt.Fprintf(log, "cluster: sweeping stale dir %s\n", dir)
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("remove stale cluster dir: %w", err))
		}
	}
	return errors.Join(errs...)
}
