package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Scale: the first check and the no-change check of trees of 1 M (and,
// outside QUICK, 3.6 M: csync2's stated limit) tracked files, against
// find's stat walk, with the peak RSS of each. The files are empty: this
// measures the tree walk, the state database and memory; content hashing
// is measured by D1. The trees are deterministic and kept between runs in
// scaleCache (generating 3.6 M files takes minutes), on the host, where
// node1 sees them at the same path.
const (
	scaleCache   = "/var/tmp/ocf-csync-bench"
	scaleLayout  = "layout 1: 1000 empty files per leaf directory, 100 top directories, mtime 2024-01-01"
	scalePerLeaf = 1000
)

func scaleDir(files int) string { return fmt.Sprintf("%s/scale-%d", scaleCache, files) }

func scaleName(files int) string {
	if files%1_000_000 == 0 {
		return fmt.Sprintf("%d M", files/1_000_000)
	}
	return fmt.Sprintf("%.1f M", float64(files)/1e6)
}

// scaleBudget is DESIGN §11's peak RSS for a number of tracked files.
func scaleBudget(files int) int64 {
	switch {
	case files <= 100_000:
		return 64 << 10
	case files <= 1_000_000:
		return 256 << 10
	}
	return 512 << 10
}

// scaleRoom checks, before a tree is generated, that the file system of
// scaleCache has the inodes and space for it and for the state database
// the checks build (node1's, on the same disk on this machine). Measured
// here (ext4): 3.6 M empty files in 3,600 directories take 3.6 M inodes
// and 96 MiB of directory blocks, ocf-csync's database of them 439 MiB
// (about 130 bytes a file). On tmpfs the tree would live in RAM (about
// 1 KiB a file) and find would never read a disk: the rows would not be
// what they say.
func scaleRoom(files int) error {
	if err := os.MkdirAll(scaleCache, 0o755); err != nil {
		return err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(scaleCache, &st); err != nil {
		return fmt.Errorf("scale: statfs %s: %w", scaleCache, err)
	}
	if st.Type == unix.TMPFS_MAGIC {
		return fmt.Errorf("scale: %s is on tmpfs: %d files would take about %d MiB of RAM and never touch a disk; "+
			"point scaleCache at a disk file system", scaleCache, files, files>>10)
	}
	needInodes := uint64(files + files/scalePerLeaf + 10_000)
	needBytes := uint64(files)*(200+40) + 512<<20 // database + directory blocks + slack
	freeBytes := st.Bavail * uint64(st.Bsize)
	if st.Files > 0 && st.Ffree < needInodes || freeBytes < needBytes {
		return fmt.Errorf("scale: %s has %d free inodes and %d MiB free; %d files need about %d inodes and %d MiB "+
			"(tree and state database)", scaleCache, st.Ffree, freeBytes>>20, files, needInodes, needBytes>>20)
	}
	return nil
}

// ensureScaleTree generates the tree unless a complete one is cached.
func ensureScaleTree(files int) error {
	dir := scaleDir(files)
	marker := dir + ".done"
	want := fmt.Sprintf("files %d, %s\n", files, scaleLayout)
	if got, err := os.ReadFile(marker); err == nil && string(got) == want {
		return nil
	}
	if err := scaleRoom(files); err != nil {
		return err
	}
	logf("scale: generating %d empty files in %s (kept for later runs)", files, dir)
	t0 := time.Now()
	os.Remove(marker)
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	leaves := (files + scalePerLeaf - 1) / scalePerLeaf
	leaf := func(d int) string { return filepath.Join(dir, fmt.Sprintf("t%02d/l%05d", d%100, d)) }
	for d := range leaves {
		if err := os.MkdirAll(leaf(d), 0o755); err != nil {
			return fmt.Errorf("generate scale tree: %w", err)
		}
	}
	ts := []unix.Timespec{unix.NsecToTimespec(baseTime.UnixNano()), unix.NsecToTimespec(baseTime.UnixNano())}
	err := parallel(files, func(i int) error {
		p := filepath.Join(leaf(i/scalePerLeaf), fmt.Sprintf("f%07d", i))
		fd, err := unix.Open(p, unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
		if err == nil {
			err = unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, 0)
			unix.Close(fd)
		}
		if err != nil {
			return fmt.Errorf("generate scale tree: %s: %w", p, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for d := range leaves {
		if err := os.Chtimes(leaf(d), baseTime, baseTime); err != nil {
			return err
		}
	}
	logf("scale: generated %d files in %v", files, time.Since(t0).Round(time.Second))
	return os.WriteFile(marker, []byte(want), 0o644)
}

func (b *bench) scaleChecks(ctx context.Context) error {
	for _, files := range b.p.scale {
		if err := ensureScaleTree(files); err != nil {
			return err
		}
		name := fmt.Sprintf("scale%d", files)
		cfg := "/etc/ocf-csync/" + name + ".cfg"
		stateDir := "/var/lib/ocf-csync/" + name
		if err := os.WriteFile(b.r.n1.Path(cfg), []byte(b.ocfConfig("scale", scaleDir(files), "")), 0o600); err != nil {
			return err
		}
		if err := rmNode(b.r.n1, stateDir); err != nil {
			return err
		}
		id := "scale-" + name
		sec := b.rep.section(id)
		b.rep.setTitle(id, fmt.Sprintf("Scale: %s tracked files (empty files, %d per directory): first check, then no-change checks (median of the rounds)", scaleName(files), scalePerLeaf))
		check := b.localJob("ocf-csync check", "ocf-csync", "--config", cfg, "--node", "node1", "check")
		check.env = ocfEnv()
		first := check
		first.tool = "ocf-csync first check"
		logf("scale %s: first check", scaleName(files))
		s := b.r.measure(ctx, first)
		if s.err != nil {
			logf("scale: first check FAIL: %v", s.err)
		} else {
			logf("scale %s: first check %.1fs, peak RSS %s MiB", scaleName(files), s.wall.Seconds(), mib(s.clientRSS))
		}
		sec.samples = append(sec.samples, s)
		sec.command(cmdLine(first))
		find := findJob(b.localJob("find -printf (stat walk)"), scaleDir(files))
		for round := range b.p.reps {
			for _, j := range []job{find, check} {
				s := b.r.measure(ctx, j)
				s.round = round
				if s.err != nil {
					logf("scale: %s FAIL: %v", j.tool, s.err)
				}
				sec.samples = append(sec.samples, s)
				sec.command(cmdLine(j))
			}
			logf("scale %s round %d: find %.2fs, check %.2fs", scaleName(files), round+1,
				sec.samples[len(sec.samples)-2].wall.Seconds(), sec.samples[len(sec.samples)-1].wall.Seconds())
		}
		if s, ok := median(sec.samples, "ocf-csync check"); ok && s.err == nil && strings.TrimSpace(s.output) != "" {
			sec.note("the no-change check printed: " + lastLines(s.output, 3))
		}
		b.rep.scaleDB[files] = dirSize(b.r.n1.Path(stateDir))
		if err := rmNode(b.r.n1, stateDir); err != nil {
			return err
		}
	}
	return nil
}
