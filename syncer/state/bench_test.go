package state

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// benchStore: n PutFile in one batch (1000 directories), a WalkFiles of all,
// 1000 ListDir calls, then Close and a reopen (which verifies checksums).
// Run each size alone (-bench 'Store100k$' -benchtime 1x): peak RSS is per
// process.
func benchStore(b *testing.B, n int) {
	for range b.N {
		dir := b.TempDir()
		s, err := Open(context.Background(), Options{Dir: dir, Node: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		rec := reg(4096, 7)
		stopSampler := sampleAnon()
		c0 := cpuTime()
		t0 := time.Now()
		batch := s.NewBatch()
		for i := range n {
			batch.PutFile(fmt.Sprintf("/srv/data/d%03d/file-%07d.dat", i%1000, i), rec)
		}
		if err := batch.CommitDurable(); err != nil {
			b.Fatal(err)
		}
		put, putCPU := time.Since(t0), cpuTime()-c0
		putRSS := procStatusKB("VmHWM")
		resetPeakRSS()
		c0 = cpuTime()

		t0 = time.Now()
		seen := 0
		if err := s.WalkFiles("/", func(string, *FileRecord) error { seen++; return nil }); err != nil || seen != n {
			b.Fatalf("walk: %d of %d, %v", seen, n, err)
		}
		walk, walkCPU := time.Since(t0), cpuTime()-c0
		walkRSS := procStatusKB("VmHWM")
		resetPeakRSS()
		c0 = cpuTime()

		t0 = time.Now()
		seen = 0
		for d := range 1000 {
			if err := s.ListDir(fmt.Sprintf("/srv/data/d%03d", d), func(string, *FileRecord) error {
				seen++
				return nil
			}); err != nil {
				b.Fatal(err)
			}
		}
		if seen != n {
			b.Fatalf("ListDir saw %d of %d", seen, n)
		}
		list, listCPU := time.Since(t0), cpuTime()-c0
		listRSS := procStatusKB("VmHWM")
		anonPeak := stopSampler()
		fileRSS := procStatusKB("RssFile")

		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heapBefore := ms.HeapInuse
		runtime.GC()
		runtime.ReadMemStats(&ms)
		if p := os.Getenv("OCF_CSYNC_STATE_HEAPPROFILE"); p != "" {
			if f, err := os.Create(p); err == nil {
				_ = pprof.WriteHeapProfile(f)
				f.Close()
			}
		}
		t0 = time.Now()
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		closeT := time.Since(t0)
		t0 = time.Now()
		s, err = Open(context.Background(), Options{Dir: dir, Node: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		reopen := time.Since(t0)
		s.Close()

		b.ReportMetric(float64(put.Milliseconds()), "put-ms")
		b.ReportMetric(float64(walk.Milliseconds()), "walk-ms")
		b.ReportMetric(float64(list.Milliseconds()), "1000listdir-ms")
		b.ReportMetric(float64(putCPU.Milliseconds()), "put-cpu-ms")
		b.ReportMetric(float64(walkCPU.Milliseconds()), "walk-cpu-ms")
		b.ReportMetric(float64(listCPU.Milliseconds()), "1000listdir-cpu-ms")
		b.ReportMetric(float64(closeT.Milliseconds()), "close-ms")
		b.ReportMetric(float64(reopen.Milliseconds()), "reopen-ms")
		b.ReportMetric(float64(heapBefore)/(1<<20), "heapinuse-MiB")
		b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "liveheap-MiB")
		b.ReportMetric(float64(ms.Sys)/(1<<20), "gosys-MiB")
		b.ReportMetric(float64(anonPeak)/1024, "peakRssAnon-MiB")
		b.ReportMetric(float64(fileRSS)/1024, "RssFile-MiB")
		b.ReportMetric(float64(dirSize(dir))/(1<<20), "disk-MiB")
		b.ReportMetric(float64(putRSS)/1024, "put-peakRSS-MiB")
		b.ReportMetric(float64(walkRSS)/1024, "walk-peakRSS-MiB")
		b.ReportMetric(float64(listRSS)/1024, "listdir-peakRSS-MiB")
	}
}

func BenchmarkStore100k(b *testing.B) { benchStore(b, 100_000) }

func BenchmarkStore1M(b *testing.B) {
	if testing.Short() {
		b.Skip("1M records take a while; not in -short")
	}
	benchStore(b, 1_000_000)
}

// cpuTime is the process's user+system CPU time; wall times mean little on
// a shared, loaded 2-core machine.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sampleAnon samples RssAnon (anonymous memory: heap, stacks, not the
// page cache of mmapped tables) until the returned func is called; that
// func returns the maximum in kB.
func sampleAnon() func() int64 {
	done := make(chan struct{})
	res := make(chan int64)
	go func() {
		var peak int64
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			peak = max(peak, procStatusKB("RssAnon"))
			select {
			case <-done:
				res <- peak
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 { close(done); return <-res }
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				if st, ok := fi.Sys().(*syscall.Stat_t); ok {
					n += st.Blocks * 512 // allocated: the vlog is sparse
				}
			}
		}
		return nil
	})
	return n
}

// resetPeakRSS restarts VmHWM (proc(5), clear_refs "5").
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// procStatusKB reads a "Name: N kB" line of /proc/self/status.
func procStatusKB(name string) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range bytes.Lines(data) {
		if v, ok := bytes.CutPrefix(line, []byte(name+":")); ok {
			n, _ := strconv.ParseInt(string(bytes.Fields(v)[0]), 10, 64)
			return n
		}
	}
	return 0
}

// A first push: 100k dirty paths, none with a base.
func BenchmarkDirtyEntriesFirstPush(b *testing.B) {
	s := openT(b, b.TempDir())
	bt := s.NewBatch()
	for d := range 1000 {
		for f := range 100 {
			p := fmt.Sprintf("/srv/d%03d/f%03d", d, f)
			bt.PutFile(p, reg(100, 1))
			bt.MarkDirty("p", p, DirtyRecord{})
		}
	}
	if err := bt.Commit(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		n := 0
		if err := s.DirtyEntries("p", func(e *DirtyEntry) error { n++; return nil }); err != nil || n != 100000 {
			b.Fatalf("DirtyEntries saw %d of 100000: %v", n, err)
		}
	}
}
