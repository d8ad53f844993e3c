package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestRatioPairsRoundsAndFailsOnAFailedRun(t *testing.T) {
	r := newReport(params{}, time.Now())
	sec := r.section("D1")
	for round, w := range [][2]float64{{2, 1}, {9, 3}, {4, 2}} {
		sec.samples = append(sec.samples,
			sample{tool: toolOCF, round: round, wall: time.Duration(w[0] * float64(time.Second))},
			sample{tool: toolRsync, round: round, wall: time.Duration(w[1] * float64(time.Second))})
	}
	st, err := r.ratio("D1", toolOCF, toolRsync, wallOf)
	if err != nil || st.med != 2 || st.lo != 2 || st.hi != 3 || st.n != 3 {
		t.Fatalf("ratio = %+v, %v; want median 2 (2–3) over 3 rounds", st, err)
	}
	sec.samples = append(sec.samples, sample{tool: toolOCF, round: 3, err: errors.New("wrong result")})
	if _, err := r.ratio("D1", toolOCF, toolRsync, wallOf); err == nil {
		t.Fatal("a failed run must fail the ratio")
	}
}

func TestPercentileAndPeerTimes(t *testing.T) {
	v := make([]float64, 100)
	for i := range v {
		v[i] = float64(i + 1)
	}
	if pct(v, 50) != 50 || pct(v, 99) != 99 || pct(v, 100) != 100 {
		t.Fatalf("pct: %v %v %v", pct(v, 50), pct(v, 99), pct(v, 100))
	}
	out := "node3: ok: 1 updated, 0 deleted, 0 already equal, 0 conflicts, 0 refused/failed; 1 B data, 2 B on the wire, 1.50s\nnode4: ok: 1 updated, 0 deleted, 0 already equal, 0 conflicts, 0 refused/failed; 1 B data, 2 B on the wire, 0.50s\n"
	if sum, n := peerTimes(out); n != 2 || sum != 2*time.Second {
		t.Fatalf("peerTimes = %v, %d", sum, n)
	}
}

func TestChartIsAPNG(t *testing.T) {
	p := filepath.Join(t.TempDir(), "b.png")
	err := writeChart(p, []budget{
		{label: "D1/rsync", frac: 2.9, lo: 2.5, hi: 3.2, measuredOK: true},
		{label: "live p50", frac: 0.5, lo: 0.4, hi: 0.5, pass: true, measuredOK: true},
		{label: "far over", frac: 40, lo: 40, hi: 40, measuredOK: true},
		{label: "not measured"},
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Fatalf("not a PNG: %v", err)
	}
}
