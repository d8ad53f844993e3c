package main

import (
	"fmt"
	"io"
	"os"
	"runtime/metrics"
	"runtime/pprof"
	"strings"
	"time"
)

// memProfile (hidden: OCF_CSYNC_MEMPROFILE=FILE, make bench -profile)
// writes a heap profile to FILE each time the heap live after a GC reaches a
// new high,
// so FILE ends as the profile nearest the peak, and FILE.metrics with the
// runtime's memory classes at that moment and at exit. The returned stop
// writes the exit figures.
func memProfile(path string) (stop func()) {
	samples := []metrics.Sample{}
	for _, d := range metrics.All() {
		if strings.HasPrefix(d.Name, "/memory/classes/") || strings.HasPrefix(d.Name, "/cpu/classes/") ||
			d.Name == "/gc/heap/goal:bytes" || d.Name == "/gc/heap/live:bytes" || d.Name == "/gc/cycles/total:gc-cycles" {
			samples = append(samples, metrics.Sample{Name: d.Name})
		}
	}
	var peak uint64
	var atPeak string
	read := func() (uint64, string) {
		metrics.Read(samples)
		var b strings.Builder
		var heap uint64
		for _, s := range samples {
			switch s.Value.Kind() {
			case metrics.KindFloat64:
				fmt.Fprintf(&b, "%-50s %8.3f\n", s.Name, s.Value.Float64())
				continue
			case metrics.KindUint64:
			default:
				continue
			}
			v := s.Value.Uint64()
			if !strings.HasSuffix(s.Name, ":bytes") {
				fmt.Fprintf(&b, "%-50s %8d\n", s.Name, v)
				continue
			}
			if s.Name == "/gc/heap/live:bytes" {
				heap = v
			}
			fmt.Fprintf(&b, "%-50s %8.1f MiB\n", s.Name, float64(v)/(1<<20))
		}
		return heap, b.String()
	}
	write := func() {
		f, err := os.Create(path)
		if err != nil {
			return
		}
		_ = pprof.Lookup("heap").WriteTo(f, 0)
		f.Close()
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			if h, s := read(); h > peak+peak/20 {
				peak, atPeak = h, s
				write()
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		_, s := read()
		_ = os.WriteFile(path+".metrics", []byte("at the highest live heap:\n"+atPeak+"\nat exit:\n"+s), 0o644)
	}
}

// record starts a recorder (profile or trace) into the file named by the
// environment variable env, if set; the returned func stops it. A failure
// is a warning: the command runs anyway.
func record(env, what string, start func(io.Writer) error, stop func()) func() {
	p := os.Getenv(env)
	if p == "" {
		return func() {}
	}
	f, err := os.Create(p)
	if err == nil {
		if err = start(f); err == nil {
			return func() { stop(); f.Close() }
		}
		f.Close()
	}
	fmt.Fprintf(os.Stderr, "ocf-csync: warning: %s: %v\n", what, err)
	return func() {}
}
