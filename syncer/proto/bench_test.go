package proto

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"ocf-csync/syncer/state"
)

// typicalOps are what a push of many small files sends: a file with a base,
// paths of a few dozen bytes.
func typicalOps(n int) []Op {
	ops := make([]Op, n)
	for i := range ops {
		r := Record{Kind: state.KindReg, Mode: 0644, UID: 33, GID: 33, Size: int64(1000 + i),
			MtimeNs: 1_760_000_000_000_000_000 + int64(i), Hash: hash(byte(i))}
		ops[i] = Op{Seq: uint64(i), Group: "www", Kind: OpFile,
			Path:    fmt.Appendf(nil, "srv/www/site/assets/img/%06d/thumbnail.png", i),
			HasBase: true, Base: r, New: r, Content: ContentWhole}
		ops[i].New.Size++
	}
	return ops
}

// BenchmarkOpRoundTrip encodes and decodes 100k Ops per iteration through
// one Conn and an in-memory buffer.
func BenchmarkOpRoundTrip(b *testing.B) {
	const n = 100_000
	ops := typicalOps(n)
	var buf bytes.Buffer
	c := NewConn(&buf, &buf)
	var wire int
	start := time.Now()
	for b.Loop() {
		buf.Reset()
		for i := range ops {
			if err := c.Send(&ops[i]); err != nil {
				b.Fatal(err)
			}
		}
		if err := c.Flush(); err != nil {
			b.Fatal(err)
		}
		wire = buf.Len()
		for range n {
			if _, err := c.Recv(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*n)/time.Since(start).Seconds(), "msgs/s")
	b.ReportMetric(float64(wire)/n, "bytes/msg")
}
