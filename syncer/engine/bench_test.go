package engine

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"ocf-csync/syncer/scan"
)

// BenchmarkInitialSync20k pushes 20k small files to one peer in process
// (pipes instead of SSH): the engine, state and apply costs alone.
func BenchmarkInitialSync20k(b *testing.B) {
	for range b.N {
		b.StopTimer()
		nodes := setup(b, "a", "b")
		a := nodes["a"]
		for d := range 200 {
			dir := filepath.Join(a.root, fmt.Sprintf("d%03d", d))
			os.MkdirAll(dir, 0o755)
			for f := range 100 {
				os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", f)), []byte(fmt.Sprintf("content %d %d\n", d, f)), 0o644)
			}
		}
		ctx := context.Background()
		if _, err := scan.Check(ctx, a.st, a.view, nil, true, scan.Options{}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		res, err := Push(ctx, Options{View: a.view, Store: a.st, Connect: connector(nodes)})
		if err != nil || res.Err() != nil {
			b.Fatal(err, res.Err())
		}
	}
}

// BenchmarkBigDelta is D3 and D4 in process: a random file (ENGINE_BIG_SIZE
// bytes, 256 MiB by default) pushed once, then changed (one byte flipped
// mid-file, or 4 KiB inserted at 10%) and checked and pushed again, which
// is what is timed: signature, delta, patch and the durable write.
func BenchmarkBigDelta(b *testing.B) {
	size := int64(256 << 20)
	if s := os.Getenv("ENGINE_BIG_SIZE"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		size = n
	}
	for _, tc := range []struct {
		name   string
		change func(data []byte, round int) []byte
	}{
		{"flip", func(d []byte, round int) []byte { d[len(d)/2+round] ^= 0xff; return d }},
		{"insert", func(d []byte, round int) []byte {
			at := len(d) / 10
			ins := bytes.Repeat([]byte{byte(round + 1)}, 4096)
			return append(d[:at:at], append(ins, d[at:]...)...)
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			nodes := setup(b, "a", "b")
			a := nodes["a"]
			data := make([]byte, size)
			rand.NewChaCha8([32]byte{7}).Read(data)
			p := filepath.Join(a.root, "big.bin")
			if err := os.WriteFile(p, data, 0o644); err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			push := func() {
				if _, err := scan.Check(ctx, a.st, a.view, nil, true, scan.Options{}); err != nil {
					b.Fatal(err)
				}
				res, err := Push(ctx, Options{View: a.view, Store: a.st, Connect: connector(nodes)})
				if err != nil || res.Err() != nil {
					b.Fatal(err, res.Err())
				}
				b.ReportMetric(float64(res.Peers[0].DataBytes), "data-bytes")
			}
			push()
			round := 0
			for b.Loop() {
				b.StopTimer()
				data = tc.change(data, round)
				round++
				if err := os.WriteFile(p, data, 0o644); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				push()
			}
			b.StopTimer()
			got, err := os.ReadFile(filepath.Join(nodes["b"].root, "big.bin"))
			if err != nil || !bytes.Equal(got, data) {
				b.Fatalf("the peer's copy differs (%v)", err)
			}
		})
	}
}
