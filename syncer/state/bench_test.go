package state

import (
	"fmt"
	"testing"
)

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
		s.DirtyEntries("p", func(e *DirtyEntry) error { n++; return nil })
		if n != 100000 {
			b.Fatal(n)
		}
	}
}
