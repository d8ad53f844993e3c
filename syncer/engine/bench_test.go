package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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
